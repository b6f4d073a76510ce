package main

import (
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// Flags and their FETCHD_* environment fallbacks, through the binary.

// flagEnv lists every flag fetchd documents, with its environment variable.
var flagEnv = []struct{ flag, env string }{
	{"listen", "FETCHD_LISTEN"},
	{"concurrency", "FETCHD_CONCURRENCY"},
	{"stream-window", "FETCHD_STREAM_WINDOW"},
	{"allow-cidr", "FETCHD_ALLOW_CIDR"},
	{"max-body-bytes", "FETCHD_MAX_BODY_BYTES"},
	{"max-discard-bytes", "FETCHD_MAX_DISCARD_BYTES"},
	{"default-timeout", "FETCHD_DEFAULT_TIMEOUT"},
	{"max-timeout", "FETCHD_MAX_TIMEOUT"},
	{"max-redirects", "FETCHD_MAX_REDIRECTS"},
	{"drain-timeout", "FETCHD_DRAIN_TIMEOUT"},
	{"max-recv-msg-bytes", "FETCHD_MAX_RECV_MSG_BYTES"},
	{"max-concurrent-streams", "FETCHD_MAX_CONCURRENT_STREAMS"},
	{"recv-memory", "FETCHD_RECV_MEMORY"},
	{"http-listen", "FETCHD_HTTP_LISTEN"},
	{"log-format", "FETCHD_LOG_FORMAT"},
	{"log-level", "FETCHD_LOG_LEVEL"},
	{"peers", "FETCHD_PEERS"},
	{"peers-interval", "FETCHD_PEERS_INTERVAL"},
}

// usageFlag matches a flag's first line in the usage text.
var usageFlag = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			code, out := runFetchd(t, 10*time.Second, nil, arg)
			if code != 0 {
				t.Errorf("fetchd %s exit code = %d, want 0", arg, code)
			}
			if !strings.HasPrefix(out, "Usage: fetchd") {
				t.Errorf("fetchd %s = %q, want it to start with Usage: fetchd", arg, out)
			}
			for _, f := range flagEnv {
				if !regexp.MustCompile(`(?m)^  -` + f.flag + `\b.*\n.*\(env ` + f.env + `\b`).MatchString(out) {
					t.Errorf("fetchd %s does not document -%s with env %s:\n%s", arg, f.flag, f.env, out)
				}
			}
			// Flags added later must follow the same rule.
			for _, m := range usageFlag.FindAllStringSubmatch(out, -1) {
				env := "FETCHD_" + strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))
				if !strings.Contains(out, "(env "+env) {
					t.Errorf("fetchd %s documents -%s without (env %s", arg, m[1], env)
				}
			}
			if strings.Contains(out, "fetchd listening") {
				t.Errorf("fetchd %s started serving", arg)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })

	tests := []struct {
		name string
		env  []string
		args []string
		want string // in the output
	}{
		{"zero concurrency", nil, []string{"-concurrency", "0"}, "fetchd: -concurrency 0: must be at least 1"},
		{"env concurrency not a number", []string{"FETCHD_CONCURRENCY=abc"}, nil, `fetchd: FETCHD_CONCURRENCY="abc": `},
		{"negative stream window", nil, []string{"-stream-window", "-1"}, "-stream-window -1: must not be negative"},
		{"zero body cap", nil, []string{"-max-body-bytes", "0"}, "-max-body-bytes 0: must be at least 1"},
		{"zero discard cap", nil, []string{"-max-discard-bytes", "0"}, "-max-discard-bytes 0: must be at least 1"},
		{"env negative discard cap", []string{"FETCHD_MAX_DISCARD_BYTES=-1"}, nil, "-max-discard-bytes -1: must be at least 1"},
		{"default over max timeout", nil, []string{"-default-timeout", "10m"}, "-default-timeout 10m0s is over -max-timeout 5m0s"},
		{"zero default timeout", nil, []string{"-default-timeout", "0"}, "must be positive"},
		{"negative redirects", nil, []string{"-max-redirects", "-1"}, "-max-redirects -1: must not be negative"},
		{"negative drain timeout", nil, []string{"-drain-timeout", "-1s"}, "-drain-timeout -1s: must not be negative"},
		{"env drain timeout not a duration", []string{"FETCHD_DRAIN_TIMEOUT=soon"}, nil, `FETCHD_DRAIN_TIMEOUT="soon"`},
		{"log format", nil, []string{"-log-format", "xml"}, `-log-format "xml": must be text or json`},
		{"log level", nil, []string{"-log-level", "loud"}, `invalid value "loud" for flag -log-level`},
		{"bad CIDR", nil, []string{"-allow-cidr", "bogus"}, `invalid value "bogus" for flag -allow-cidr`},
		{"env bad CIDR", []string{"FETCHD_ALLOW_CIDR=10.0.0.0/33"}, nil, `FETCHD_ALLOW_CIDR="10.0.0.0/33"`},
		{"zero receive limit", nil, []string{"-max-recv-msg-bytes", "0"}, "-max-recv-msg-bytes 0"},
		{"env negative receive limit", []string{"FETCHD_MAX_RECV_MSG_BYTES=-1"}, nil, "-max-recv-msg-bytes -1"},
		{"receive memory under one message", nil, []string{"-max-recv-msg-bytes", "8388608", "-recv-memory", "4194304"}, "-recv-memory 4194304 cannot hold one message at -max-recv-msg-bytes 8388608"},
		{"negative streams", nil, []string{"-max-concurrent-streams", "-1"}, `invalid value "-1" for flag -max-concurrent-streams`},
		{"peers without dns:///", nil, []string{"-peers", "fetchd-headless:50051"}, `invalid value "fetchd-headless:50051" for flag -peers: "fetchd-headless:50051": peers target must be dns:///NAME`},
		{"env peers with an authority", []string{"FETCHD_PEERS=dns://10.0.0.10/fetchd-headless:50051"}, nil, `FETCHD_PEERS="dns://10.0.0.10/fetchd-headless:50051"`},
		{"zero peers interval", nil, []string{"-peers-interval", "0s"}, "-peers-interval 0s: must be positive"},
		{"unknown flag", nil, []string{"-nope"}, "flag provided but not defined: -nope"},
		{"argument", nil, []string{"serve"}, `unexpected arguments: ["serve"]`},
		{"bad listen address", nil, []string{"-listen", "127.0.0.1:99999"}, "fetchd: listen: "},
		{"listen address in use", nil, []string{"-listen", busy.Addr().String()}, "address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out := runFetchd(t, 3*time.Second, tt.env, tt.args...)
			if code != 1 {
				t.Errorf("fetchd %s (env %q) exit code = %d, want 1", strings.Join(tt.args, " "), tt.env, code)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("fetchd %s (env %q) = %q, want it to contain %q", strings.Join(tt.args, " "), tt.env, out, tt.want)
			}
			if strings.Contains(out, "fetchd listening") {
				t.Errorf("fetchd %s (env %q) started serving", strings.Join(tt.args, " "), tt.env)
			}
		})
	}
}

