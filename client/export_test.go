package client

import (
	"context"
	"slices"
)

// SetResolver makes c, a client of a dns:/// target, take the addresses of
// each call's backends from resolve instead of a DNS lookup.
func SetResolver(c *Client, resolve func(ctx context.Context) ([]string, error)) {
	c.resolve = resolve
}

// OpenConns returns the addresses of the connections c holds open, sorted:
// those of the last resolution and those dropped from it that a call still
// uses.
func OpenConns(c *Client) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for a := range c.conns {
		out = append(out, a)
	}
	for pc := range c.retired {
		out = append(out, pc.addr)
	}
	slices.Sort(out)
	return out
}
