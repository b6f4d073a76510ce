package egress_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fetchd/fetchd/server/internal/egress"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wantText names the expected outcome in failure messages.
func wantText(blocked bool) string {
	if blocked {
		return "ErrBlocked"
	}
	return "<nil>"
}

func mustAddr(tb testing.TB, s string) netip.Addr {
	tb.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		tb.Fatalf("netip.ParseAddr(%q): %v", s, err)
	}
	return a
}

func mustPrefix(tb testing.TB, s string) netip.Prefix {
	tb.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		tb.Fatalf("netip.ParsePrefix(%q): %v", s, err)
	}
	return p
}

func mustPrefixes(tb testing.TB, ss ...string) []netip.Prefix {
	tb.Helper()
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, mustPrefix(tb, s))
	}
	return out
}

// lastInPrefix returns the highest address of p.
func lastInPrefix(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return last
}

// checkBlocked runs p.Check(addr) and verifies the outcome: a refusal must be
// a *BlockedError matching ErrBlocked, carrying a non-empty reason (containing
// reason, if given) and the address as judged (unmapped, without zone).
func checkBlocked(tb testing.TB, p *egress.Policy, addr netip.Addr, wantBlocked bool, reason string) {
	tb.Helper()
	err := p.Check(addr)
	if (err != nil) != wantBlocked {
		tb.Fatalf("Check(%v) = %v, want %v", addr, err, wantText(wantBlocked))
	}
	if err == nil {
		return
	}
	if !errors.Is(err, egress.ErrBlocked) {
		tb.Errorf("Check(%v) = %v, want an error matching ErrBlocked", addr, err)
	}
	var be *egress.BlockedError
	if !errors.As(err, &be) {
		tb.Fatalf("Check(%v) = %T %v, want *BlockedError", addr, err, err)
	}
	if be.Reason == "" {
		tb.Errorf("Check(%v) = %v, want a non-empty Reason", addr, err)
	}
	if reason != "" && !strings.Contains(be.Reason, reason) {
		tb.Errorf("Check(%v) reason = %q, want it to contain %q", addr, be.Reason, reason)
	}
	if want := addr.Unmap().WithZone(""); be.Addr != want {
		tb.Errorf("Check(%v) BlockedError.Addr = %v, want %v", addr, be.Addr, want)
	}
	if msg := err.Error(); !strings.Contains(msg, be.Reason) || !strings.Contains(msg, be.Addr.String()) {
		tb.Errorf("Check(%v).Error() = %q, want it to name %v and %q", addr, msg, be.Addr, be.Reason)
	}
}

