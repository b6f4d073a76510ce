package egress

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
)

// ErrBlocked is matched, through [errors.Is], by every error the policy
// returns for a refused destination: address, port or host name.
var ErrBlocked = errors.New("egress: destination blocked by policy")

// BlockedError reports a refused destination: an address, a port, or a host
// name refused by [Policy.CheckHost] before resolution.
type BlockedError struct {
	Addr   netip.Addr // the address that was refused; invalid if none was involved
	Host   string     // the host name refused by [Policy.CheckHost]; "" for address and port checks
	Port   uint16     // the port, when the port was refused; 0 otherwise
	Reason string     // why, such as "loopback 127.0.0.0/8" or "port 22 not allowed"

	byHost bool // refused by CheckHost, even if Host is empty
}

func (e *BlockedError) Error() string {
	var dest string
	switch {
	case e.Host != "" || e.byHost:
		dest = "host " + strconv.Quote(e.Host)
	case e.Port != 0 && e.Addr.IsValid():
		dest = netip.AddrPortFrom(e.Addr, e.Port).String()
	case e.Port != 0:
		dest = "port " + strconv.Itoa(int(e.Port))
	default:
		dest = e.Addr.String()
	}
	return fmt.Sprintf("egress: %s is blocked by policy (%s)", dest, e.Reason)
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

// privateRanges are the ranges [AllowPrivate] opens: RFC 1918, CGNAT and
// IPv6 unique local addresses. Loopback, link-local and the rest stay shut.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("fc00::/7"),
}

// privateMetadata are cloud metadata endpoints inside privateRanges: they
// stay refused under [AllowPrivate] (only [AllowCIDRs] opens them). The
// others, 169.254.169.254 among them, are link-local and never private.
var privateMetadata = mustRanges(
	"fd00:ec2::254/128 cloud metadata (AWS IPv6)",
	"100.100.100.200/32 cloud metadata (Alibaba Cloud)",
)

func mustRanges(specs ...string) []deniedRange {
	out := make([]deniedRange, 0, len(specs))
	for _, s := range specs {
		cidr, reason, _ := strings.Cut(s, " ")
		out = append(out, deniedRange{prefix: netip.MustParsePrefix(cidr), reason: reason + " " + cidr})
	}
	return out
}

// Policy decides which destinations may be dialled: addresses and ports at
// dial time ([Policy.Control]), host names before resolution
// ([Policy.CheckHost]). The zero value is the default policy: public unicast
// addresses only, every port, every host name. A Policy is safe for
// concurrent use and must not be changed after first use.
type Policy struct {
	allow        []netip.Prefix
	deny         []netip.Prefix
	allowPrivate bool
	ports        map[uint16]bool // the only ports allowed; nil allows every port
	allowHosts   hostSet
	denyHosts    hostSet
}

// Option configures a [Policy].
type Option func(*Policy)

// inIPv4Form keeps a range of IPv4-mapped IPv6 addresses in its IPv4 form:
// addresses are unmapped before they are checked.
func inIPv4Form(pfx netip.Prefix) netip.Prefix {
	if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
		pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
	}
	return pfx.Masked()
}

// AllowCIDRs opens the given ranges, overriding the default deny list. An
// IPv4 range also opens the IPv4-mapped IPv6 forms of its addresses. Calls
// accumulate. Default: none.
func AllowCIDRs(prefixes ...netip.Prefix) Option {
	return func(p *Policy) {
		for _, pfx := range prefixes {
			p.allow = append(p.allow, inIPv4Form(pfx))
		}
	}
}

// DenyCIDRs refuses the given ranges even where they are public, opened by
// [AllowCIDRs] or by [AllowPrivate]: deny beats allow. An IPv4 range also
// covers the IPv4-mapped IPv6 forms of its addresses. Calls accumulate.
// Default: none beyond the built-in deny list.
func DenyCIDRs(prefixes ...netip.Prefix) Option {
	return func(p *Policy) {
		for _, pfx := range prefixes {
			p.deny = append(p.deny, inIPv4Form(pfx))
		}
	}
}

// AllowPrivate, when on, opens the private ranges: 10.0.0.0/8,
// 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10 (CGNAT) and fc00::/7 (IPv6
// unique local). Loopback, link-local (the cloud metadata address),
// multicast, NAT64, 6to4 and the other special-purpose ranges stay refused,
// and so do the metadata endpoints inside the private ranges (AWS's
// fd00:ec2::254, Alibaba Cloud's 100.100.100.200); [DenyCIDRs] still
// applies. Default: off.
func AllowPrivate(on bool) Option {
	return func(p *Policy) { p.allowPrivate = on }
}

// AllowPorts restricts dialling to the given ports: when at least one port
// is given, every other port is refused. Calls accumulate. Default: every
// port.
func AllowPorts(ports ...uint16) Option {
	return func(p *Policy) {
		if len(ports) == 0 {
			return
		}
		if p.ports == nil {
			p.ports = make(map[uint16]bool, len(ports))
		}
		for _, port := range ports {
			p.ports[port] = true
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

// PrivateAllowed reports whether [AllowPrivate] opened the private ranges,
// so that a server can say so loudly at startup.
func (p *Policy) PrivateAllowed() bool { return p.allowPrivate }

// Check returns nil if addr may be dialled, or a [*BlockedError]. The
// operator's deny list ([DenyCIDRs]) is checked first, then the allow list
// ([AllowCIDRs]), then the built-in deny list, which [AllowPrivate] relaxes
// for the private ranges.
func (p *Policy) Check(addr netip.Addr) error {
	if !addr.IsValid() {
		return &BlockedError{Addr: addr, Reason: "invalid address"}
	}
	addr = addr.Unmap().WithZone("")
	for _, pfx := range p.deny {
		if pfx.Contains(addr) {
			return &BlockedError{Addr: addr, Reason: "operator deny list " + pfx.String()}
		}
	}
	for _, pfx := range p.allow {
		if pfx.Contains(addr) {
			return nil
		}
	}
	reason := deniedReason(addr)
	if reason == "" {
		return nil
	}
	if p.allowPrivate {
		for _, r := range privateMetadata {
			if r.prefix.Contains(addr) {
				return &BlockedError{Addr: addr, Reason: r.reason}
			}
		}
		for _, pfx := range privateRanges {
			if pfx.Contains(addr) {
				return nil
			}
		}
	}
	return &BlockedError{Addr: addr, Reason: reason}
}

// CheckPort returns nil if port may be dialled, or a [*BlockedError] when
// [AllowPorts] restricts the ports and port is not among them.
func (p *Policy) CheckPort(port uint16) error { return p.checkPort(netip.Addr{}, port) }

func (p *Policy) checkPort(addr netip.Addr, port uint16) error {
	if p.ports == nil || p.ports[port] {
		return nil
	}
	return &BlockedError{Addr: addr, Port: port, Reason: fmt.Sprintf("port %d not allowed", port)}
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
// resolution: the address with [Policy.Check], then the port with
// [Policy.CheckPort]. A host that is not an IP address is refused.
func (p *Policy) CheckAddress(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dial address %q: %v", ErrBlocked, address, err)
	}
	if err := p.Check(ap.Addr()); err != nil {
		return err
	}
	return p.checkPort(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// Control checks the address and port about to be connected to; it has the
// signature of [net.Dialer.ControlContext] and refuses, before connect, every
// address and port the policy blocks.
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
