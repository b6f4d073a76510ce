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
// The clouds' metadata and instance-service addresses (169.254.169.254,
// Azure's public 168.63.129.16, Alibaba's 100.100.100.200 in CGNAT, AWS's
// fd00:ec2::/32 and GCP's fd20:ce::254 in fc00::/7, and the others) are
// refused by default, and stay refused under [AllowPrivate] and under any
// [AllowCIDRs] range wider than the address: only an allowed range inside
// one, such as 168.63.129.16/32, opens it.
//
// A refusal is a [*BlockedError] whose Reason names the range and what it
// is ("::1/128 (loopback)"). Its Remedy names what would open it, in the
// words the operator knows (flags, say), given with [Named]; the package
// itself has no names for them.
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