// TestCheckBoundaries tests every range of the default deny list at its first
// and last address and just outside each end.
func TestCheckBoundaries(t *testing.T) {
	const outside2000 = "2000::/3"
	tests := []struct {
		cidr         string
		first, last  string
		below, above string // neighbours outside the range; "" if none
		belowBlocked bool
		aboveBlocked bool
		reason       string // substring of BlockedError.Reason inside the range; "" to skip
	}{
		// IPv4.
		{"0.0.0.0/8", "0.0.0.0", "0.255.255.255", "", "1.0.0.0", false, false, "0.0.0.0/8"},
		{"10.0.0.0/8", "10.0.0.0", "10.255.255.255", "9.255.255.255", "11.0.0.0", false, false, "10.0.0.0/8"},
		{"100.64.0.0/10", "100.64.0.0", "100.127.255.255", "100.63.255.255", "100.128.0.0", false, false, "100.64.0.0/10"},
		{"127.0.0.0/8", "127.0.0.0", "127.255.255.255", "126.255.255.255", "128.0.0.0", false, false, "127.0.0.0/8"},
		{"169.254.0.0/16", "169.254.0.0", "169.254.255.255", "169.253.255.255", "169.255.0.0", false, false, "169.254.0.0/16"},
		{"172.16.0.0/12", "172.16.0.0", "172.31.255.255", "172.15.255.255", "172.32.0.0", false, false, "172.16.0.0/12"},
		{"192.0.0.0/24", "192.0.0.0", "192.0.0.255", "191.255.255.255", "192.0.1.0", false, false, "192.0.0.0/24"},
		{"192.0.2.0/24", "192.0.2.0", "192.0.2.255", "192.0.1.255", "192.0.3.0", false, false, "192.0.2.0/24"},
		{"192.88.99.0/24", "192.88.99.0", "192.88.99.255", "192.88.98.255", "192.88.100.0", false, false, "192.88.99.0/24"},
		{"192.168.0.0/16", "192.168.0.0", "192.168.255.255", "192.167.255.255", "192.169.0.0", false, false, "192.168.0.0/16"},
		{"198.18.0.0/15", "198.18.0.0", "198.19.255.255", "198.17.255.255", "198.20.0.0", false, false, "198.18.0.0/15"},
		{"198.51.100.0/24", "198.51.100.0", "198.51.100.255", "198.51.99.255", "198.51.101.0", false, false, "198.51.100.0/24"},
		{"203.0.113.0/24", "203.0.113.0", "203.0.113.255", "203.0.112.255", "203.0.114.0", false, false, "203.0.113.0/24"},
		{"224.0.0.0/4", "224.0.0.0", "239.255.255.255", "223.255.255.255", "240.0.0.0", false, true, "224.0.0.0/4"},
		{"240.0.0.0/4", "240.0.0.0", "255.255.255.255", "239.255.255.255", "", true, false, ""},
		{"255.255.255.255/32", "255.255.255.255", "255.255.255.255", "255.255.255.254", "", true, false, ""},

		// IPv6 outside global unicast 2000::/3, whose neighbours are
		// outside it too.
		{"::/128", "::", "::", "", "::1", false, true, "::/128 (unspecified)"},
		{"::1/128", "::1", "::1", "::", "::2", true, true, "::1/128 (loopback)"},
		{"64:ff9b::/96", "64:ff9b::", "64:ff9b::ffff:ffff",
			"64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", "64:ff9b::1:0:0", true, true, "64:ff9b::/96 (NAT64)"},
		{"64:ff9b:1::/48", "64:ff9b:1::", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
			"64:ff9b:0:ffff:ffff:ffff:ffff:ffff", "64:ff9b:2::", true, true, "64:ff9b:1::/48 (local-use NAT64)"},
		{"fc00::/7", "fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
			"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::", true, true, "fc00::/7 (unique local"},
		{"fe80::/10", "fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
			"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fec0::", true, true, "fe80::/10 (link-local)"},
		{"ff00::/8", "ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
			"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "", true, false, "ff00::/8 (multicast)"},
		// The complement of 2000::/3: its edges are the edges of global
		// unicast.
		{"::/3", "::", "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "", "2000::", false, false, ""},
		{"4000::/2", "4000::", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
			"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "8000::", false, true, outside2000},
		{"8000::/1", "8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
			"7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "", true, false, ""},

		// IPv6 special ranges inside 2000::/3.
		{"2001::/23", "2001::", "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
			"2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:200::", false, false, "2001::/23"},
		{"2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
			"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::", false, false, "2001:db8::/32"},
		{"2002::/16", "2002::", "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
			"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2003::", false, false, "2002::/16"},
		{"3fff::/20", "3fff::", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
			"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "3fff:1000::", false, false, "3fff::/20"},
	}
	p := egress.NewPolicy()
	for _, tt := range tests {
		t.Run(tt.cidr, func(t *testing.T) {
			// Guard the table itself: the addresses must be the real
			// boundaries of the range.
			pfx := mustPrefix(t, tt.cidr)
			first, last := mustAddr(t, tt.first), mustAddr(t, tt.last)
			if pfx != pfx.Masked() || pfx.Addr() != first || lastInPrefix(pfx) != last {
				t.Fatalf("bad table row %s: first %v last %v, want %v and %v",
					tt.cidr, first, last, pfx.Masked().Addr(), lastInPrefix(pfx))
			}
			t.Run("first", func(t *testing.T) { checkBlocked(t, p, first, true, tt.reason) })
			t.Run("last", func(t *testing.T) { checkBlocked(t, p, last, true, tt.reason) })
			if tt.below != "" {
				t.Run("below", func(t *testing.T) {
					below := mustAddr(t, tt.below)
					if below != first.Prev() {
						t.Fatalf("bad table row %s: below = %v, want %v", tt.cidr, below, first.Prev())
					}
					checkBlocked(t, p, below, tt.belowBlocked, "")
				})
			}
			if tt.above != "" {
				t.Run("above", func(t *testing.T) {
					above := mustAddr(t, tt.above)
					if above != last.Next() {
						t.Fatalf("bad table row %s: above = %v, want %v", tt.cidr, above, last.Next())
					}
					checkBlocked(t, p, above, tt.aboveBlocked, "")
				})
			}
		})
	}
}

// TestCheckSpellings covers the alternative spellings of internal addresses
// an attacker reaches for, and well-known public addresses.
func TestCheckSpellings(t *testing.T) {
	tests := []struct {
		name    string
		addr    string
		blocked bool
		reason  string // substring of BlockedError.Reason; "" to skip
	}{
		{"public IPv4 Google DNS", "8.8.8.8", false, ""},
		{"public IPv4 Cloudflare DNS", "1.1.1.1", false, ""},
		{"public IPv6 Cloudflare DNS", "2606:4700:4700::1111", false, ""},
		{"public IPv6 Google DNS", "2001:4860:4860::8888", false, ""},
		{"public IPv6 with zone", "2606:4700:4700::1111%eth0", false, ""},
		{"cloud metadata", "169.254.169.254", true, "169.254.169.254/32 (cloud metadata"},
		{"IPv4-mapped loopback", "::ffff:127.0.0.1", true, "127.0.0.0/8"},
		{"IPv4-mapped metadata", "::ffff:169.254.169.254", true, "169.254.169.254/32 (cloud metadata"},
		{"IPv4-mapped private", "::ffff:10.0.0.1", true, "10.0.0.0/8"},
		{"IPv4-mapped CGNAT", "::ffff:100.64.0.1", true, "100.64.0.0/10"},
		{"IPv4-mapped unspecified", "::ffff:0.0.0.0", true, "0.0.0.0/8"},
		{"IPv4-mapped broadcast", "::ffff:255.255.255.255", true, ""},
		{"IPv4-mapped public judged as IPv4", "::ffff:8.8.8.8", false, ""},
		{"IPv4-mapped hex spelling of loopback", "::ffff:7f00:1", true, "127.0.0.0/8"},
		{"IPv4-compatible loopback", "::127.0.0.1", true, "::/96 (IPv4-compatible"},
		{"IPv4-compatible public", "::8.8.8.8", true, "::/96 (IPv4-compatible"},
		{"NAT64 loopback", "64:ff9b::7f00:1", true, "64:ff9b::/96 (NAT64)"},
		{"NAT64 metadata", "64:ff9b::a9fe:a9fe", true, "64:ff9b::/96 (NAT64)"},
		{"NAT64 public", "64:ff9b::808:808", true, "64:ff9b::/96 (NAT64)"},
		{"local-use NAT64 loopback", "64:ff9b:1::7f00:1", true, "64:ff9b:1::/48 (local-use NAT64)"},
		{"6to4 loopback", "2002:7f00:1::", true, "2002::/16"},
		{"6to4 metadata", "2002:a9fe:a9fe::1", true, "2002::/16"},
		{"Teredo", "2001::1", true, "2001::/23"},
		{"link-local", "fe80::1", true, "fe80::/10 (link-local)"},
		{"link-local with zone", "fe80::1%eth0", true, "fe80::/10 (link-local)"},
		{"link-local with numeric zone", "fe80::a9fe:a9fe%2", true, "fe80::a9fe:a9fe/128 (cloud metadata: OpenStack"},
		{"unspecified", "::", true, "::/128 (unspecified)"},
		{"loopback", "::1", true, "::1/128 (loopback)"},
		{"loopback with zone", "::1%lo", true, "::1/128 (loopback)"},
		{"unique local fc00::/8", "fc00::1", true, "fc00::/7 (unique local, private)"},
		{"unique local fd00::/8", "fd00::1", true, "fc00::/7 (unique local, private)"},
		{"AWS IPv6 metadata", "fd00:ec2::254", true, "fd00:ec2::/32 (cloud metadata: AWS"},
		{"site-local", "fec0::1", true, "fec0::/10 (site-local, deprecated)"},
		{"multicast all nodes", "ff02::1", true, "ff00::/8 (multicast)"},
		{"multicast global", "ff0e::1", true, "ff00::/8 (multicast)"},
	}
	for _, p := range []struct {
		name   string
		policy *egress.Policy
	}{
		{"NewPolicy", egress.NewPolicy()},
		{"zero Policy", &egress.Policy{}},
	} {
		t.Run(p.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					checkBlocked(t, p.policy, mustAddr(t, tt.addr), tt.blocked, tt.reason)
				})
			}
		})
	}
}

func TestCheckInvalidAddr(t *testing.T) {
	p := egress.NewPolicy(egress.AllowCIDRs(mustPrefixes(t, "0.0.0.0/0", "::/0")...))
	var addr netip.Addr
	err := p.Check(addr)
	var be *egress.BlockedError
	if !errors.Is(err, egress.ErrBlocked) || !errors.As(err, &be) || be.Reason == "" {
		t.Fatalf("Check(%v) = %v, want a *BlockedError with a reason", addr, err)
	}
}

func TestAllowCIDRs(t *testing.T) {
	tests := []struct {
		name    string
		allow   []string
		addr    string
		blocked bool
	}{
		{"loopback blocked by default", nil, "127.0.0.1", true},
		{"127/8 opens 127.0.0.1", []string{"127.0.0.0/8"}, "127.0.0.1", false},
		{"127/8 opens last loopback", []string{"127.0.0.0/8"}, "127.255.255.254", false},
		{"127/8 opens mapped loopback", []string{"127.0.0.0/8"}, "::ffff:127.0.0.1", false},
		{"127/8 keeps ::1 blocked", []string{"127.0.0.0/8"}, "::1", true},
		{"127/8 keeps private blocked", []string{"127.0.0.0/8"}, "10.0.0.1", true},
		{"127/8 keeps NAT64 loopback blocked", []string{"127.0.0.0/8"}, "64:ff9b::7f00:1", true},
		{"::1/128 opens ::1", []string{"::1/128"}, "::1", false},
		{"::1/128 opens ::1 with zone", []string{"::1/128"}, "::1%lo", false},
		{"::1/128 keeps 127.0.0.1 blocked", []string{"::1/128"}, "127.0.0.1", true},
		{"::1/128 keeps :: blocked", []string{"::1/128"}, "::", true},
		{"::1/128 keeps ::2 blocked", []string{"::1/128"}, "::2", true},
		{"mapped /104 opens IPv4", []string{"::ffff:127.0.0.0/104"}, "127.0.0.1", false},
		{"mapped /104 opens mapped", []string{"::ffff:127.0.0.0/104"}, "::ffff:127.0.0.1", false},
		{"mapped /104 keeps 10.0.0.1 blocked", []string{"::ffff:127.0.0.0/104"}, "10.0.0.1", true},
		{"mapped /104 keeps ::1 blocked", []string{"::ffff:127.0.0.0/104"}, "::1", true},
		{"mapped /96 opens all IPv4", []string{"::ffff:0.0.0.0/96"}, "10.0.0.1", false},
		{"mapped /96 keeps ::1 blocked", []string{"::ffff:0.0.0.0/96"}, "::1", true},
		{"mapped /128 opens one address", []string{"::ffff:169.254.169.254/128"}, "169.254.169.254", false},
		{"narrow allow opens inside", []string{"10.1.2.0/24"}, "10.1.2.1", false},
		{"narrow allow opens last", []string{"10.1.2.0/24"}, "10.1.2.255", false},
		{"narrow allow keeps next /24 blocked", []string{"10.1.2.0/24"}, "10.1.3.1", true},
		{"narrow allow keeps previous /24 blocked", []string{"10.1.2.0/24"}, "10.1.1.255", true},
		{"unmasked allow is masked", []string{"10.1.2.3/24"}, "10.1.2.200", false},
		{"single metadata address", []string{"169.254.169.254/32"}, "169.254.169.254", false},
		{"single metadata address, neighbour", []string{"169.254.169.254/32"}, "169.254.169.253", true},
		{"several ranges, first", []string{"10.0.0.0/8", "fd00::/8"}, "10.9.9.9", false},
		{"several ranges, second", []string{"10.0.0.0/8", "fd00::/8"}, "fd00::1", false},
		{"several ranges, neither", []string{"10.0.0.0/8", "fd00::/8"}, "fc00::1", true},
		{"link-local allow ignores zone", []string{"fe80::/10"}, "fe80::1%eth0", false},
		{"public stays allowed", []string{"10.0.0.0/8"}, "8.8.8.8", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := egress.NewPolicy(egress.AllowCIDRs(mustPrefixes(t, tt.allow...)...))
			checkBlocked(t, p, mustAddr(t, tt.addr), tt.blocked, "")
		})
	}
}

