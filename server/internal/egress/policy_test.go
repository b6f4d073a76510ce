package egress_test

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fetchd/fetchd/server/internal/egress"
)

func TestDenyCIDRs(t *testing.T) {
	tests := []struct {
		name    string
		opts    func(testing.TB) []egress.Option
		addr    string
		blocked bool
		reason  string
	}{
		{"public range denied", denyOpts("8.8.8.0/24"), "8.8.8.8", true, "8.8.8.0/24"},
		{"public neighbour allowed", denyOpts("8.8.8.0/24"), "8.8.4.4", false, ""},
		{"mapped form of a denied IPv4", denyOpts("8.8.8.8/32"), "::ffff:8.8.8.8", true, "8.8.8.8/32"},
		{"mapped range denies IPv4", denyOpts("::ffff:1.2.3.0/120"), "1.2.3.4", true, "1.2.3.0/24"},
		{"IPv6 range denied", denyOpts("2606:4700::/32"), "2606:4700:4700::1111", true, "2606:4700::/32"},
		{"IPv6 range denied with zone", denyOpts("2606:4700::/32"), "2606:4700:4700::1111%eth0", true, "2606:4700::/32"},
		{"IPv6 outside range allowed", denyOpts("2606:4700::/32"), "2001:4860:4860::8888", false, ""},
		{"unmasked deny is masked", denyOpts("8.8.8.8/24"), "8.8.8.200", true, "8.8.8.0/24"},
		{"default deny list still applies", denyOpts("8.8.8.0/24"), "127.0.0.1", true, "127.0.0.0/8"},
		{
			"deny beats allow", func(tb testing.TB) []egress.Option {
				return []egress.Option{egress.AllowCIDRs(mustPrefix(tb, "10.0.0.0/8")), egress.DenyCIDRs(mustPrefix(tb, "10.1.0.0/16"))}
			}, "10.1.2.3", true, "10.1.0.0/16",
		},
		{
			"deny beats allow, whatever the order", func(tb testing.TB) []egress.Option {
				return []egress.Option{egress.DenyCIDRs(mustPrefix(tb, "10.1.0.0/16")), egress.AllowCIDRs(mustPrefix(tb, "10.0.0.0/8"))}
			}, "10.1.2.3", true, "10.1.0.0/16",
		},
		{
			"allow outside the denied part", func(tb testing.TB) []egress.Option {
				return []egress.Option{egress.AllowCIDRs(mustPrefix(tb, "10.0.0.0/8")), egress.DenyCIDRs(mustPrefix(tb, "10.1.0.0/16"))}
			}, "10.2.0.1", false, "",
		},
		{
			"deny one loopback address", func(tb testing.TB) []egress.Option {
				return []egress.Option{egress.AllowCIDRs(mustPrefix(tb, "127.0.0.0/8")), egress.DenyCIDRs(mustPrefix(tb, "127.0.0.1/32"))}
			}, "127.0.0.1", true, "127.0.0.1/32",
		},
		{
			"deny beats AllowPrivate", func(tb testing.TB) []egress.Option {
				return []egress.Option{egress.AllowPrivate(true), egress.DenyCIDRs(mustPrefix(tb, "192.168.1.0/24"))}
			}, "192.168.1.1", true, "192.168.1.0/24",
		},
		{
			"AllowPrivate outside the denied part", func(tb testing.TB) []egress.Option {
				return []egress.Option{egress.AllowPrivate(true), egress.DenyCIDRs(mustPrefix(tb, "192.168.1.0/24"))}
			}, "192.168.2.1", false, "",
		},
		{
			"denies accumulate", func(tb testing.TB) []egress.Option {
				return []egress.Option{egress.DenyCIDRs(mustPrefix(tb, "8.8.8.0/24")), egress.DenyCIDRs(mustPrefix(tb, "1.1.1.0/24"))}
			}, "1.1.1.1", true, "1.1.1.0/24",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := egress.NewPolicy(tt.opts(t)...)
			checkBlocked(t, p, mustAddr(t, tt.addr), tt.blocked, tt.reason)
		})
	}
}

// denyOpts returns options denying the given CIDRs.
func denyOpts(cidrs ...string) func(testing.TB) []egress.Option {
	return func(tb testing.TB) []egress.Option {
		return []egress.Option{egress.DenyCIDRs(mustPrefixes(tb, cidrs...)...)}
	}
}

