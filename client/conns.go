package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// pooledConn is the client's connection to one backend address, shared by
// the calls that use it. Its fields are guarded by Client.mu.
type pooledConn struct {
	addr  string
	cc    *grpc.ClientConn
	calls int // calls using it
}

// backend is one fetchd replica.
type backend struct {
	addr string
	cc   *grpc.ClientConn
	svc  fetchv1.FetchServiceClient
}

// backends returns the backends for a new call, resolving a dns:/// target
// anew, and a release func the call must call once it no longer uses
// them. A connection to an address the resolution no longer returns is
// closed: at once if no call uses it, else by the release of its last
// call.
func (c *Client) backends(ctx context.Context) ([]backend, func(), error) {
	if c.engine != nil {
		return c.embeddedBackends()
	}
	addrs := c.static
	if c.resolve != nil {
		var err error
		if addrs, err = c.resolve(ctx); err != nil {
			return nil, nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, ErrClosed
	}
	if c.resolve != nil {
		c.dropLocked(addrs)
	}
	used := make([]*pooledConn, 0, len(addrs))
	release := func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, pc := range used {
			c.releaseLocked(pc)
		}
	}
	bs := make([]backend, 0, len(addrs))
	for _, a := range addrs {
		pc, err := c.connLocked(a)
		if err != nil {
			for _, pc := range used {
				c.releaseLocked(pc)
			}
			return nil, nil, err
		}
		pc.calls++
		used = append(used, pc)
		bs = append(bs, backend{addr: a, cc: pc.cc, svc: fetchv1.NewFetchServiceClient(pc.cc)})
	}
	return bs, release, nil
}

// connLocked returns the connection to addr, creating it on first use.
// c.mu must be held.
func (c *Client) connLocked(addr string) (*pooledConn, error) {
	if c.closed {
		return nil, ErrClosed
	}
	if pc, ok := c.conns[addr]; ok {
		return pc, nil
	}
	cc, err := grpc.NewClient(addr, c.dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", addr, err)
	}
	pc := &pooledConn{addr: addr, cc: cc}
	c.conns[addr] = pc
	return pc, nil
}

// dropLocked retires the connections to addresses not in addrs, the
// latest resolution. c.mu must be held.
func (c *Client) dropLocked(addrs []string) {
	keep := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		keep[a] = true
	}
	for a, pc := range c.conns {
		if keep[a] {
			continue
		}
		delete(c.conns, a)
		if pc.calls == 0 {
			pc.cc.Close()
			continue
		}
		c.retired[pc] = true
	}
}

// releaseLocked ends a call's use of pc, closing it if a resolution
// retired it and this was its last call. c.mu must be held.
func (c *Client) releaseLocked(pc *pooledConn) {
	pc.calls--
	if pc.calls == 0 && c.retired[pc] {
		delete(c.retired, pc)
		pc.cc.Close()
	}
}
