// Package egress decides which destinations fetchd may connect to.
//
// A [Policy] denies, by default, every address that is not public unicast:
// loopback, private, link-local (the cloud metadata address among them),
// CGNAT, unspecified, multicast, documentation, benchmarking, 6to4, NAT64 and
// the other special-purpose ranges of the IANA registries, in both families.
// An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
// Operators open ranges explicitly with [AllowCIDRs], open the private ranges
// (and only those) with [AllowPrivate], and refuse more with [DenyCIDRs],
// which beats both. [AllowPorts] restricts the ports.
//
// The address check belongs at dial time, after DNS and before connect:
// install [Policy.Control] as a [net.Dialer]'s ControlContext. Checking the
// resolved address rather than the URL defeats DNS rebinding, alternative
// spellings of an IP address, and redirects to internal hosts, since every
// connection, for every redirect hop, passes through the same dialer.
//
// Host name lists ([AllowHosts], [DenyHosts]) are checked earlier, on the
// URL, with [Policy.CheckHost]: for every request and every redirect hop,
// before any name is resolved. They narrow what the address check allows;
// they never widen it.
package egress