// TestEnv checks the environment fallbacks of the binary: a variable sets
// its flag's value, and a flag on the command line wins, list flags such as
// -allow-cidr included.
func TestEnv(t *testing.T) {
	up := testupstream.New(t)
	tests := []struct {
		name    string
		env     []string
		args    []string
		wantLog string // in the startup line
		// wantStatus, when set, is the status of a fetch of the upstream.
		wantStatus int32
		wantCode   fetchv1.ErrorCode
	}{
		{name: "allow-cidr", env: []string{"FETCHD_ALLOW_CIDR=127.0.0.0/8"}, wantLog: "allow_cidr=127.0.0.0/8", wantStatus: 200},
		{name: "allow-cidr other range", env: []string{"FETCHD_ALLOW_CIDR=10.0.0.0/8"}, wantLog: "allow_cidr=10.0.0.0/8", wantCode: fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{name: "allow-cidr flag replaces env", env: []string{"FETCHD_ALLOW_CIDR=10.0.0.0/8"}, args: []string{"-allow-cidr", "127.0.0.1"},
			wantLog: "allow_cidr=127.0.0.1/32\n", wantStatus: 200},
		{name: "concurrency", env: []string{"FETCHD_CONCURRENCY=7"}, wantLog: "concurrency=7 "},
		{name: "flag wins", env: []string{"FETCHD_CONCURRENCY=7"}, args: []string{"-concurrency", "3"}, wantLog: "concurrency=3 "},
		{name: "listen flag wins", env: []string{"FETCHD_LISTEN=256.0.0.0:1"}, wantLog: "addr=127.0.0.1:"},
		{name: "peers", env: []string{"FETCHD_PEERS=dns:///localhost:50051"}, wantLog: "msg=peers name=localhost n="},
		{name: "json log", env: []string{"FETCHD_LOG_FORMAT=json"}, wantLog: `"msg":"fetchd listening"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startFetchdEnv(t, tt.env, tt.args...)
			if log := p.Log(); !strings.Contains(log, tt.wantLog) {
				t.Errorf("fetchd (env %q) log = %q, want it to contain %q", tt.env, log, tt.wantLog)
			}
			if tt.wantStatus == 0 && tt.wantCode == 0 {
				return
			}
			tag := strings.ReplaceAll(tt.name, " ", "-")
			u := up.URL + "/?tag=" + tag
			r := fetchOne(t, p.addr, u)
			if r.GetStatusCode() != tt.wantStatus || r.GetError().GetCode() != tt.wantCode {
				t.Errorf("Fetch(%q) with env %q = %v, want status %d, error code %v", u, tt.env, r, tt.wantStatus, tt.wantCode)
			}
			if n, want := up.Tag(tag), int64(min(tt.wantStatus, 1)); n != want {
				t.Errorf("upstream saw %d requests, want %d", n, want)
			}
		})
	}

	t.Run("json lines", func(t *testing.T) {
		p := startFetchdEnv(t, []string{"FETCHD_LOG_FORMAT=json"})
		fetchOne(t, p.addr, "ftp://x")
		p.WaitLog(t, 5*time.Second, "stream finished")
		for _, line := range strings.Split(strings.TrimSpace(p.Log()), "\n") {
			if !json.Valid([]byte(line)) {
				t.Errorf("fetchd with FETCHD_LOG_FORMAT=json logged %q, want JSON", line)
			}
		}
	})
}