func TestAllowCIDRsOptionsAccumulate(t *testing.T) {
	p := egress.NewPolicy(
		egress.AllowCIDRs(mustPrefix(t, "127.0.0.0/8")),
		egress.AllowCIDRs(mustPrefix(t, "::1/128")),
	)
	for _, s := range []string{"127.0.0.1", "::1"} {
		checkBlocked(t, p, mustAddr(t, s), false, "")
	}
	// Another policy is not affected.
	checkBlocked(t, egress.NewPolicy(), mustAddr(t, "127.0.0.1"), true, "")
}

func TestCheckAddress(t *testing.T) {
	loopback := egress.NewPolicy(egress.AllowCIDRs(mustPrefix(t, "127.0.0.0/8")))
	tests := []struct {
		name           string
		policy         *egress.Policy
		address        string
		blocked        bool
		isBlockedError bool // refused as an address, not as unparsable
	}{
		{"IPv4 loopback", egress.NewPolicy(), "127.0.0.1:80", true, true},
		{"IPv4 loopback allowed", loopback, "127.0.0.1:80", false, false},
		{"IPv6 loopback", egress.NewPolicy(), "[::1]:443", true, true},
		{"IPv6 loopback, 127/8 allowed", loopback, "[::1]:443", true, true},
		{"mapped loopback", egress.NewPolicy(), "[::ffff:127.0.0.1]:80", true, true},
		{"mapped loopback allowed", loopback, "[::ffff:127.0.0.1]:80", false, false},
		{"link-local with zone", egress.NewPolicy(), "[fe80::1%eth0]:80", true, true},
		{"link-local with escaped zone", egress.NewPolicy(), "[fe80::1%25eth0]:80", true, true},
		{"metadata", egress.NewPolicy(), "169.254.169.254:80", true, true},
		{"public IPv4", egress.NewPolicy(), "8.8.8.8:53", false, false},
		{"public IPv6", egress.NewPolicy(), "[2606:4700:4700::1111]:443", false, false},
		{"mapped public", egress.NewPolicy(), "[::ffff:8.8.8.8]:443", false, false},
		{"host name", egress.NewPolicy(), "localhost:80", true, false},
		{"public host name", egress.NewPolicy(), "example.com:443", true, false},
		{"no port", egress.NewPolicy(), "8.8.8.8", true, false},
		{"IPv6 without brackets", egress.NewPolicy(), "2606:4700:4700::1111:443", true, false},
		{"port out of range", egress.NewPolicy(), "8.8.8.8:65536", true, false},
		{"short IPv4 spelling", egress.NewPolicy(), "127.1:80", true, false},
		{"decimal IPv4 spelling", egress.NewPolicy(), "2130706433:80", true, false},
		{"empty", egress.NewPolicy(), "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.CheckAddress(tt.address)
			if (err != nil) != tt.blocked {
				t.Fatalf("CheckAddress(%q) = %v, want %v", tt.address, err, wantText(tt.blocked))
			}
			if cerr := tt.policy.Control(context.Background(), "tcp", tt.address, nil); (cerr == nil) != (err == nil) ||
				(err != nil && cerr.Error() != err.Error()) {
				t.Errorf("Control(%q) = %v, want %v (as CheckAddress)", tt.address, cerr, err)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, egress.ErrBlocked) {
				t.Errorf("CheckAddress(%q) = %v, want an error matching ErrBlocked", tt.address, err)
			}
			var be *egress.BlockedError
			if got := errors.As(err, &be); got != tt.isBlockedError {
				t.Errorf("CheckAddress(%q) = %T %v, errors.As *BlockedError = %v, want %v",
					tt.address, err, err, got, tt.isBlockedError)
			}
			if be != nil && be.Reason == "" {
				t.Errorf("CheckAddress(%q) = %v, want a non-empty Reason", tt.address, err)
			}
		})
	}
}

