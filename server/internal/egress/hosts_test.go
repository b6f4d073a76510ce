package egress_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fetchd/fetchd/server/internal/egress"
)

func TestCheckHost(t *testing.T) {
	type hostCase struct {
		host    string
		blocked bool
		reason  string // substring of BlockedError.Reason; "" to skip
	}
	tests := []struct {
		name  string
		allow []string
		deny  []string
		hosts []hostCase
	}{
		{
			name: "no lists: every host passes",
			hosts: []hostCase{
				{"example.com", false, ""}, {"127.0.0.1", false, ""}, {"", false, ""}, {"bad host%", false, ""},
			},
		},
		{
			name: "exact deny",
			deny: []string{"example.com"},
			hosts: []hostCase{
				{"example.com", true, "host deny list example.com"},
				{"EXAMPLE.COM", true, "deny"},
				{"Example.Com", true, "deny"},
				{"example.com.", true, "deny"},
				{"example.com..", true, "deny"},
				{"www.example.com", false, ""},
				{"example.org", false, ""},
				{"notexample.com", false, ""},
				{"example.com.evil.test", false, ""},
			},
		},
		{
			name: "wildcard deny",
			deny: []string{"*.example.com"},
			hosts: []hostCase{
				{"a.example.com", true, "host deny list *.example.com"},
				{"a.b.example.com", true, "deny"},
				{"A.EXAMPLE.COM.", true, "deny"},
				{"example.com", false, ""}, // the apex is not a subdomain
				{"badexample.com", false, ""},
				{"example.com.evil.test", false, ""},
				{"a.example.co", false, ""},
			},
		},
		{
			name: "case and trailing dot in the pattern",
			deny: []string{"Example.COM.", "*.Internal.Test."},
			hosts: []hostCase{
				{"example.com", true, "deny"}, {"db.internal.test", true, "deny"}, {"internal.test", false, ""},
			},
		},
		{
			name: "IP literals match only exactly",
			deny: []string{"10.0.0.1", "[::1]"},
			hosts: []hostCase{
				{"10.0.0.1", true, "deny"},
				{"[10.0.0.1]", true, "deny"},
				{"::ffff:10.0.0.1", true, "deny"},
				{"[::ffff:10.0.0.1]", true, "deny"},
				{"10.0.0.1.", true, "deny"},
				{"10.0.0.2", false, ""},
				{"::1", true, "deny"},
				{"[::1]", true, "deny"},
				{"0:0::1", true, "deny"},
				{"::1%lo", true, "deny"},
				{"::2", false, ""},
				{"a.10.0.0.1", false, ""},
				{"10-0-0-1.example", false, ""},
			},
		},
		{
			name:  "allow list",
			allow: []string{"example.com", "*.example.org", "192.0.2.7"},
			hosts: []hostCase{
				{"example.com", false, ""},
				{"EXAMPLE.COM.", false, ""},
				{"a.example.org", false, ""},
				{"a.b.example.org", false, ""},
				{"192.0.2.7", false, ""},
				{"www.example.com", true, "not on the host allow list"},
				{"example.org", true, "allow list"}, // the apex is not a subdomain
				{"example.net", true, "allow list"},
				{"127.0.0.1", true, "allow list"},
				{"[::1]", true, "allow list"},
				{"", true, "empty host"},
			},
		},
		{
			name:  "deny beats allow",
			allow: []string{"*.example.com", "example.com"},
			deny:  []string{"secret.example.com", "*.internal.example.com", "example.com"},
			hosts: []hostCase{
				{"www.example.com", false, ""},
				{"secret.example.com", true, "host deny list secret.example.com"},
				{"a.secret.example.com", false, ""}, // the deny is exact
				{"db.internal.example.com", true, "host deny list *.internal.example.com"},
				{"internal.example.com", false, ""},
				{"example.com", true, "deny"},
			},
		},
		{
			name: "internationalized names match in punycode",
			deny: []string{"bücher.example", "xn--mnchen-3ya.example"},
			hosts: []hostCase{
				{"xn--bcher-kva.example", true, "deny"},
				{"bücher.example", true, "deny"},
				{"BÜCHER.example", true, "deny"},
				{"münchen.example", true, "deny"},
				{"ｅｘａｍｐｌｅ.com", false, ""},
			},
		},
		{
			name: "full-width spellings net/http would dial as the name",
			deny: []string{"example.com"},
			hosts: []hostCase{
				{"ｅｘａｍｐｌｅ.com", true, "deny"},
				{"example。com", true, "deny"},
				{"EXAMPLE．COM", true, "deny"},
			},
		},
		{
			name: "invalid names are refused once a list is set",
			deny: []string{"example.com"},
			hosts: []hostCase{
				{"", true, "empty host"},
				{".", true, "empty host"},
				{"\u0300a.example", true, "IDNA"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []egress.Option
			if tt.allow != nil {
				opts = append(opts, egress.AllowHosts(tt.allow...))
			}
			if tt.deny != nil {
				opts = append(opts, egress.DenyHosts(tt.deny...))
			}
			p := egress.NewPolicy(opts...)
			for _, hc := range tt.hosts {
				err := p.CheckHost(hc.host)
				if (err != nil) != hc.blocked {
					t.Errorf("CheckHost(%q) = %v, want %v", hc.host, err, wantText(hc.blocked))
					continue
				}
				if err == nil {
					continue
				}
				var be *egress.BlockedError
				if !errors.As(err, &be) || !errors.Is(err, egress.ErrBlocked) {
					t.Errorf("CheckHost(%q) = %T %v, want a *BlockedError matching ErrBlocked", hc.host, err, err)
					continue
				}
				if (be.Host == "") != (hc.host == "") || !strings.Contains(err.Error(), "host ") {
					t.Errorf("CheckHost(%q) = %v (Host %q), want it to name the host", hc.host, err, be.Host)
				}
				if !strings.Contains(be.Reason, hc.reason) {
					t.Errorf("CheckHost(%q) reason = %q, want it to contain %q", hc.host, be.Reason, hc.reason)
				}
			}
		})
	}
}

// TestCheckHostAddressesUnaffected: host lists narrow the address policy,
// never widen it, and the address policy does not look at host names.
func TestCheckHostAddressesUnaffected(t *testing.T) {
	p := egress.NewPolicy(egress.AllowHosts("127.0.0.1", "localhost"))
	if err := p.CheckHost("127.0.0.1"); err != nil {
		t.Errorf("CheckHost(%q) = %v, want <nil>", "127.0.0.1", err)
	}
	checkBlocked(t, p, mustAddr(t, "127.0.0.1"), true, "127.0.0.0/8")
}

func TestParseHostPatterns(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr string // substring of the error; "" for none
	}{
		{"none", nil, nil, ""},
		{"only separators", []string{" , ,, "}, nil, ""},
		{"exact", []string{"example.com"}, []string{"example.com"}, ""},
		{"normalized", []string{"Example.COM."}, []string{"example.com"}, ""},
		{"wildcard", []string{"*.Example.com"}, []string{"*.example.com"}, ""},
		{"underscore and digits", []string{"_svc.x-1.example"}, []string{"_svc.x-1.example"}, ""},
		{"list", []string{"a.test,b.test *.c.test", "d.test"}, []string{"a.test", "b.test", "*.c.test", "d.test"}, ""},
		{"IPv4", []string{"10.0.0.1"}, []string{"10.0.0.1"}, ""},
		{"bracketed IPv6", []string{"[0:0::1]"}, []string{"::1"}, ""},
		{"mapped", []string{"::ffff:10.0.0.1"}, []string{"10.0.0.1"}, ""},
		{"IPv6 zone dropped", []string{"fe80::1%eth0"}, []string{"fe80::1"}, ""},
		{"punycode", []string{"bücher.example"}, []string{"xn--bcher-kva.example"}, ""},
		{"wildcard punycode", []string{"*.BÜCHER.example"}, []string{"*.xn--bcher-kva.example"}, ""},
		{"star alone", []string{"*"}, nil, "not allowed"},
		{"star dot", []string{"*."}, nil, "empty host"},
		{"two stars", []string{"*.*.example.com"}, nil, "not allowed"},
		{"inner star", []string{"a.*.example.com"}, nil, "not allowed"},
		{"suffix star", []string{"example.*"}, nil, "not allowed"},
		{"with port", []string{"example.com:443"}, nil, "not allowed"},
		{"URL", []string{"http://example.com"}, nil, "not allowed"},
		{"leading dot", []string{".example.com"}, nil, "empty label"},
		{"empty label", []string{"a..example.com"}, nil, "empty label"},
		{"wildcard IP", []string{"*.10.0.0.1"}, nil, "only exactly"},
		{"slash", []string{"example.com/path"}, nil, "not allowed"},
		{"bad among good", []string{"a.test,b..test"}, nil, "empty label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := egress.ParseHostPatterns(tt.in...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || got != nil {
					t.Fatalf("ParseHostPatterns(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				// The options refuse the pattern too, loudly.
				for _, opt := range []func(...string) egress.Option{egress.AllowHosts, egress.DenyHosts} {
					func() {
						defer func() {
							r := recover()
							if s, ok := r.(string); !ok || !strings.HasPrefix(s, "egress: ") {
								t.Errorf("host option(%q) panic = %v, want a panic prefixed \"egress: \"", tt.in, r)
							}
						}()
						egress.NewPolicy(opt(strings.FieldsFunc(strings.Join(tt.in, ","), func(r rune) bool { return r == ',' || r == ' ' })...))
					}()
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseHostPatterns(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			// Normalized patterns parse to themselves.
			again, err := egress.ParseHostPatterns(got...)
			if err != nil || !slices.Equal(again, got) {
				t.Errorf("ParseHostPatterns(%q) = %q, %v; want them unchanged", got, again, err)
			}
		})
	}
}
