package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
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
	Reason string     // why, such as "127.0.0.0/8 (loopback)" or "port 22 not allowed"
	// Remedy says what would let the destination through, in the words of
	// the policy's [Names]: "-allow-private or -allow-cidr opens it". It is
	// "" when the policy has no names, or nothing opens it.
	Remedy string

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
	msg := fmt.Sprintf("egress: %s is blocked by policy: %s", dest, e.Reason)
	if e.Remedy != "" {
		msg += "; " + e.Remedy
	}
	return msg
}

// Is reports whether target is [ErrBlocked].
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// Names are what the operator of a policy calls its settings, such as the
// flags of a command; a [BlockedError] names those that would open what it
// refused, in its Remedy. The package has no names of its own: an empty
// name is left out, and with none the Remedy is empty.
type Names struct {
	AllowCIDRs   string // the setting behind [AllowCIDRs], such as "-allow-cidr"
	DenyCIDRs    string // [DenyCIDRs]
	AllowPrivate string // [AllowPrivate]
	AllowPorts   string // [AllowPorts]
	AllowHosts   string // [AllowHosts]
	DenyHosts    string // [DenyHosts]
}

// Named sets the names a [BlockedError] uses for the policy's settings.
// Default: none.
func Named(n Names) Option {
	return func(p *Policy) { p.names = n }
}

// opens returns "A or B opens it" for the non-empty names, or "".
func opens(names ...string) string {
	var set []string
	for _, n := range names {
		if n != "" {
			set = append(set, n)
		}
	}
	if len(set) == 0 {
		return ""
	}
	return strings.Join(set, " or ") + " opens it"
}

// addressRemedy says what opens addr, refused by the default deny list.
func (n Names) addressRemedy(addr netip.Addr, metadata bool) string {
	switch {
	case metadata && n.AllowCIDRs != "":
		// Only the address itself (or a range inside its metadata
		// entry) opens it; say so with the exact value to give.
		return fmt.Sprintf("only %s %s opens it, no wider range", n.AllowCIDRs, netip.PrefixFrom(addr, addr.BitLen()))
	case metadata:
		return ""
	case isPrivate(addr):
		return opens(n.AllowPrivate, n.AllowCIDRs)
	}
	return opens(n.AllowCIDRs)
}

// refuses returns "NAME refuses it", for a refusal the operator asked for,
// or "" without a name.
func refuses(name string) string {
	if name == "" {
		return ""
	}
	return name + " refuses it"
}
