package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/fetchd/fetchd/server"
)

// The flag values that bind fetchd's flags onto [server.Config] fields
// whose flag spells a value another way than the field: a list, an "off"
// that the flag spells 0 and the field negative, or a bool the other way
// round.

// cidrList is a repeatable flag of CIDR ranges, also comma-separated.
type cidrList struct{ prefixes *[]netip.Prefix }

func (c cidrList) String() string {
	if c.prefixes == nil {
		return ""
	}
	parts := make([]string, len(*c.prefixes))
	for i, p := range *c.prefixes {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

func (c cidrList) Set(s string) error {
	ps, err := server.ParseCIDRs(s)
	if err != nil {
		return err
	}
	*c.prefixes = append(*c.prefixes, ps...)
	return nil
}

// hostList is a repeatable flag of host name patterns, also
// comma-separated.
type hostList struct{ patterns *[]string }

func (h hostList) String() string {
	if h.patterns == nil {
		return ""
	}
	return strings.Join(*h.patterns, ",")
}

func (h hostList) Set(s string) error {
	ps, err := server.ParseHostPatterns(s)
	if err != nil {
		return err
	}
	*h.patterns = append(*h.patterns, ps...)
	return nil
}

// portList is a repeatable flag of ports, also comma-separated.
type portList struct{ ports *[]uint16 }

func (p portList) String() string {
	if p.ports == nil {
		return ""
	}
	parts := make([]string, len(*p.ports))
	for i, port := range *p.ports {
		parts[i] = strconv.Itoa(int(port))
	}
	return strings.Join(parts, ",")
}

func (p portList) Set(s string) error {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("bad port %q", f)
		}
		*p.ports = append(*p.ports, uint16(n))
	}
	return nil
}

// errParse is what a flag value says of a value it cannot parse, as the
// flag package's own values do.
var errParse = errors.New("parse error")

// offValue is an int or duration flag whose 0 turns its setting off: it
// stores 0 as the field's off, -1. It keeps the value given, for the check
// of a negative one.
type offValue[T int | time.Duration] struct {
	p     *T
	given T
}

// offInt and offDuration are the off flags fetchd has.
type (
	offInt      = offValue[int]
	offDuration = offValue[time.Duration]
)

// bind makes v set p, and sets p to def, the flag's default.
func (v *offValue[T]) bind(p *T, def T) *offValue[T] {
	v.p, v.given, *p = p, def, def
	return v
}

// typeName names the flag's type in -h as the flag package names its own.
func (v *offValue[T]) typeName() string {
	if _, ok := any(v.given).(time.Duration); ok {
		return "duration"
	}
	return "int"
}

func (v *offValue[T]) String() string {
	var shown T // 0 when off
	if v.p != nil && *v.p >= 0 {
		shown = *v.p
	}
	if d, ok := any(shown).(time.Duration); ok {
		return d.String()
	}
	return strconv.Itoa(int(shown))
}

func (v *offValue[T]) Set(s string) error {
	var (
		n   T
		err error
	)
	switch p := any(&n).(type) {
	case *time.Duration:
		*p, err = time.ParseDuration(s)
	case *int:
		var i int64
		i, err = strconv.ParseInt(s, 0, strconv.IntSize)
		*p = int(i)
	}
	if err != nil {
		return errParse // as the flag package's own values say it
	}
	v.given = n
	*v.p = offIfZero(n)
	return nil
}

// offIfZero maps a flag's 0 to a [server.Config] field's off.
func offIfZero[T int | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// notBool is a bool flag that sets a field to its negation: -dedup sets
// [server.Config.DisableDedup].
type notBool struct{ p *bool }

func (v notBool) IsBoolFlag() bool { return true }

func (v notBool) String() string {
	if v.p == nil {
		return "true"
	}
	return strconv.FormatBool(!*v.p)
}

func (v notBool) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errParse
	}
	*v.p = !b
	return nil
}
