package egress_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/fetchd/fetchd/server/internal/egress"
)

// v4 packs an IPv4 address into a uint32 for range comparisons.
func v4(a, b, c, d byte) uint32 {
	return uint32(a)<<24 | uint32(b)<<16 | uint32(c)<<8 | uint32(d)
}

// refDeniedV4 is SECURITY.md's IPv4 deny list written as inclusive integer
// intervals, independently of the package's prefix table.
var refDeniedV4 = [][2]uint32{
	{v4(0, 0, 0, 0), v4(0, 255, 255, 255)},
	{v4(10, 0, 0, 0), v4(10, 255, 255, 255)},
	{v4(100, 64, 0, 0), v4(100, 127, 255, 255)},
	{v4(127, 0, 0, 0), v4(127, 255, 255, 255)},
	{v4(169, 254, 0, 0), v4(169, 254, 255, 255)},
	{v4(172, 16, 0, 0), v4(172, 31, 255, 255)},
	{v4(192, 0, 0, 0), v4(192, 0, 0, 255)},
	{v4(192, 0, 2, 0), v4(192, 0, 2, 255)},
	{v4(192, 88, 99, 0), v4(192, 88, 99, 255)},
	{v4(192, 168, 0, 0), v4(192, 168, 255, 255)},
	{v4(198, 18, 0, 0), v4(198, 19, 255, 255)},
	{v4(198, 51, 100, 0), v4(198, 51, 100, 255)},
	{v4(203, 0, 113, 0), v4(203, 0, 113, 255)},
	{v4(224, 0, 0, 0), v4(255, 255, 255, 255)},   // 224/4, 240/4, broadcast
	{v4(168, 63, 129, 16), v4(168, 63, 129, 16)}, // Azure WireServer, a public address
}

// refBlocked is an independent oracle for the default policy, working on the
// raw bytes of the address.
func refBlocked(a netip.Addr) bool {
	if !a.IsValid() {
		return true
	}
	b := a.As16()
	if a.Is4() || (b == [16]byte{10: 0xff, 11: 0xff, 12: b[12], 13: b[13], 14: b[14], 15: b[15]}) {
		n := v4(b[12], b[13], b[14], b[15])
		for _, r := range refDeniedV4 {
			if r[0] <= n && n <= r[1] {
				return true
			}
		}
		return false
	}
	switch {
	case b[0]&0xe0 != 0x20: // outside 2000::/3
		return true
	case b[0] == 0x20 && b[1] == 0x01 && b[2] <= 0x01: // 2001::/23
		return true
	case b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8: // 2001:db8::/32
		return true
	case b[0] == 0x20 && b[1] == 0x02: // 2002::/16
		return true
	case b[0] == 0x3f && b[1] == 0xff && b[2]&0xf0 == 0: // 3fff::/20
		return true
	}
	return false
}

// fuzzAddrs derives the addresses a fuzz input stands for: its text form and
// its leading bytes taken as raw IPv4 and IPv6 addresses.
func fuzzAddrs(s string) []netip.Addr {
	var out []netip.Addr
	if a, err := netip.ParseAddr(s); err == nil {
		out = append(out, a)
	}
	if len(s) >= 4 {
		out = append(out, netip.AddrFrom4([4]byte([]byte(s[:4]))))
	}
	if len(s) >= 16 {
		out = append(out, netip.AddrFrom16([16]byte([]byte(s[:16]))))
	}
	return out
}

