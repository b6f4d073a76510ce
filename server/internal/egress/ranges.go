package egress

import (
	"net/netip"
	"strings"
)

type deniedRange struct {
	prefix netip.Prefix
	reason string // the range and what it is: "10.0.0.0/8 (private)"
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
	// Every IPv6 address outside global unicast 2000::/3 is refused;
	// outsideV6 names the well-known ranges there, most specific first, so
	// that a refusal of ::1 says loopback. The rest is "outside global
	// unicast 2000::/3".
	globalUnicastV6 = netip.MustParsePrefix("2000::/3")
	outsideV6       = mustRanges(
		"::/128 unspecified",
		"::1/128 loopback",
		"::/96 IPv4-compatible, deprecated",
		"64:ff9b::/96 NAT64",
		"64:ff9b:1::/48 local-use NAT64",
		"100::/64 discard-only",
		"fc00::/7 unique local, private",
		"fe80::/10 link-local",
		"fec0::/10 site-local, deprecated",
		"ff00::/8 multicast",
	)
	// deniedV6 are the special ranges inside 2000::/3.
	deniedV6 = mustRanges(
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

// metadataRanges are the clouds' published metadata and instance-service
// endpoints (credentials live there). They are refused by default, under
// [AllowPrivate] (several sit in CGNAT or fc00::/7), and under any
// [AllowCIDRs] range wider than themselves: only an allowed range inside
// one of them opens it, such as 168.63.129.16/32. Azure's WireServer is a
// public address, refused all the same.
var metadataRanges = mustRanges(
	"169.254.169.254/32 cloud metadata: AWS, GCP, Azure, Oracle, OpenStack, DigitalOcean, Hetzner, Linode",
	"169.254.169.253/32 cloud metadata: AWS DNS resolver",
	"169.254.169.123/32 cloud metadata: AWS time sync",
	"169.254.170.2/32 cloud metadata: AWS ECS task credentials",
	"169.254.170.23/32 cloud metadata: AWS EKS Pod Identity",
	"169.254.0.23/32 cloud metadata: Tencent Cloud",
	"169.254.42.42/32 cloud metadata: Scaleway",
	"168.63.129.16/32 cloud metadata: Azure WireServer",
	"192.0.0.192/32 cloud metadata: Oracle Cloud",
	"100.100.100.200/32 cloud metadata: Alibaba Cloud",
	"fd00:ec2::/32 cloud metadata: AWS IPv6 instance services (IMDS, DNS, time sync, EKS Pod Identity)",
	"fd20:ce::254/128 cloud metadata: GCP IPv6",
	"fd00:c1::a9fe:a9fe/128 cloud metadata: Oracle Cloud IPv6",
	"fd00:a9fe:a9fe::1/128 cloud metadata: Linode IPv6",
	"fd00:42::42/128 cloud metadata: Scaleway IPv6",
	"fd00:100::100:200/128 cloud metadata: Alibaba Cloud IPv6",
	"fe80::a9fe:a9fe/128 cloud metadata: OpenStack IPv6",
)

// mustRanges parses "CIDR what it is" specs into ranges whose reason reads
// "CIDR (what it is)".
func mustRanges(specs ...string) []deniedRange {
	out := make([]deniedRange, 0, len(specs))
	for _, s := range specs {
		cidr, what, _ := strings.Cut(s, " ")
		out = append(out, deniedRange{prefix: netip.MustParsePrefix(cidr), reason: cidr + " (" + what + ")"})
	}
	return out
}

// find returns the first range of rs that contains addr.
func find(rs []deniedRange, addr netip.Addr) (deniedRange, bool) {
	for _, r := range rs {
		if r.prefix.Contains(addr) {
			return r, true
		}
	}
	return deniedRange{}, false
}

// deniedReason returns why the default policy refuses addr, or "" if it
// does not. addr must already be unmapped. Metadata is checked apart.
func deniedReason(addr netip.Addr) string {
	if addr.Is4() {
		r, _ := find(deniedV4, addr)
		return r.reason
	}
	if !globalUnicastV6.Contains(addr) {
		if r, ok := find(outsideV6, addr); ok {
			return r.reason
		}
		return "outside IPv6 global unicast 2000::/3"
	}
	r, _ := find(deniedV6, addr)
	return r.reason
}

// isPrivate reports whether addr is in a range [AllowPrivate] opens.
func isPrivate(addr netip.Addr) bool {
	for _, pfx := range privateRanges {
		if pfx.Contains(addr) {
			return true
		}
	}
	return false
}
