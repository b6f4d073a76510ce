package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunShort runs the whole benchmark in short mode through the real
// binaries and checks that every workload reached the table, the markdown
// and the plot. It judges no timing.
func TestRunShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and runs every workload")
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"-short", "-out", out, "-timeout", "2m"}, &stdout, &stderr); err != nil {
		t.Fatalf("run(-short) = %v\nstderr:\n%s", err, stderr.String())
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(filepath.Join(out, "concurrency.svg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range workloadNames {
		if !strings.Contains(string(md), "| "+w+" | ") {
			t.Errorf("results.md has no row for %s:\n%s", w, md)
		}
		if !strings.Contains(stdout.String(), "\n"+w+" ") {
			t.Errorf("the printed table has no row for %s:\n%s", w, stdout.String())
		}
	}
	if n := strings.Count(string(md), "| sweep | "); n != len(shortSizes.sweepConc) {
		t.Errorf("results.md has %d sweep rows, want %d", n, len(shortSizes.sweepConc))
	}
	if n := strings.Count(string(md), "\n| bodies, "); n != len(shortSizes.bodies) {
		t.Errorf("results.md has %d rows of the large-bodies table, want %d", n, len(shortSizes.bodies))
	}
	if !strings.Contains(stdout.String(), "\nlarge bodies ") {
		t.Errorf("the printed report has no large-bodies table:\n%s", stdout.String())
	}
	for _, want := range []string{"## Time to first result", "## Memory during the scale workload", "## Large bodies", "](concurrency.svg)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	if !strings.HasPrefix(string(svg), "<svg ") || strings.Count(string(svg), "<polyline") != 2 ||
		!strings.Contains(string(svg), "fetchd") || !strings.Contains(string(svg), "baseline") {
		t.Errorf("concurrency.svg is not a two-line plot:\n%s", svg)
	}
	if strings.Contains(stdout.String()+string(md), "NaN") || strings.Contains(stdout.String(), "Inf") {
		t.Errorf("a number did not come out:\n%s", stdout.String())
	}
}

func TestRunFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown workload", []string{"-workloads", "throughput,nope"}, `unknown "nope"`},
		{"stray argument", []string{"extra"}, "unexpected arguments"},
		{"bad flag", []string{"-no-such-flag"}, "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) = %v, want an error with %q", tt.args, err, tt.want)
			}
		})
	}
}
