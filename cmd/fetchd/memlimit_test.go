package main

import (
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

// TestSetMemoryLimit: without GOMEMLIMIT fetchd sets the soft limit from
// the body memory budget, and gives the old one back; with it, the
// runtime's own stands.
func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	tests := []struct {
		name       string
		env        string
		bodyMemory int64
		want       int64
	}{
		{"default budget", "", 128 << 20, 256 << 20},
		{"larger budget", "", 1 << 30, 1<<30 + memLimitBase},
		{"GOMEMLIMIT set: left alone", "900MiB", 128 << 20, before},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "GOMEMLIMIT" {
					return tt.env
				}
				return ""
			}
			got, restore := setMemoryLimit(getenv, tt.bodyMemory, slog.New(slog.DiscardHandler))
			if now := debug.SetMemoryLimit(-1); got != tt.want || now != tt.want {
				t.Errorf("setMemoryLimit = %d, runtime's limit %d; want %d", got, now, tt.want)
			}
			restore()
			if now := debug.SetMemoryLimit(-1); now != before {
				t.Errorf("after restore the limit is %d, want %d", now, before)
			}
		})
	}
	if before != math.MaxInt64 {
		t.Logf("the test process runs with a limit of %d already", before)
	}
}