func TestParseCIDRs(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr bool
	}{
		{"none", nil, nil, false},
		{"empty", []string{""}, nil, false},
		{"only separators", []string{" , ,, "}, nil, false},
		{"one", []string{"10.0.0.0/8"}, []string{"10.0.0.0/8"}, false},
		{"comma separated", []string{"10.0.0.0/8,127.0.0.0/8"}, []string{"10.0.0.0/8", "127.0.0.0/8"}, false},
		{"space separated", []string{"10.0.0.0/8 ::1/128"}, []string{"10.0.0.0/8", "::1/128"}, false},
		{"commas and spaces", []string{" 10.0.0.0/8 ,  fd00::/8,,127.0.0.0/8 "},
			[]string{"10.0.0.0/8", "fd00::/8", "127.0.0.0/8"}, false},
		{"repeated arguments", []string{"10.0.0.0/8", "172.16.0.0/12,192.168.0.0/16"},
			[]string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}, false},
		{"duplicates kept", []string{"10.0.0.0/8,10.0.0.0/8"}, []string{"10.0.0.0/8", "10.0.0.0/8"}, false},
		{"bare IPv4", []string{"127.0.0.1"}, []string{"127.0.0.1/32"}, false},
		{"bare IPv6", []string{"::1"}, []string{"::1/128"}, false},
		{"bare IPv6 with zone", []string{"fe80::1%eth0"}, []string{"fe80::1/128"}, false},
		{"bare mapped", []string{"::ffff:127.0.0.1"}, []string{"::ffff:127.0.0.1/128"}, false},
		{"masked IPv4", []string{"10.1.2.3/8"}, []string{"10.0.0.0/8"}, false},
		{"masked IPv6", []string{"fd00:1:2::3/16"}, []string{"fd00::/16"}, false},
		{"zero bits", []string{"1.2.3.4/0"}, []string{"0.0.0.0/0"}, false},
		{"invalid address", []string{"10.0.0.256"}, nil, true},
		{"invalid prefix length", []string{"10.0.0.0/33"}, nil, true},
		{"invalid IPv6 prefix length", []string{"::/129"}, nil, true},
		{"host name", []string{"localhost"}, nil, true},
		{"missing bits", []string{"10.0.0.0/"}, nil, true},
		{"zone in prefix", []string{"fe80::%eth0/64"}, nil, true},
		{"one bad among good", []string{"10.0.0.0/8,bogus,127.0.0.0/8"}, nil, true},
		{"bad in a later argument", []string{"10.0.0.0/8", "nope"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := egress.ParseCIDRs(tt.in...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseCIDRs(%q) = %v, %v, want error %v", tt.in, got, err, tt.wantErr)
			}
			if err != nil {
				if got != nil {
					t.Errorf("ParseCIDRs(%q) = %v, %v, want nil prefixes with the error", tt.in, got, err)
				}
				return
			}
			want := mustPrefixes(t, tt.want...)
			if !slices.Equal(got, want) {
				t.Errorf("ParseCIDRs(%q) = %v, want %v", tt.in, got, want)
			}
		})
	}
}