// other returns the other spelling of an IPv4 address (mapped for IPv4,
// unmapped for IPv4-mapped IPv6), and false for other addresses.
func other(a netip.Addr) (netip.Addr, bool) {
	switch {
	case a.Is4():
		return netip.AddrFrom16(a.As16()), true
	case a.Is4In6():
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111",
		"127.0.0.1", "0.0.0.0", "169.254.169.254", "168.63.129.16", "168.63.129.17", "100.64.0.1", "255.255.255.255", "223.255.255.255",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::ffff:8.8.8.8",
		"::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b:1::1", "2002:7f00:1::",
		"fe80::1%eth0", "::", "::1", "fc00::1", "ff02::1", "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2000::",
		"2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:200::", "2001:db8::1", "3fff:fff::1", "3fff:1000::",
		"\x7f\x00\x00\x01", "\x08\x08\x08\x08",
		"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x7f\x00\x00\x01",
		"\xfe\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
		"\x26\x06\x47\x00\x47\x00\x00\x00\x00\x00\x00\x00\x00\x00\x11\x11",
		"", "not an address", "1.2.3", "::ffff:1.2.3.4%zone",
	} {
		f.Add(s)
	}
	def := egress.NewPolicy()
	f.Fuzz(func(t *testing.T, s string) {
		for _, a := range fuzzAddrs(s) {
			err := def.Check(a)
			blocked := err != nil
			if want := refBlocked(a); blocked != want {
				t.Errorf("Check(%v) = %v, want %v (reference)", a, err, wantText(want))
			}
			if err != nil {
				var be *egress.BlockedError
				if !errors.As(err, &be) || !errors.Is(err, egress.ErrBlocked) || be.Reason == "" {
					t.Errorf("Check(%v) = %T %v, want a *BlockedError matching ErrBlocked with a reason", a, err, err)
				}
			}

			// Both spellings of an IPv4 address are judged alike.
			if o, ok := other(a); ok {
				if oerr := def.Check(o); (oerr != nil) != blocked {
					t.Errorf("Check(%v) = %v, want %v (as Check(%v))", o, oerr, wantText(blocked), a)
				}
			}

			// A zone never changes the verdict.
			if a.Is6() {
				for _, z := range []string{"", "eth0"} {
					if zerr := def.Check(a.WithZone(z)); (zerr != nil) != blocked {
						t.Errorf("Check(%v) = %v, want %v (as Check(%v))", a.WithZone(z), zerr, wantText(blocked), a)
					}
				}
			}

			// CheckAddress is never more permissive than Check, and agrees
			// with it when the host:port form is unambiguous.
			address := netip.AddrPortFrom(a, 443).String()
			if cerr := def.CheckAddress(address); (cerr != nil) != blocked && (a.Zone() == "" || cerr == nil) {
				t.Errorf("CheckAddress(%q) = %v, want %v (as Check(%v))", address, cerr, wantText(blocked), a)
			}

			// Allowing the address's own /32 or /128 opens it, in both
			// spellings, and nothing the default policy refuses next to it.
			allow := egress.NewPolicy(egress.AllowCIDRs(netip.PrefixFrom(a, a.BitLen())))
			if aerr := allow.Check(a); aerr != nil {
				t.Errorf("Check(%v) = %v, want <nil> with AllowCIDRs(%v)", a, aerr, netip.PrefixFrom(a, a.BitLen()))
			}
			if o, ok := other(a); ok {
				if aerr := allow.Check(o); aerr != nil {
					t.Errorf("Check(%v) = %v, want <nil> with AllowCIDRs(%v)", o, aerr, netip.PrefixFrom(a, a.BitLen()))
				}
			}
			for _, n := range []netip.Addr{a.Prev(), a.Next()} {
				if !n.IsValid() {
					continue
				}
				want := def.Check(n) != nil
				if nerr := allow.Check(n); (nerr != nil) != want {
					t.Errorf("Check(%v) = %v, want %v with AllowCIDRs(%v)", n, nerr, wantText(want), netip.PrefixFrom(a, a.BitLen()))
				}
			}
		}
	})
}

func FuzzParseCIDRs(f *testing.F) {
	for _, s := range []string{
		"", " ", ",", " , ,, ",
		"10.0.0.0/8", "10.1.2.3/8", "10.0.0.0/8,127.0.0.0/8", "10.0.0.0/8 ::1/128", " 10.0.0.0/8 ,  fd00::/8 ",
		"127.0.0.1", "::1", "fe80::1%eth0", "::ffff:127.0.0.1", "::ffff:127.0.0.0/104", "::ffff:1.2.3.4/8",
		"0.0.0.0/0", "::/0", "10.0.0.0/33", "::/129", "10.0.0.0/", "/8", "fe80::%eth0/64", "bogus",
		"1.2.3.4/32/8", "10.0.0.0/08", "10.0.0.0/-1", "::ffff:0.0.0.0/96\t::1", "%", "[::1]/128",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := egress.ParseCIDRs(s)
		if err != nil {
			if got != nil {
				t.Errorf("ParseCIDRs(%q) = %v, %v, want nil prefixes with the error", s, got, err)
			}
			return
		}
		strs := make([]string, 0, len(got))
		for _, p := range got {
			if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" {
				t.Errorf("ParseCIDRs(%q) returned %v, want a valid, masked prefix without zone", s, p)
			}
			strs = append(strs, p.String())

			// The installed prefix opens its first address, and its last
			// unless that is an IPv4-mapped address judged as IPv4.
			pol := egress.NewPolicy(egress.AllowCIDRs(p))
			if perr := pol.Check(p.Addr()); perr != nil {
				t.Errorf("Check(%v) = %v, want <nil> with AllowCIDRs(%v)", p.Addr(), perr, p)
			}
			if last := lastInPrefix(p); !last.Is4In6() || p.Bits() >= 96 {
				if perr := pol.Check(last); perr != nil {
					t.Errorf("Check(%v) = %v, want <nil> with AllowCIDRs(%v)", last, perr, p)
				}
			}
		}

		// The canonical forms parse back to the same prefixes.
		again, err := egress.ParseCIDRs(strings.Join(strs, ","))
		if err != nil || !slices.Equal(again, got) {
			t.Errorf("ParseCIDRs(%q) = %v, %v, want %v", strings.Join(strs, ","), again, err, got)
		}

		// Repeated arguments concatenate.
		twice, err := egress.ParseCIDRs(s, s)
		if want := slices.Concat(got, got); err != nil || !slices.Equal(twice, want) {
			t.Errorf("ParseCIDRs(%q, %q) = %v, %v, want %v", s, s, twice, err, want)
		}
	})
}

