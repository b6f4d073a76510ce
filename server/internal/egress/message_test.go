package egress_test

import (
	"testing"

	"github.com/fetchd/fetchd/server/internal/egress"
)

// flagNames are names as fetchd gives them.
var flagNames = egress.Named(egress.Names{
	AllowCIDRs: "-allow-cidr", DenyCIDRs: "-deny-cidr", AllowPrivate: "-allow-private",
	AllowPorts: "-allow-port", AllowHosts: "-allow-host", DenyHosts: "-deny-host",
})

// TestBlockedMessage checks the whole text of refusals: the range, what it
// is, and what opens it.
func TestBlockedMessage(t *testing.T) {
	named := egress.NewPolicy(flagNames)
	tests := []struct {
		name   string
		policy *egress.Policy
		check  func(*egress.Policy) error
		want   string
	}{
		{"private", named, checkAddr("10.0.0.1:80"),
			"egress: 10.0.0.1 is blocked by policy: 10.0.0.0/8 (private); -allow-private or -allow-cidr opens it"},
		{"CGNAT", named, checkAddr("100.64.0.1:80"),
			"egress: 100.64.0.1 is blocked by policy: 100.64.0.0/10 (CGNAT shared address space); -allow-private or -allow-cidr opens it"},
		{"loopback", named, checkAddr("127.0.0.1:80"),
			"egress: 127.0.0.1 is blocked by policy: 127.0.0.0/8 (loopback); -allow-cidr opens it"},
		{"IPv6 loopback", named, checkAddr("[::1]:80"),
			"egress: ::1 is blocked by policy: ::1/128 (loopback); -allow-cidr opens it"},
		{"IPv6 unspecified", named, checkAddr("[::]:80"),
			"egress: :: is blocked by policy: ::/128 (unspecified); -allow-cidr opens it"},
		{"IPv4-mapped loopback", named, checkAddr("[::ffff:127.0.0.1]:80"),
			"egress: 127.0.0.1 is blocked by policy: 127.0.0.0/8 (loopback); -allow-cidr opens it"},
		{"IPv6 link-local", named, checkAddr("[fe80::1%eth0]:80"),
			"egress: fe80::1 is blocked by policy: fe80::/10 (link-local); -allow-cidr opens it"},
		{"IPv6 unique local", named, checkAddr("[fd12:3456::1]:80"),
			"egress: fd12:3456::1 is blocked by policy: fc00::/7 (unique local, private); -allow-private or -allow-cidr opens it"},
		{"IPv6 multicast", named, checkAddr("[ff02::1]:80"),
			"egress: ff02::1 is blocked by policy: ff00::/8 (multicast); -allow-cidr opens it"},
		{"IPv6 NAT64", named, checkAddr("[64:ff9b::a00:1]:80"),
			"egress: 64:ff9b::a00:1 is blocked by policy: 64:ff9b::/96 (NAT64); -allow-cidr opens it"},
		{"IPv6 other outside 2000::/3", named, checkAddr("[4000::1]:80"),
			"egress: 4000::1 is blocked by policy: outside IPv6 global unicast 2000::/3; -allow-cidr opens it"},
		{"metadata", named, checkAddr("169.254.169.254:80"),
			"egress: 169.254.169.254 is blocked by policy: 169.254.169.254/32 (cloud metadata: AWS, GCP, Azure, Oracle, OpenStack, DigitalOcean, Hetzner, Linode); only -allow-cidr 169.254.169.254/32 opens it, no wider range"},
		{"Azure WireServer", named, checkAddr("168.63.129.16:80"),
			"egress: 168.63.129.16 is blocked by policy: 168.63.129.16/32 (cloud metadata: Azure WireServer); only -allow-cidr 168.63.129.16/32 opens it, no wider range"},
		{"AWS IPv6 metadata", named, checkAddr("[fd00:ec2::254]:80"),
			"egress: fd00:ec2::254 is blocked by policy: fd00:ec2::/32 (cloud metadata: AWS IPv6 instance services (IMDS, DNS, time sync, EKS Pod Identity)); only -allow-cidr fd00:ec2::254/128 opens it, no wider range"},
		{"operator deny list", egress.NewPolicy(flagNames, egress.DenyCIDRs(mustPrefix(t, "8.8.8.0/24"))), checkAddr("8.8.8.8:53"),
			"egress: 8.8.8.8 is blocked by policy: 8.8.8.0/24 (operator deny list); -deny-cidr refuses it"},
		{"port", egress.NewPolicy(flagNames, egress.AllowPorts(443)), checkAddr("8.8.8.8:80"),
			"egress: 8.8.8.8:80 is blocked by policy: port 80 not allowed; -allow-port opens it"},
		{"host deny list", egress.NewPolicy(flagNames, egress.DenyHosts("evil.example")), checkHost("evil.example"),
			`egress: host "evil.example" is blocked by policy: host deny list evil.example; -deny-host refuses it`},
		{"host allow list", egress.NewPolicy(flagNames, egress.AllowHosts("example.com")), checkHost("other.example"),
			`egress: host "other.example" is blocked by policy: not on the host allow list; -allow-host opens it`},
		{"no names", egress.NewPolicy(), checkAddr("10.0.0.1:80"),
			"egress: 10.0.0.1 is blocked by policy: 10.0.0.0/8 (private)"},
		{"no names, metadata", egress.NewPolicy(), checkAddr("168.63.129.16:80"),
			"egress: 168.63.129.16 is blocked by policy: 168.63.129.16/32 (cloud metadata: Azure WireServer)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check(tt.policy)
			if err == nil || err.Error() != tt.want {
				t.Errorf("refusal = %v,\nwant %s", err, tt.want)
			}
		})
	}
}

func checkAddr(address string) func(*egress.Policy) error {
	return func(p *egress.Policy) error { return p.CheckAddress(address) }
}

func checkHost(host string) func(*egress.Policy) error {
	return func(p *egress.Policy) error { return p.CheckHost(host) }
}