// TestParseCIDRsFeedsAllowCIDRs tests the operator path: a flag value parsed
// and installed as the allow list.
func TestParseCIDRsFeedsAllowCIDRs(t *testing.T) {
	prefixes, err := egress.ParseCIDRs("127.0.0.1, ::ffff:10.1.2.3/120")
	if err != nil {
		t.Fatalf("ParseCIDRs: %v", err)
	}
	p := egress.NewPolicy(egress.AllowCIDRs(prefixes...))
	for _, tt := range []struct {
		addr    string
		blocked bool
	}{
		{"127.0.0.1", false},
		{"::ffff:127.0.0.1", false},
		{"127.0.0.2", true},
		{"10.1.2.0", false},
		{"10.1.2.255", false},
		{"10.1.3.0", true},
	} {
		checkBlocked(t, p, mustAddr(t, tt.addr), tt.blocked, "")
	}
}

func TestPolicyConcurrentUse(t *testing.T) {
	p := egress.NewPolicy(egress.AllowCIDRs(mustPrefix(t, "127.0.0.0/8")))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				a := netip.AddrFrom4([4]byte{127, 0, byte(i), byte(j)})
				if err := p.Check(a); err != nil {
					t.Errorf("Check(%v) = %v, want <nil>", a, err)
				}
				b := netip.AddrFrom4([4]byte{10, 0, byte(i), byte(j)})
				if err := p.Check(b); err == nil {
					t.Errorf("Check(%v) = <nil>, want ErrBlocked", b)
				}
			}
		})
	}
	wg.Wait()
}

