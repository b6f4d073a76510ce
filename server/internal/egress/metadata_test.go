package egress_test

import (
	"net/netip"
	"testing"

	"github.com/fetchd/fetchd/server/internal/egress"
)

// metadataAddrs are the clouds' published metadata and instance-service
// addresses, written out here independently of the package's table.
var metadataAddrs = []struct {
	name string
	addr string
}{
	{"AWS IMDS, GCP, Azure IMDS, Oracle, OpenStack, DigitalOcean, Hetzner", "169.254.169.254"},
	{"AWS DNS resolver", "169.254.169.253"},
	{"AWS time sync", "169.254.169.123"},
	{"AWS ECS task metadata", "169.254.170.2"},
	{"AWS EKS Pod Identity", "169.254.170.23"},
	{"Tencent Cloud metadata", "169.254.0.23"},
	{"Scaleway metadata", "169.254.42.42"},
	{"Azure WireServer (public)", "168.63.129.16"},
	{"Oracle Cloud classic metadata", "192.0.0.192"},
	{"Alibaba Cloud metadata (CGNAT)", "100.100.100.200"},
	{"AWS IMDS IPv6", "fd00:ec2::254"},
	{"AWS DNS IPv6", "fd00:ec2::253"},
	{"AWS time sync IPv6", "fd00:ec2::123"},
	{"AWS EKS Pod Identity IPv6", "fd00:ec2::23"},
	{"GCP metadata IPv6", "fd20:ce::254"},
	{"Oracle Cloud metadata IPv6", "fd00:c1::a9fe:a9fe"},
	{"Akamai/Linode metadata IPv6", "fd00:a9fe:a9fe::1"},
	{"Scaleway metadata IPv6", "fd00:42::42"},
	{"Alibaba Cloud metadata IPv6", "fd00:100::100:200"},
	{"OpenStack metadata IPv6", "fe80::a9fe:a9fe"},
}

// TestMetadataDenied checks that every metadata address is refused as cloud
// metadata by default, under AllowPrivate, and under any allowed range wider
// than the address itself (a private range, its whole family): only an
// AllowCIDRs entry naming the address itself opens it, and DenyCIDRs still
// beats that.
func TestMetadataDenied(t *testing.T) {
	for _, tt := range metadataAddrs {
		t.Run(tt.addr, func(t *testing.T) {
			a := mustAddr(t, tt.addr)
			single := netip.PrefixFrom(a, a.BitLen())
			family := "0.0.0.0/0"
			if a.Is6() {
				family = "::/0"
			}
			// The enclosing /16: a range an operator might open for an
			// internal network.
			enclosing, _ := a.Prefix(16)
			shut := []struct {
				name   string
				policy *egress.Policy
			}{
				{"default", egress.NewPolicy()},
				{"zero Policy", &egress.Policy{}},
				{"AllowPrivate", egress.NewPolicy(egress.AllowPrivate(true))},
				{"AllowCIDRs " + family, egress.NewPolicy(egress.AllowCIDRs(mustPrefix(t, family)))},
				{"AllowCIDRs " + enclosing.String(), egress.NewPolicy(egress.AllowCIDRs(enclosing), egress.AllowPrivate(true))},
				{"AllowCIDRs ::ffff:0.0.0.0/96", egress.NewPolicy(egress.AllowCIDRs(mustPrefix(t, "::ffff:0.0.0.0/96")))},
				{"AllowCIDRs itself, DenyCIDRs itself", egress.NewPolicy(egress.AllowCIDRs(single), egress.DenyCIDRs(single))},
			}
			for _, p := range shut {
				t.Run(p.name, func(t *testing.T) {
					reason := "cloud metadata"
					if p.name == "AllowCIDRs itself, DenyCIDRs itself" {
						reason = "operator deny list"
					}
					checkBlocked(t, p.policy, a, true, reason)
					if a.Is4() {
						checkBlocked(t, p.policy, netip.AddrFrom16(a.As16()), true, reason)
					}
				})
			}
			t.Run("AllowCIDRs itself", func(t *testing.T) {
				checkBlocked(t, egress.NewPolicy(egress.AllowCIDRs(single)), a, false, "")
				if a.Is4() {
					mapped := netip.AddrFrom16(a.As16())
					checkBlocked(t, egress.NewPolicy(egress.AllowCIDRs(single)), mapped, false, "")
					checkBlocked(t, egress.NewPolicy(egress.AllowCIDRs(netip.PrefixFrom(mapped, 128))), a, false, "")
				}
			})
		})
	}
}

// TestMetadataNeighbours checks that the addresses next to the metadata
// addresses keep the verdict of their range: public stays open, private
// opens with AllowPrivate, and an AllowCIDRs entry for one metadata address
// opens no other.
func TestMetadataNeighbours(t *testing.T) {
	tests := []struct {
		addr          string
		blocked       bool // by default
		privateOpens  bool // whether AllowPrivate opens it
		defaultReason string
	}{
		{"168.63.129.15", false, false, ""},
		{"168.63.129.17", false, false, ""},
		{"100.100.100.199", true, true, "100.64.0.0/10"},
		{"100.100.100.201", true, true, "100.64.0.0/10"},
		{"fd00:ec3::", true, true, "fc00::/7"},
		{"fd00:ec1:ffff:ffff:ffff:ffff:ffff:ffff", true, true, "fc00::/7"},
		{"fd20:ce::253", true, true, "fc00::/7"},
		{"fd00:c1::a9fe:a9ff", true, true, "fc00::/7"},
		{"169.254.169.252", true, false, "169.254.0.0/16"},
		{"192.0.0.193", true, false, "192.0.0.0/24"},
		{"fe80::a9fe:a9ff", true, false, "fe80::/10"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			a := mustAddr(t, tt.addr)
			checkBlocked(t, egress.NewPolicy(), a, tt.blocked, tt.defaultReason)
			checkBlocked(t, egress.NewPolicy(egress.AllowPrivate(true)), a, tt.blocked && !tt.privateOpens, "")
		})
	}
	p := egress.NewPolicy(egress.AllowCIDRs(mustPrefix(t, "169.254.169.254/32")))
	checkBlocked(t, p, mustAddr(t, "169.254.169.254"), false, "")
	checkBlocked(t, p, mustAddr(t, "169.254.170.2"), true, "cloud metadata")
}
