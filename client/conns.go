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
	pc   *pooledConn
	cc   *grpc.ClientConn
	svc  fetchv1.FetchServiceClient
}

// addrs returns the addresses of the backends for a new call: the static
// ones, or the latest resolution of the target (waiting, on the first
// call, up to the connect timeout for it), with a channel closed when the
// resolution next changes.
func (c *Client) addrs(ctx context.Context) ([]string, <-chan struct{}, error) {
	if c.engine != nil {
		return []string{embeddedAddr}, nil, nil
	}
	if c.members == nil {
		return c.static, nil, nil
	}
	return c.members.current(ctx, c.opts.connectTimeout)
}

// acquire returns the backend at addr for a call, connecting on first use;
// the call must release it.
func (c *Client) acquire(addr string) (backend, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.engine != nil {
		if c.closed {
			return backend{}, ErrClosed
		}
		return backend{addr: embeddedAddr, svc: c.engine}, nil
	}
	pc, err := c.connLocked(addr)
	if err != nil {
		return backend{}, err
	}
	pc.calls++
	return backend{addr: addr, pc: pc, cc: pc.cc, svc: fetchv1.NewFetchServiceClient(pc.cc)}, nil
}

// release ends a call's use of b, closing its connection if a resolution
// dropped it and this was its last call.
func (c *Client) release(b backend) {
	if b.pc == nil {
		return // the embedded engine
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releaseLocked(b.pc)
}

// resolved takes a new resolution of the target: the connections to
// addresses no longer in it are closed, at once if no call uses them,
// else by their last call's release.
func (c *Client) resolved(addrs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.dropLocked(addrs)
	}
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
