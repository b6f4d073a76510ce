package egress

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
)

// ErrBlocked is matched, through [errors.Is], by every error the policy
// returns for a refused address.
var ErrBlocked = errors.New("egress: destination blocked by policy")

// BlockedError reports a refused destination address.
type BlockedError struct {
	Addr   netip.Addr // the address that was refused
	Reason string     // the range it falls in, such as "loopback 127.0.0.0/8"
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("egress: %s is blocked by policy (%s)", e.Addr, e.Reason)
}

// Is reports whether target is [ErrBlocked].
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

type deniedRange struct {
	prefix netip.Prefix
	reason string
}

// deniedV4 and deniedV6 are the special-purpose ranges refused by default;
// see the IANA IPv4 and IPv6 special-purpose address registries.
var (
	deniedV4 = mustRanges(
		"0.0.0.0/8 this network",
		"10.0.0.0/8 private",
		"100.64.0.0/10 CGNAT shared address space",
		"127.0.0.0/8 loopback",
		"169.254.0.0/16 link-local",
		"172.16.0.0/12 private",
		"192.0.0.0/24 IETF protocol assignments",
		"192.0.2.0/24 documentation (TEST-NET-1)",
		"192.88.99.0/24 6to4 relay anycast",
		"192.168.0.0/16 private",
		"198.18.0.0/15 benchmarking",
		"198.51.100.0/24 documentation (TEST-NET-2)",
		"203.0.113.0/24 documentation (TEST-NET-3)",
		"224.0.0.0/4 multicast",
		"240.0.0.0/4 reserved",
		"255.255.255.255/32 limited broadcast",
	)
	// Every IPv6 address outside global unicast 2000::/3 is refused first
	// (::, ::1, fc00::/7, fe80::/10, ff00::/8, 64:ff9b::/96 and the rest);
	// these are the special ranges inside 2000::/3.
	globalUnicastV6 = netip.MustParsePrefix("2000::/3")
	deniedV6        = mustRanges(
		"2001::/23 IETF protocol assignments",
		"2001:db8::/32 documentation",
		"2002::/16 6to4",
		"3fff::/20 documentation",
	)
)

func mustRanges(specs ...string) []deniedRange {
	out := make([]deniedRange, 0, len(specs))
	for _, s := range specs {
		cidr, reason, _ := strings.Cut(s, " ")
		out = append(out, deniedRange{prefix: netip.MustParsePrefix(cidr), reason: reason + " " + cidr})
	}
	return out
}

// Policy decides which destination addresses may be dialled. The zero value
// is the default policy: public unicast addresses only. A Policy is safe for
// concurrent use and must not be changed after first use.
type Policy struct {
	allow []netip.Prefix
}

// Option configures a [Policy].
type Option func(*Policy)

// AllowCIDRs opens the given ranges, overriding the default deny list. An
// IPv4 range also opens the IPv4-mapped IPv6 forms of its addresses. Default:
// none.
func AllowCIDRs(prefixes ...netip.Prefix) Option {
	return func(p *Policy) {
		for _, pfx := range prefixes {
			if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
				// ::ffff:a.b.c.d/n: addresses are unmapped before the
				// check, so keep the range in its IPv4 form.
				pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
			}
			p.allow = append(p.allow, pfx.Masked())
		}
	}
}

// NewPolicy returns a policy with the given options applied.
func NewPolicy(opts ...Option) *Policy {
	p := &Policy{}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Check returns nil if addr may be dialled, or a [*BlockedError].
func (p *Policy) Check(addr netip.Addr) error {
	if !addr.IsValid() {
		return &BlockedError{Addr: addr, Reason: "invalid address"}
	}
	addr = addr.Unmap().WithZone("")
	for _, pfx := range p.allow {
		if pfx.Contains(addr) {
			return nil
		}
	}
	if reason := deniedReason(addr); reason != "" {
		return &BlockedError{Addr: addr, Reason: reason}
	}
	return nil
}

// deniedReason returns why the default policy refuses addr, or "" if it
// does not. addr must already be unmapped.
func deniedReason(addr netip.Addr) string {
	if addr.Is4() {
		for _, r := range deniedV4 {
			if r.prefix.Contains(addr) {
				return r.reason
			}
		}
		return ""
	}
	if !globalUnicastV6.Contains(addr) {
		return "IPv6 outside global unicast 2000::/3"
	}
	for _, r := range deniedV6 {
		if r.prefix.Contains(addr) {
			return r.reason
		}
	}
	return ""
}

// CheckAddress checks a "host:port" address as a dialer sees it, after name
// resolution. A host that is not an IP address is refused.
func (p *Policy) CheckAddress(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dial address %q: %v", ErrBlocked, address, err)
	}
	return p.Check(ap.Addr())
}

// Control checks the address about to be connected to; it has the signature
// of [net.Dialer.ControlContext] and refuses, before connect, every address
// the policy blocks.
func (p *Policy) Control(_ context.Context, _, address string, _ syscall.RawConn) error {
	return p.CheckAddress(address)
}

// ParseCIDRs parses CIDR ranges, each element holding one or more separated
// by commas or spaces. A bare address is taken as a single-address range.
func ParseCIDRs(list ...string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range list {
		for _, f := range strings.FieldsFunc(item, func(r rune) bool { return r == ',' || r == ' ' }) {
			if !strings.Contains(f, "/") {
				a, err := netip.ParseAddr(f)
				if err != nil {
					return nil, fmt.Errorf("parse CIDR %q: %w", f, err)
				}
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			pfx, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("parse CIDR %q: %w", f, err)
			}
			out = append(out, pfx.Masked())
		}
	}
	return out, nil
}
