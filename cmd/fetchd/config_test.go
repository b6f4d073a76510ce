package main

import (
	"errors"
	"flag"
	"io"
	"testing"
)

// TestFlagBeatsEnv checks that a flag on the command line is used, and a
// bad environment value for that flag ignored, while list flags add up.
func TestFlagBeatsEnv(t *testing.T) {
	env := map[string]string{
		"FETCHD_CONCURRENCY": "abc",
		"FETCHD_ALLOW_CIDR":  "10.0.0.0/8",
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := parseConfig([]string{"-concurrency", "7", "-allow-cidr", "127.0.0.0/8"}, getenv, io.Discard)
	if err != nil {
		t.Fatalf("parseConfig = %v, want the bad env value ignored", err)
	}
	if cfg.concurrency != 7 {
		t.Errorf("concurrency = %d, want 7", cfg.concurrency)
	}
	if got := (cidrList{&cfg.allowCIDRs}).String(); got != "127.0.0.0/8,10.0.0.0/8" {
		t.Errorf("allow-cidr = %q, want flag then env", got)
	}
	if _, err := parseConfig([]string{"-h"}, getenv, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("parseConfig(-h) with a bad env value = %v, want flag.ErrHelp", err)
	}
	if _, err := parseConfig(nil, getenv, io.Discard); err == nil {
		t.Error("parseConfig with FETCHD_CONCURRENCY=abc and no flag = nil, want an error")
	}
}