// listen opens a TCP listener on 127.0.0.1 that is closed when the test ends.
func listen(tb testing.TB) *net.TCPListener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// acceptWithin accepts one connection or returns the accept error after d.
func acceptWithin(tb testing.TB, ln *net.TCPListener, d time.Duration) (net.Conn, error) {
	tb.Helper()
	if err := ln.SetDeadline(time.Now().Add(d)); err != nil {
		tb.Fatalf("SetDeadline: %v", err)
	}
	return ln.Accept()
}

// TestDialerControl dials a real listener through a net.Dialer guarded by
// the policy: refused before connect by default, accepted once 127.0.0.0/8
// is allowed.
func TestDialerControl(t *testing.T) {
	ln := listen(t)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	t.Run("blocked", func(t *testing.T) {
		d := net.Dialer{Timeout: 5 * time.Second, ControlContext: egress.NewPolicy().Control}
		for _, host := range []string{"127.0.0.1", "0.0.0.0", "::ffff:127.0.0.1", "localhost"} {
			address := net.JoinHostPort(host, port)
			conn, err := d.DialContext(t.Context(), "tcp", address)
			if err == nil {
				conn.Close()
				t.Fatalf("DialContext(%q) = <nil>, want ErrBlocked", address)
			}
			if !errors.Is(err, egress.ErrBlocked) {
				t.Errorf("DialContext(%q) = %v, want ErrBlocked", address, err)
			}
			var opErr *net.OpError
			if !errors.As(err, &opErr) {
				t.Errorf("DialContext(%q) = %T %v, want a *net.OpError", address, err, err)
			}
		}
		conn, err := acceptWithin(t, ln, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			t.Fatalf("Accept() = %v, want a timeout: a blocked dial reached the listener", conn.RemoteAddr())
		}
		if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
			t.Fatalf("Accept() = %v, want a timeout", err)
		}
	})

	t.Run("allowed", func(t *testing.T) {
		p := egress.NewPolicy(egress.AllowCIDRs(mustPrefix(t, "127.0.0.0/8")))
		d := net.Dialer{Timeout: 5 * time.Second, ControlContext: p.Control}
		address := net.JoinHostPort("127.0.0.1", port)
		conn, err := d.DialContext(t.Context(), "tcp", address)
		if err != nil {
			t.Fatalf("DialContext(%q) = %v, want <nil>", address, err)
		}
		defer conn.Close()
		server, err := acceptWithin(t, ln, 5*time.Second)
		if err != nil {
			t.Fatalf("Accept() = %v, want the allowed connection", err)
		}
		server.Close()
	})
}
