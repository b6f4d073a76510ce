package client

import "slices"

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

// Owner returns which of addrs a call with host affinity sends host's jobs
// to when they are its only host (its first choice).
func Owner(addrs []string, host string) string {
	r := newRouter(true)
	for _, a := range addrs {
		r.join(a)
	}
	h := &hostQueue{name: host, hash: hashString(host)}
	r.hosts[host] = h
	return r.owner(h).addr
}