// asciiUpper upper-cases the ASCII letters of s and nothing else.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// hostSpellings returns spellings of the host a normalized, non-wildcard
// pattern names, each of which the pattern must match.
func hostSpellings(pat string) []string {
	out := []string{pat, pat + ".", asciiUpper(pat), asciiUpper(pat) + "."}
	if a, err := netip.ParseAddr(pat); err == nil {
		out = append(out, "["+pat+"]", netip.AddrFrom16(a.As16()).String())
	}
	return out
}

func FuzzCheckHost(f *testing.F) {
	for _, s := range [][2]string{
		{"example.com", "example.com"}, {"*.example.com", "a.example.com"}, {"*.example.com", "example.com"},
		{"Example.COM.", "EXAMPLE.com."}, {"10.0.0.1", "[::ffff:10.0.0.1]"}, {"[::1]", "0::1"},
		{"fe80::1%eth0", "fe80::1%lo"}, {"bücher.example", "BÜCHER.example."},
		{"*.xn--bcher-kva.example", "a.bücher.example"}, {"example.com", "ｅｘａｍｐｌｅ.com"},
		{"*", "x"}, {"a..b", ""}, {"a.*.b", "a.x.b"}, {"*.10.0.0.1", "a.10.0.0.1"}, {"example.com:80", "example.com"},
		{"_svc.example", "_SVC.example"}, {"a", "\u0300a"}, {"x", "[::1"}, {"x", "."},
	} {
		f.Add(s[0], s[1])
	}
	fixed := []*egress.Policy{
		egress.NewPolicy(),
		egress.NewPolicy(egress.DenyHosts("example.com", "*.internal.test", "10.0.0.1")),
		egress.NewPolicy(egress.AllowHosts("*.example.com", "::1"), egress.DenyHosts("secret.example.com")),
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		// No host makes a policy panic, and every refusal is a
		// *BlockedError.
		for _, p := range fixed {
			if err := p.CheckHost(host); err != nil {
				var be *egress.BlockedError
				if !errors.As(err, &be) || !errors.Is(err, egress.ErrBlocked) || be.Reason == "" {
					t.Fatalf("CheckHost(%q) = %T %v, want a *BlockedError matching ErrBlocked with a reason", host, err, err)
				}
			}
		}

		pats, err := egress.ParseHostPatterns(pattern)
		if err != nil || len(pats) != 1 {
			return
		}
		pat := pats[0]
		deny := egress.NewPolicy(egress.DenyHosts(pat))
		allow := egress.NewPolicy(egress.AllowHosts(pat))
		both := egress.NewPolicy(egress.AllowHosts(pat), egress.DenyHosts(pat))
		policies := []*egress.Policy{deny}
		if !strings.ContainsAny(pattern, ", ") {
			// The pattern as written, not normalized, behaves the same.
			policies = append(policies, egress.NewPolicy(egress.DenyHosts(pattern)))
		}

		// A denied name is denied in every spelling, and deny beats allow.
		apex, wildcard := strings.CutPrefix(pat, "*.")
		matching := hostSpellings(pat)
		if wildcard {
			matching = slices.Concat(hostSpellings("a."+apex), hostSpellings("x.y."+apex))
		}
		for _, h := range matching {
			for _, p := range policies {
				if err := p.CheckHost(h); err == nil {
					t.Errorf("CheckHost(%q) = <nil> with DenyHosts(%q), want ErrBlocked", h, pat)
				}
			}
			if err := both.CheckHost(h); err == nil {
				t.Errorf("CheckHost(%q) = <nil> with AllowHosts and DenyHosts(%q), want ErrBlocked: deny beats allow", h, pat)
			}
			if err := allow.CheckHost(h); err != nil {
				t.Errorf("CheckHost(%q) = %v with AllowHosts(%q), want <nil>", h, err, pat)
			}
		}
		// A wildcard does not match its apex.
		if wildcard {
			if err := deny.CheckHost(apex); err != nil {
				t.Errorf("CheckHost(%q) = %v with DenyHosts(%q), want <nil>: the apex is not a subdomain", apex, err, pat)
			}
			if err := allow.CheckHost(apex); err == nil {
				t.Errorf("CheckHost(%q) = <nil> with AllowHosts(%q), want ErrBlocked: the apex is not a subdomain", apex, pat)
			}
		}
		// For any host, the allow list and the deny list of one pattern
		// agree on what matches, and together they refuse everything.
		allowErr, denyErr := allow.CheckHost(host), deny.CheckHost(host)
		if allowErr == nil && denyErr == nil {
			t.Errorf("CheckHost(%q) passes both AllowHosts(%q) and DenyHosts(%q), want exactly one to refuse it", host, pat, pat)
		}
		if err := both.CheckHost(host); err == nil {
			t.Errorf("CheckHost(%q) = <nil> with AllowHosts and DenyHosts(%q), want ErrBlocked", host, pat)
		}
	})
}
