package main

import (
	"io"
	"net"
	"strconv"
	"testing"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// TestFlagReplacesEnv checks, for every flag, that a value on the command
// line replaces its FETCHD_* variable instead of adding to it, that repeats
// of a list flag on the command line add up among themselves, and that the
// variable alone still sets the flag.
func TestFlagReplacesEnv(t *testing.T) {
	tests := []struct {
		name string
		flag string // the flag under test
		env  string // its FETCHD_* value; "" for none
		args []string
		want string // the flag's resulting value, as its String method prints it
	}{
		{"allow-cidr env alone", "allow-cidr", "10.0.0.0/8", nil, "10.0.0.0/8"},
		{"allow-cidr flag replaces env", "allow-cidr", "10.0.0.0/8", []string{"-allow-cidr", "127.0.0.0/8"}, "127.0.0.0/8"},
		{"allow-cidr repeats add up", "allow-cidr", "10.0.0.0/8", []string{"-allow-cidr", "127.0.0.0/8", "-allow-cidr", "::1,192.168.0.0/16"}, "127.0.0.0/8,::1/128,192.168.0.0/16"},
		{"deny-cidr env alone", "deny-cidr", "8.8.8.0/24", nil, "8.8.8.0/24"},
		{"deny-cidr flag replaces env", "deny-cidr", "8.8.8.0/24", []string{"-deny-cidr", "1.1.1.1"}, "1.1.1.1/32"},
		{"deny-cidr repeats add up", "deny-cidr", "8.8.8.0/24", []string{"-deny-cidr", "1.1.1.1", "-deny-cidr", "9.9.9.9"}, "1.1.1.1/32,9.9.9.9/32"},
		{"allow-port env alone", "allow-port", "8000", nil, "8000"},
		{"allow-port flag replaces env", "allow-port", "8000", []string{"-allow-port", "9"}, "9"},
		{"allow-port repeats add up", "allow-port", "8000", []string{"-allow-port", "9", "-allow-port", "80,443"}, "9,80,443"},
		{"allow-host env alone", "allow-host", "*.internal", nil, "*.internal"},
		{"allow-host flag replaces env", "allow-host", "*.internal", []string{"-allow-host", "example.com"}, "example.com"},
		{"allow-host repeats add up", "allow-host", "*.internal", []string{"-allow-host", "example.com", "-allow-host", "*.example.org"}, "example.com,*.example.org"},
		{"deny-host env alone", "deny-host", "evil.example", nil, "evil.example"},
		{"deny-host flag replaces env", "deny-host", "evil.example", []string{"-deny-host", "bad.example"}, "bad.example"},
		{"deny-host repeats add up", "deny-host", "evil.example", []string{"-deny-host", "bad.example", "-deny-host", "worse.example"}, "bad.example,worse.example"},
		// Scalar flags, as before: the variable alone sets the flag, the
		// command line wins.
		{"concurrency env alone", "concurrency", "7", nil, "7"},
		{"concurrency flag wins", "concurrency", "7", []string{"-concurrency", "3"}, "3"},
		{"allow-private env alone", "allow-private", "true", nil, "true"},
		{"allow-private flag wins", "allow-private", "true", []string{"-allow-private=false"}, "false"},
		{"default-timeout flag wins", "default-timeout", "5s", []string{"-default-timeout", "2s"}, "2s"},
		{"user-agent flag wins", "user-agent", "from-env", []string{"-user-agent", "from-flag"}, "from-flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{}
			if tt.env != "" {
				vars[envName(tt.flag)] = tt.env
			}
			var got string
			cfg, err := parseConfig(tt.args, env(vars), io.Discard)
			if err != nil {
				t.Fatalf("parseConfig(%q) with %s=%q = %v, want no error", tt.args, envName(tt.flag), tt.env, err)
			}
			got = flagValue(t, cfg, tt.flag)
			if got != tt.want {
				t.Errorf("parseConfig(%q) with %s=%q: -%s = %q, want %q", tt.args, envName(tt.flag), tt.env, tt.flag, got, tt.want)
			}
		})
	}
}

// flagValue returns the value of the named flag in cfg, as fetchd prints
// it.
func flagValue(tb testing.TB, cfg *config, name string) string {
	tb.Helper()
	switch name {
	case "allow-cidr":
		return cidrList{&cfg.srv.AllowCIDRs}.String()
	case "deny-cidr":
		return cidrList{&cfg.srv.DenyCIDRs}.String()
	case "allow-port":
		return portList{&cfg.srv.AllowPorts}.String()
	case "allow-host":
		return hostList{&cfg.srv.AllowHosts}.String()
	case "deny-host":
		return hostList{&cfg.srv.DenyHosts}.String()
	case "concurrency":
		return strconv.Itoa(cfg.srv.Concurrency)
	case "allow-private":
		return strconv.FormatBool(cfg.srv.AllowPrivate)
	case "default-timeout":
		return cfg.srv.DefaultTimeout.String()
	case "user-agent":
		return cfg.srv.UserAgent
	}
	tb.Fatalf("flagValue: no flag %q", name)
	return ""
}

// TestAllowPortFlagNarrowsEnv is the case end to end: with
// FETCHD_ALLOW_PORT naming the upstream's port and -allow-port another, the
// upstream is refused.
func TestAllowPortFlagNarrowsEnv(t *testing.T) {
	up := testupstream.New(t)
	port := strconv.Itoa(up.Listener.Addr().(*net.TCPAddr).Port)
	r := startRun(t, env(map[string]string{"FETCHD_ALLOW_PORT": port}), "-allow-cidr", "127.0.0.0/8", "-allow-port", "9")
	u := up.URL + "/?tag=narrowed"
	res := fetchOne(t, r.addr, u)
	if got, want := res.GetError().GetCode(), fetchv1.ErrorCode_ERROR_CODE_BLOCKED; got != want {
		t.Errorf("Fetch(%q) with FETCHD_ALLOW_PORT=%s -allow-port 9 = %v, want %v", u, port, res, want)
	}
	if n := up.Tag("narrowed"); n != 0 {
		t.Errorf("upstream saw %d requests, want 0", n)
	}
}
