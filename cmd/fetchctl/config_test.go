package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fetchd/fetchd/internal/testupstream"
)

func TestRunUsageErrors(t *testing.T) {
	ran := regexp.MustCompile(`fetchctl: \d+ results? in `)
	missing := filepath.Join(t.TempDir(), "missing.txt")
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		want     string // in stderr
	}{
		{name: "unknown flag", args: []string{"-nope"}, wantCode: 2, want: "flag provided but not defined: -nope\nUsage: fetchctl"},
		{name: "bad duration", args: []string{"-timeout", "soon"}, wantCode: 2, want: `invalid value "soon" for flag -timeout`},
		{name: "negative concurrency", args: []string{"-c", "-1"}, wantCode: 2, want: `invalid value "-1" for flag -c`},
		{name: "huge concurrency", args: []string{"-c", "5000000000"}, wantCode: 2, want: "fetchctl: -c 5000000000: too large"},
		{name: "negative timeout", args: []string{"-timeout", "-1s"}, wantCode: 2, want: "fetchctl: -timeout -1s: must not be negative"},
		{name: "zero window", args: []string{"-window", "0"}, wantCode: 2, want: "fetchctl: -window 0: must be at least 1"},
		{name: "zero attempts", args: []string{"-max-attempts", "0"}, wantCode: 2, want: "fetchctl: -max-attempts 0: must be at least 1"},
		{name: "zero connect timeout", args: []string{"-connect-timeout", "0s"}, wantCode: 2,
			want: "fetchctl: -connect-timeout 0s: must be positive"},
		{name: "zero budget", args: []string{"-retry-budget", "0"}, wantCode: 2, want: "fetchctl: -retry-budget 0: must be at least 1"},
		{name: "bad progress", args: []string{"-progress", "sometimes"}, wantCode: 2,
			want: `fetchctl: -progress "sometimes": must be auto, always or never`},
		{name: "bad header", args: []string{"-H", "no colon"}, wantCode: 2, want: `invalid value "no colon" for flag -H`},
		{name: "cert without key", args: []string{"-tls-cert", "c.pem"}, wantCode: 2, want: "fetchctl: -tls-cert and -tls-key go together"},
		{name: "token without TLS", args: []string{"-token-file", "tok"}, wantCode: 2, want: "fetchctl: -token-file needs TLS"},
		{name: "args and -i", args: []string{"-i", "urls.txt", "http://127.0.0.1/"}, wantCode: 2,
			want: "fetchctl: give URLs as arguments or -i urls.txt, not both"},
		{name: "discard with out", args: []string{"-discard", "-out", "dir", "http://127.0.0.1/"}, wantCode: 2,
			want: "fetchctl: -discard asks fetchd for no bodies: there is nothing for -out to write"},
		{name: "discard with body", args: []string{"-discard", "-body", "http://127.0.0.1/"}, wantCode: 2,
			want: "fetchctl: -discard asks fetchd for no bodies: there is nothing for -body to print"},
		{name: "env discard with body", env: map[string]string{"FETCHCTL_DISCARD": "1"}, args: []string{"-body", "http://127.0.0.1/"},
			wantCode: 2, want: "fetchctl: -discard asks fetchd for no bodies: there is nothing for -body to print"},
		{name: "bad URL argument", args: []string{"http://127.0.0.1/", "example.com"}, wantCode: 2,
			want: `fetchctl: argument 2: not a URL or a JSON job: "example.com"`},
		{name: "bad JSON argument", args: []string{`{"url":1}`}, wantCode: 2, want: "fetchctl: argument 1: bad JSON job: "},
		{name: "empty addr", args: []string{"-addr", " ", "http://127.0.0.1/"}, wantCode: 2, want: `fetchctl: -addr " ": client: empty target`},
		{name: "env not a number", env: map[string]string{"FETCHCTL_C": "abc"}, wantCode: 2, want: `fetchctl: FETCHCTL_C="abc": `},
		{name: "env bad header", env: map[string]string{"FETCHCTL_H": "A: b\nbad"}, wantCode: 2, want: `fetchctl: FETCHCTL_H="A: b\nbad": `},
		{name: "missing input file", args: []string{"-i", missing}, wantCode: 1, want: "fetchctl: open " + missing + ": no such file"},
		{name: "missing CA file", args: []string{"-tls-ca", missing, "http://127.0.0.1/"}, wantCode: 1, want: "fetchctl: -tls-ca: open "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCtl(t, nil, tt.env, append([]string{"-addr", closedAddr(t)}, tt.args...)...)
			r.wantCode(t, tt.wantCode)
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("fetchctl %q with env %v: stderr lacks %q:\n%s", r.args, tt.env, tt.want, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("fetchctl %q printed %q, want nothing", r.args, r.stdout)
			}
			if ran.MatchString(r.stderr) {
				t.Errorf("fetchctl %q ran", r.args)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	r := runCtl(t, nil, nil, "-h")
	r.wantCode(t, 0)
	flags := []string{"addr", "ordered", "c", "timeout", "window", "max-attempts", "retry-budget", "method", "H", "i",
		"body", "out", "digest", "discard", "fail-on-error", "progress", "tls", "tls-ca", "tls-cert", "tls-key", "tls-server-name", "token-file"}
	for _, f := range flags {
		if !strings.Contains(r.stderr, "\n  -"+f+" ") && !strings.Contains(r.stderr, "\n  -"+f+"\n") {
			t.Errorf("fetchctl -h does not document -%s", f)
		}
		if env := envName(f); !strings.Contains(r.stderr, "(env "+env) {
			t.Errorf("fetchctl -h does not name %s", env)
		}
	}
	for _, want := range []string{"Usage: fetchctl [flags] [URL...]", "Examples:\n  fetchctl ", "default localhost:50051",
		"default auto", "default 1024"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("fetchctl -h lacks %q", want)
		}
	}
}

// TestRunEnv checks the FETCHCTL_* fallbacks, and that flags win.
func TestRunEnv(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	e := startEcho(t)
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantReq  string // what the echo upstream saw, when set
	}{
		{name: "addr", env: map[string]string{"FETCHCTL_ADDR": addr}},
		{name: "flag wins", env: map[string]string{"FETCHCTL_ADDR": closedAddr(t)}, args: []string{"-addr", addr}},
		{name: "env only, unreachable", env: map[string]string{"FETCHCTL_ADDR": closedAddr(t), "FETCHCTL_RETRY_BUDGET": "1"}, wantCode: 1},
		{name: "method and headers", env: map[string]string{"FETCHCTL_ADDR": addr, "FETCHCTL_METHOD": "DELETE", "FETCHCTL_H": "X-Test: env"},
			wantReq: "/env: DELETE  env"},
		{name: "headers add up", env: map[string]string{"FETCHCTL_ADDR": addr, "FETCHCTL_H": "X-Test: env"},
			args: []string{"-H", "X-Test: flag"}, wantReq: "/env: GET  env,flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := up.URL + "/"
			if tt.wantReq != "" {
				u = e.URL + "/env"
			}
			before := len(e.requests())
			r := runCtl(t, nil, tt.env, append(tt.args, u)...)
			r.wantCode(t, tt.wantCode)
			if tt.wantCode == 0 {
				if l := r.lines(t); len(l) != 1 || l[0].Status != 200 {
					t.Errorf("fetchctl %q with env %v = %+v, want one result with status 200", r.args, tt.env, l)
				}
			}
			if tt.wantReq != "" {
				if got := e.requests()[before:]; len(got) != 1 || got[0] != tt.wantReq {
					t.Errorf("upstream saw %q, want %q", got, tt.wantReq)
				}
			}
		})
	}
}
