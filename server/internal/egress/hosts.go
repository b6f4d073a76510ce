package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// hostSet is a compiled list of host patterns.
type hostSet struct {
	names     map[string]string     // exact names, normalized, to the pattern as written
	wildcards map[string]string     // ".example.com" for "*.example.com", to the pattern
	addrs     map[netip.Addr]string // IP literals, unmapped and without zone, to the pattern
}

func (s *hostSet) empty() bool {
	return len(s.names) == 0 && len(s.wildcards) == 0 && len(s.addrs) == 0
}

// add compiles pattern into s.
func (s *hostSet) add(pattern string) error {
	name, addr, wildcard, err := parseHostPattern(pattern)
	if err != nil {
		return err
	}
	switch {
	case addr.IsValid():
		if s.addrs == nil {
			s.addrs = map[netip.Addr]string{}
		}
		s.addrs[addr] = pattern
	case wildcard:
		if s.wildcards == nil {
			s.wildcards = map[string]string{}
		}
		s.wildcards["."+name] = pattern
	default:
		if s.names == nil {
			s.names = map[string]string{}
		}
		s.names[name] = pattern
	}
	return nil
}

// match returns the pattern that matches a host normalized by
// [canonicalHost], and whether one does. An IP literal matches only an IP
// pattern, exactly; a name matches an exact name or a wildcard that is a
// proper suffix of it.
func (s *hostSet) match(name string, addr netip.Addr) (string, bool) {
	if addr.IsValid() {
		p, ok := s.addrs[addr]
		return p, ok
	}
	if p, ok := s.names[name]; ok {
		return p, true
	}
	if len(s.wildcards) == 0 {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			if p, ok := s.wildcards[name[i:]]; ok {
				return p, true
			}
		}
	}
	return "", false
}

// AllowHosts restricts fetching to the hosts matching one of the patterns,
// checked by [Policy.CheckHost] before resolution. A pattern is an exact
// name ("example.com"), a wildcard ("*.example.com": any subdomain, not
// example.com itself), or an IP address, which matches only that address
// written as an IP literal. Matching ignores case and a trailing dot;
// internationalized names match in their ASCII (punycode) form. Calls
// accumulate. The address checks of [Policy.Check] still apply to the hosts
// allowed. AllowHosts panics on an invalid pattern: check operator input
// with [ParseHostPatterns] first. Default: every host.
func AllowHosts(patterns ...string) Option {
	return func(p *Policy) { mustAdd(&p.allowHosts, patterns) }
}

// DenyHosts refuses the hosts matching one of the patterns, written as for
// [AllowHosts]; deny beats allow. Host names only stop names: to refuse an
// address however it is reached, use [DenyCIDRs]. Calls accumulate.
// DenyHosts panics on an invalid pattern: check operator input with
// [ParseHostPatterns] first. Default: none.
func DenyHosts(patterns ...string) Option {
	return func(p *Policy) { mustAdd(&p.denyHosts, patterns) }
}

func mustAdd(s *hostSet, patterns []string) {
	for _, pat := range patterns {
		if err := s.add(pat); err != nil {
			panic("egress: " + err.Error())
		}
	}
}

// CheckHost checks the host of a URL before it is resolved: it returns a
// [*BlockedError] if host matches [DenyHosts], or if [AllowHosts] is set and
// host matches none of its patterns. host is as [net/url.URL.Hostname]
// returns it; brackets around an IPv6 literal are accepted. With neither
// list set, every host passes, at no cost. CheckHost is a check in addition
// to the dial-time [Policy.Control], not instead of it.
func (p *Policy) CheckHost(host string) error {
	if p.allowHosts.empty() && p.denyHosts.empty() {
		return nil
	}
	name, addr, err := canonicalHost(host)
	if err != nil {
		return &BlockedError{Host: host, Reason: err.Error(), byHost: true}
	}
	if pat, ok := p.denyHosts.match(name, addr); ok {
		return &BlockedError{Addr: addr, Host: name, Reason: "host deny list " + pat, Remedy: refuses(p.names.DenyHosts)}
	}
	if !p.allowHosts.empty() {
		if _, ok := p.allowHosts.match(name, addr); !ok {
			return &BlockedError{Addr: addr, Host: name, Reason: "not on the host allow list", Remedy: opens(p.names.AllowHosts)}
		}
	}
	return nil
}

// canonicalHost normalizes host for matching: an IP literal (bracketed or
// not, trailing dot ignored) becomes its address, unmapped and without zone;
// a name is lower-cased, loses its trailing dots and, if it is not ASCII,
// is converted to punycode as net/http does before dialling.
func canonicalHost(host string) (string, netip.Addr, error) {
	h := strings.TrimRight(host, ".")
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	if addr, err := netip.ParseAddr(h); err == nil {
		addr = addr.Unmap().WithZone("")
		return addr.String(), addr, nil
	}
	if h == "" {
		return "", netip.Addr{}, errors.New("empty host name")
	}
	if !isASCII(h) {
		a, err := idna.Lookup.ToASCII(h)
		if err != nil {
			return "", netip.Addr{}, fmt.Errorf("host name %q is not valid IDNA: %v", host, err)
		}
		h = strings.TrimRight(a, ".")
	}
	return strings.ToLower(h), netip.Addr{}, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// parseHostPattern validates and normalizes one pattern of [AllowHosts] or
// [DenyHosts].
func parseHostPattern(pattern string) (name string, addr netip.Addr, wildcard bool, err error) {
	rest, wildcard := strings.CutPrefix(pattern, "*.")
	name, addr, err = canonicalHost(rest)
	switch {
	case err != nil:
		return "", netip.Addr{}, false, fmt.Errorf("host pattern %q: %v", pattern, err)
	case addr.IsValid() && wildcard:
		return "", netip.Addr{}, false, fmt.Errorf("host pattern %q: an IP address matches only exactly, not under a wildcard", pattern)
	case addr.IsValid():
		return name, addr, false, nil
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return "", netip.Addr{}, false, fmt.Errorf("host pattern %q has an empty label", pattern)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", netip.Addr{}, false, fmt.Errorf("host pattern %q: character %q is not allowed "+
					"(a pattern is a name, \"*.\" and a name, or an IP address)", pattern, c)
			}
		}
	}
	return name, netip.Addr{}, wildcard, nil
}

// ParseHostPatterns parses host patterns for [AllowHosts] and [DenyHosts],
// each element holding one or more separated by commas or spaces, and
// returns them normalized: lower case, no trailing dot, punycode, IP
// addresses in canonical form.
func ParseHostPatterns(list ...string) ([]string, error) {
	var out []string
	for _, item := range list {
		for _, f := range strings.FieldsFunc(item, func(r rune) bool { return r == ',' || r == ' ' }) {
			name, addr, wildcard, err := parseHostPattern(f)
			if err != nil {
				return nil, err
			}
			switch {
			case addr.IsValid():
				name = addr.String()
			case wildcard:
				name = "*." + name
			}
			out = append(out, name)
		}
	}
	return out, nil
}
