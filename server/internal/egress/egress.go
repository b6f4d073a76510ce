package egress

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
)

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
	names        Names // for the Remedy of a BlockedError
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
// IPv4 range also opens the IPv4-mapped IPv6 forms of its addresses. A
// cloud metadata address opens only to a range inside its own entry (the
// address itself, say 168.63.129.16/32), never to a wider one such as
// 169.254.0.0/16 or 0.0.0.0/0. Calls accumulate. Default: none.
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
// unique local). Loopback, link-local, multicast, NAT64, 6to4 and the other
// special-purpose ranges stay refused, and so do the cloud metadata
// addresses inside the private ranges (Alibaba Cloud's 100.100.100.200,
// AWS's fd00:ec2::/32, GCP's fd20:ce::254 and the others);
// [DenyCIDRs] still applies. Default: off.
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
// operator's deny list ([DenyCIDRs]) is checked first, then the cloud
// metadata addresses, which only an allowed range inside them opens, then
// the allow list ([AllowCIDRs]), then the built-in deny list, which
// [AllowPrivate] relaxes for the private ranges.
func (p *Policy) Check(addr netip.Addr) error {
	if !addr.IsValid() {
		return &BlockedError{Addr: addr, Reason: "invalid address"}
	}
	addr = addr.Unmap().WithZone("")
	for _, pfx := range p.deny {
		if pfx.Contains(addr) {
			return &BlockedError{Addr: addr, Reason: pfx.String() + " (operator deny list)", Remedy: refuses(p.names.DenyCIDRs)}
		}
	}
	if m, ok := find(metadataRanges, addr); ok {
		for _, pfx := range p.allow {
			if pfx.Contains(addr) && pfx.Bits() >= m.prefix.Bits() {
				return nil
			}
		}
		return &BlockedError{Addr: addr, Reason: m.reason, Remedy: p.names.addressRemedy(addr, true)}
	}
	for _, pfx := range p.allow {
		if pfx.Contains(addr) {
			return nil
		}
	}
	reason := deniedReason(addr)
	if reason == "" || (p.allowPrivate && isPrivate(addr)) {
		return nil
	}
	return &BlockedError{Addr: addr, Reason: reason, Remedy: p.names.addressRemedy(addr, false)}
}

// CheckPort returns nil if port may be dialled, or a [*BlockedError] when
// [AllowPorts] restricts the ports and port is not among them.
func (p *Policy) CheckPort(port uint16) error { return p.checkPort(netip.Addr{}, port) }

func (p *Policy) checkPort(addr netip.Addr, port uint16) error {
	if p.ports == nil || p.ports[port] {
		return nil
	}
	return &BlockedError{Addr: addr, Port: port, Reason: fmt.Sprintf("port %d not allowed", port), Remedy: opens(p.names.AllowPorts)}
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
