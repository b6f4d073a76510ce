package main

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server"
)

// TestFlagBeatsEnv checks that a flag on the command line is used, and a
// bad environment value for that flag ignored, list flags included.
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
	if cfg.srv.Concurrency != 7 {
		t.Errorf("concurrency = %d, want 7", cfg.srv.Concurrency)
	}
	if got := (cidrList{&cfg.srv.AllowCIDRs}).String(); got != "127.0.0.0/8" {
		t.Errorf("allow-cidr = %q, want the flag's value alone", got)
	}
	if _, err := parseConfig([]string{"-h"}, getenv, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("parseConfig(-h) with a bad env value = %v, want flag.ErrHelp", err)
	}
	if _, err := parseConfig(nil, getenv, io.Discard); err == nil {
		t.Error("parseConfig with FETCHD_CONCURRENCY=abc and no flag = nil, want an error")
	}
}

// TestEgressFlags runs fetchd in process with each egress flag and checks
// the job it refuses or lets through.
func TestEgressFlags(t *testing.T) {
	up := testupstream.New(t)
	port := up.Listener.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name     string
		args     []string
		wantCode fetchv1.ErrorCode
	}{
		{"allowed", []string{"-allow-cidr", "127.0.0.0/8"}, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED},
		{"deny-cidr beats allow-cidr", []string{"-allow-cidr", "127.0.0.0/8", "-deny-cidr", "127.0.0.1/32"}, fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{"allow-port other", []string{"-allow-cidr", "127.0.0.0/8", "-allow-port", "443,8443"}, fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{"allow-port this", []string{"-allow-cidr", "127.0.0.0/8", "-allow-port", strconv.Itoa(port)}, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED},
		{"deny-host", []string{"-allow-cidr", "127.0.0.0/8", "-deny-host", "127.0.0.1"}, fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{"allow-host other", []string{"-allow-cidr", "127.0.0.0/8", "-allow-host", "*.example.com"}, fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{"allow-private keeps loopback closed", []string{"-allow-private"}, fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{"allowed, net/http engine", []string{"-allow-cidr", "127.0.0.0/8", "-lean-http=false"}, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED},
		{"deny-cidr, net/http engine", []string{"-allow-cidr", "127.0.0.0/8", "-deny-cidr", "127.0.0.1/32", "-lean-http=false"}, fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRun(t, env(nil), tt.args...)
			res := fetchOne(t, r.addr, up.URL+"/?tag="+url.QueryEscape(tt.name))
			if got := res.GetError().GetCode(); got != tt.wantCode {
				t.Errorf("fetch with %v: error %v, want %v", tt.args, res.GetError(), tt.wantCode)
			}
			if tt.name == "allow-private keeps loopback closed" && !strings.Contains(r.log.String(), "opens the private ranges") {
				t.Errorf("-allow-private logged no warning:\n%s", r.log.String())
			}
		})
	}
	for _, args := range [][]string{
		{"-allow-port", "0"}, {"-allow-port", "http"}, {"-deny-host", "*.1.2.3.4"},
		{"-upstream-ca-file", "/nonexistent.pem"}, {"-idle-read-timeout", "-1s"},
	} {
		cfg, err := parseConfig(args, env(nil), io.Discard)
		if err == nil {
			_, err = cfg.serverConfig(slog.New(slog.DiscardHandler))
		}
		if err == nil {
			t.Errorf("fetchd %v: no error, want one", args)
		}
	}
}

// TestStreamWindowFollowsConcurrency checks that -stream-window and
// -stream-queue default to 0, derived from -concurrency by the server, and
// that -h says how.
func TestStreamWindowFollowsConcurrency(t *testing.T) {
	var help strings.Builder
	if _, err := parseConfig([]string{"-h"}, env(nil), &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseConfig(-h) = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{
		"(0: 2 x -concurrency, at least 512",
		"(0: 16 x -stream-window, at least 8192",
	} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("fetchd -h does not say %q:\n%s", want, help.String())
		}
	}
	cfg, err := parseConfig([]string{"-concurrency", "1000"}, env(nil), io.Discard)
	if err != nil {
		t.Fatalf("parseConfig(-concurrency 1000) = %v", err)
	}
	if cfg.srv.StreamWindow != 0 || cfg.srv.StreamQueue != 0 {
		t.Errorf("parseConfig(-concurrency 1000): -stream-window %d, -stream-queue %d; want 0 and 0 (derived)", cfg.srv.StreamWindow, cfg.srv.StreamQueue)
	}
	for _, args := range [][]string{{"-stream-window", "-1"}, {"-stream-queue", "-1"}} {
		if _, err := parseConfig(args, env(nil), io.Discard); err == nil {
			t.Errorf("parseConfig(%q) = nil, want an error", args)
		}
	}
}

// TestFlagsBindConfig checks that the flags land on the server's Config
// fields with the flags' meanings: a flag's 0 that turns its setting off is
// the field's off (negative), a flag left out is the field's default, and
// the bool flags that a field negates are negated.
func TestFlagsBindConfig(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(c server.Config) bool
	}{
		{"defaults", nil, func(c server.Config) bool {
			return c.MaxRedirects == server.DefaultMaxRedirects && c.IdleReadTimeout == server.DefaultIdleReadTimeout &&
				c.HostConcurrency == server.DefaultHostConcurrency && c.MaxRetryAfter == server.DefaultMaxRetryAfter &&
				!c.DisableDedup && !c.NetHTTP
		}},
		{"zero turns off", []string{"-max-redirects", "0", "-idle-read-timeout", "0", "-host-concurrency", "0", "-max-retry-after", "0"}, func(c server.Config) bool {
			return c.MaxRedirects < 0 && c.IdleReadTimeout < 0 && c.HostConcurrency < 0 && c.MaxRetryAfter < 0
		}},
		{"values", []string{"-max-redirects", "3", "-idle-read-timeout", "2s", "-host-concurrency", "4", "-max-retry-after", "5s"}, func(c server.Config) bool {
			return c.MaxRedirects == 3 && c.IdleReadTimeout == 2*time.Second && c.HostConcurrency == 4 && c.MaxRetryAfter == 5*time.Second
		}},
		{"negated bools", []string{"-dedup=false", "-lean-http=false"}, func(c server.Config) bool { return c.DisableDedup && c.NetHTTP }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(tt.args, env(nil), io.Discard)
			if err != nil {
				t.Fatalf("parseConfig(%q) = %v", tt.args, err)
			}
			sc, err := cfg.serverConfig(slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("serverConfig(%q) = %v", tt.args, err)
			}
			if !tt.check(sc) {
				t.Errorf("parseConfig(%q): server config %+v, not what the flags say", tt.args, sc)
			}
		})
	}
}