func TestAllowPrivate(t *testing.T) {
	tests := []struct {
		addr        string
		openPrivate bool // whether AllowPrivate(true) opens it
		reason      string
	}{
		{"10.1.2.3", true, "10.0.0.0/8"},
		{"10.255.255.255", true, "10.0.0.0/8"},
		{"172.16.0.1", true, "172.16.0.0/12"},
		{"172.31.255.255", true, "172.16.0.0/12"},
		{"192.168.1.1", true, "192.168.0.0/16"},
		{"100.64.0.1", true, "100.64.0.0/10"},
		{"100.127.255.255", true, "100.64.0.0/10"},
		{"fd00::1", true, "fc00::/7 (unique local, private)"},
		{"fc00::1", true, "fc00::/7 (unique local, private)"},
		{"::ffff:10.1.2.3", true, "10.0.0.0/8"},
		{"127.0.0.1", false, "127.0.0.0/8"},
		{"169.254.169.254", false, "169.254.169.254/32 (cloud metadata"},
		{"::1", false, "::1/128 (loopback)"},
		{"fe80::1", false, "fe80::/10 (link-local)"},
		{"fe80::1%eth0", false, "fe80::/10 (link-local)"},
		{"224.0.0.1", false, "224.0.0.0/4"},
		{"0.0.0.0", false, "0.0.0.0/8"},
		{"255.255.255.255", false, "240.0.0.0/4"},
		{"192.0.2.1", false, "192.0.2.0/24"},
		{"198.18.0.1", false, "198.18.0.0/15"},
		{"240.0.0.1", false, "240.0.0.0/4"},
		{"fec0::1", false, "fec0::/10 (site-local"},
		{"ff02::1", false, "ff00::/8 (multicast)"},
		{"fd00:ec2::254", false, "cloud metadata"},   // AWS IPv6 metadata, inside fc00::/7
		{"100.100.100.200", false, "cloud metadata"}, // Alibaba Cloud metadata, inside CGNAT
		{"100.100.100.201", true, "100.64.0.0/10"},
		{"64:ff9b::a01:203", false, "64:ff9b::/96 (NAT64)"}, // NAT64 of 10.1.2.3
		{"2002:a01:203::", false, "2002::/16"},              // 6to4 of 10.1.2.3
	}
	on := egress.NewPolicy(egress.AllowPrivate(true))
	off := egress.NewPolicy()
	offAgain := egress.NewPolicy(egress.AllowPrivate(true), egress.AllowPrivate(false))
	if !on.PrivateAllowed() || off.PrivateAllowed() || offAgain.PrivateAllowed() || (&egress.Policy{}).PrivateAllowed() {
		t.Errorf("PrivateAllowed() = %v, %v, %v, %v; want true, false, false, false",
			on.PrivateAllowed(), off.PrivateAllowed(), offAgain.PrivateAllowed(), (&egress.Policy{}).PrivateAllowed())
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			a := mustAddr(t, tt.addr)
			checkBlocked(t, off, a, true, tt.reason)
			checkBlocked(t, offAgain, a, true, tt.reason)
			onReason := tt.reason
			if strings.HasPrefix(tt.addr, "fd00:ec2:") || strings.HasPrefix(tt.addr, "100.100.100.200") {
				onReason = "cloud metadata"
			}
			checkBlocked(t, on, a, !tt.openPrivate, onReason)
		})
	}
	// Public addresses are unaffected.
	for _, s := range []string{"8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111"} {
		checkBlocked(t, on, mustAddr(t, s), false, "")
	}
}

