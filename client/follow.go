package client

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// addBackends adds the backends at addrs to the call, then starts serving
// them on wg: all are counted live before any can be given up.
func (cl *call) addBackends(ctx context.Context, wg *sync.WaitGroup, addrs ...string) error {
	type added struct {
		b backend
		m *member
	}
	var as []added
	for _, addr := range addrs {
		b, err := cl.c.acquire(addr)
		if err != nil {
			for _, a := range as {
				cl.c.release(a.b)
			}
			return err
		}
		as = append(as, added{b, cl.router.join(addr)})
	}
	cl.mu.Lock()
	for _, a := range as {
		cl.backends[a.b.addr] = a.m
		cl.live++
	}
	cl.mu.Unlock()
	for _, a := range as {
		wg.Go(func() {
			defer cl.c.release(a.b) // once its jobs are answered
			cl.serveBackend(ctx, a.b, a.m)
		})
	}
	return nil
}

// follow keeps the call's backends those of the target's resolution: it
// asks the resolver to look again every resolve interval, adds the
// backends that appear, and takes out those that leave (they take no new
// job, their hosts move, and their stream ends once its jobs are
// answered).
func (cl *call) follow(ctx context.Context, wg *sync.WaitGroup, changed <-chan struct{}) {
	t := time.NewTicker(cl.opts.resolveInterval)
	defer t.Stop()
	for {
		select {
		case <-changed:
			var addrs []string
			addrs, changed = cl.members.watch()
			cl.apply(ctx, wg, addrs)
		case <-t.C:
			cl.members.resolveNow()
		case <-ctx.Done():
			return
		}
	}
}

// apply makes addrs the call's backends: new ones first, so that the call
// is never left without one.
func (cl *call) apply(ctx context.Context, wg *sync.WaitGroup, addrs []string) {
	keep := make(map[string]bool, len(addrs))
	var fresh []string
	cl.mu.Lock()
	for _, a := range addrs {
		keep[a] = true
		if _, had := cl.backends[a]; !had {
			fresh = append(fresh, a)
		}
	}
	cl.mu.Unlock()
	if cl.addBackends(ctx, wg, fresh...) != nil {
		return // the client is closed
	}
	cl.mu.Lock()
	var gone []*member
	for a, m := range cl.backends {
		if !keep[a] {
			gone = append(gone, m)
			delete(cl.backends, a)
		}
	}
	cl.mu.Unlock()
	for _, m := range gone {
		cl.drop(m, giveUp{addr: m.addr, reached: true,
			err: fmt.Errorf("%w: %s left the resolution of %s", ErrUnavailable, m.addr, cl.members.target)})
	}
}

// drop gives m up, once, for the reason in g: it takes no more jobs and
// its hosts move. The call fails when no backend is left.
func (cl *call) drop(m *member, g giveUp) {
	cl.mu.Lock()
	dropped := m.dropped
	m.dropped = true
	cl.mu.Unlock()
	if dropped {
		return
	}
	cl.router.remove(m)
	cl.giveUp(g)
}