func TestAllowPorts(t *testing.T) {
	loopback := egress.AllowCIDRs(mustPrefix(t, "127.0.0.0/8"))
	web := egress.NewPolicy(loopback, egress.AllowPorts(80, 443))
	tests := []struct {
		name     string
		policy   *egress.Policy
		address  string
		blocked  bool
		wantPort uint16 // BlockedError.Port; 0 when the address is the reason
		reason   string
	}{
		{"allowed port", web, "127.0.0.1:80", false, 0, ""},
		{"other allowed port", web, "[::ffff:127.0.0.1]:443", false, 0, ""},
		{"ssh refused", web, "127.0.0.1:22", true, 22, "port 22 not allowed"},
		{"high port refused", web, "127.0.0.1:8443", true, 8443, "port 8443 not allowed"},
		{"port 0 refused", web, "127.0.0.1:0", true, 0, "port 0 not allowed"},
		{"blocked address wins over port", web, "10.0.0.1:22", true, 0, "10.0.0.0/8"},
		{"every port by default", egress.NewPolicy(loopback), "127.0.0.1:22", false, 0, ""},
		{"empty AllowPorts allows every port", egress.NewPolicy(loopback, egress.AllowPorts()), "127.0.0.1:22", false, 0, ""},
		{"ports accumulate", egress.NewPolicy(loopback, egress.AllowPorts(80), egress.AllowPorts(8080)), "127.0.0.1:8080", false, 0, ""},
		{"accumulated list still refuses", egress.NewPolicy(loopback, egress.AllowPorts(80), egress.AllowPorts(8080)), "127.0.0.1:8081", true, 8081, "port 8081 not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.CheckAddress(tt.address)
			if (err != nil) != tt.blocked {
				t.Fatalf("CheckAddress(%q) = %v, want %v", tt.address, err, wantText(tt.blocked))
			}
			if cerr := tt.policy.Control(t.Context(), "tcp", tt.address, nil); (cerr == nil) != (err == nil) {
				t.Errorf("Control(%q) = %v, want %v (as CheckAddress)", tt.address, cerr, err)
			}
			if err == nil {
				return
			}
			var be *egress.BlockedError
			if !errors.As(err, &be) || !errors.Is(err, egress.ErrBlocked) {
				t.Fatalf("CheckAddress(%q) = %T %v, want a *BlockedError matching ErrBlocked", tt.address, err, err)
			}
			if be.Port != tt.wantPort || !strings.Contains(be.Reason, tt.reason) {
				t.Errorf("CheckAddress(%q) = Port %d, Reason %q; want %d, %q", tt.address, be.Port, be.Reason, tt.wantPort, tt.reason)
			}
			if tt.wantPort != 0 && !strings.Contains(err.Error(), tt.address) {
				t.Errorf("CheckAddress(%q).Error() = %q, want it to name %s", tt.address, err, tt.address)
			}
		})
	}

	t.Run("CheckPort", func(t *testing.T) {
		for _, tt := range []struct {
			port    uint16
			blocked bool
		}{{80, false}, {443, false}, {22, true}, {8080, true}} {
			err := web.CheckPort(tt.port)
			if (err != nil) != tt.blocked {
				t.Errorf("CheckPort(%d) = %v, want %v", tt.port, err, wantText(tt.blocked))
			}
			var be *egress.BlockedError
			if err != nil && (!errors.As(err, &be) || be.Port != tt.port || be.Addr.IsValid() ||
				err.Error() != "egress: port "+strconv.Itoa(int(tt.port))+" is blocked by policy: port "+strconv.Itoa(int(tt.port))+" not allowed") {
				t.Errorf("CheckPort(%d) = %v, want a *BlockedError naming the port only", tt.port, err)
			}
		}
		if err := egress.NewPolicy().CheckPort(22); err != nil {
			t.Errorf("CheckPort(22) with no AllowPorts = %v, want <nil>", err)
		}
	})
}

// TestAllowPortsDial dials a real listener through a guarded dialer: refused
// before connect when its port is not allowed, accepted when it is.
func TestAllowPortsDial(t *testing.T) {
	ln := listen(t)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	address := ln.Addr().String()
	loopback := egress.AllowCIDRs(mustPrefix(t, "127.0.0.0/8"))

	refused := egress.NewPolicy(loopback, egress.AllowPorts(port+1))
	d := net.Dialer{Timeout: 5 * time.Second, ControlContext: refused.Control}
	if conn, err := d.DialContext(t.Context(), "tcp", address); err == nil {
		conn.Close()
		t.Fatalf("DialContext(%q) with AllowPorts(%d) = <nil>, want ErrBlocked", address, port+1)
	} else if !errors.Is(err, egress.ErrBlocked) || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("DialContext(%q) with AllowPorts(%d) = %v, want ErrBlocked for the port", address, port+1, err)
	}
	if conn, err := acceptWithin(t, ln, 200*time.Millisecond); err == nil {
		conn.Close()
		t.Fatalf("Accept() = %v, want a timeout: a refused port reached the listener", conn.RemoteAddr())
	}

	allowed := egress.NewPolicy(loopback, egress.AllowPorts(port))
	d.ControlContext = allowed.Control
	conn, err := d.DialContext(t.Context(), "tcp", address)
	if err != nil {
		t.Fatalf("DialContext(%q) with AllowPorts(%d) = %v, want <nil>", address, port, err)
	}
	defer conn.Close()
	server, err := acceptWithin(t, ln, 5*time.Second)
	if err != nil {
		t.Fatalf("Accept() = %v, want the allowed connection", err)
	}
	server.Close()
}
