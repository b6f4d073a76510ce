package server

import (
	"context"

	"golang.org/x/sync/semaphore"

	"github.com/fetchd/fetchd/server/internal/hostlimit"
)

// A permit is what one fetch holds while it runs: a slot of the stream's
// own cap for the host (if the stream set one), a slot of the server's cap
// for the host, a slot of the stream's cap and one of the global pool. Each
// field is set once that part is held, so release frees exactly what the
// permit holds.
type permit struct {
	own    *hostlimit.Host     // a slot of the stream's own cap for the host
	host   *hostlimit.Host     // a slot of the server's cap for the host
	stream *semaphore.Weighted // a slot of the stream's fetch cap
	pool   *semaphore.Weighted // a slot of the global pool
}

// acquirePermit waits for a permit to fetch from ln's host. It takes, in
// this order: a slot of the stream's own cap for the host, one of the
// server's, the host's permission (its pause, the server's rate, then the
// stream's), one of the stream's cap, and one of the global pool, where the
// stream waits at most one lane at a time. The caller holds a window token,
// taken before all of these; every path takes them in this order, so none
// can deadlock. On error the permit holds nothing.
func (st *stream) acquirePermit(ctx context.Context, ln *lane) (permit, error) {
	var p permit
	if ln.own != nil {
		if err := ln.own.Acquire(ctx); err != nil {
			return permit{}, err
		}
		p.own = ln.own
	}
	if err := ln.host.Acquire(ctx); err != nil {
		return p.fail(err)
	}
	p.host = ln.host
	if err := ln.host.Wait(ctx); err != nil {
		return p.fail(err)
	}
	if ln.own != nil {
		if err := ln.own.Wait(ctx); err != nil {
			return p.fail(err)
		}
	}
	if err := st.fetchCap.Acquire(ctx, 1); err != nil {
		return p.fail(err)
	}
	p.stream = st.fetchCap
	// One waiter per stream at the global pool: streams take turns.
	select {
	case st.gate <- struct{}{}:
	case <-ctx.Done():
		return p.fail(ctx.Err())
	}
	err := st.s.pool.Acquire(ctx, 1)
	<-st.gate
	if err != nil {
		return p.fail(err)
	}
	p.pool = st.s.pool
	return p, nil
}

// fail releases what p holds and returns an empty permit with err.
func (p permit) fail(err error) (permit, error) {
	p.release()
	return permit{}, err
}

// release frees what p holds, last taken first. A permit is released
// once; a value receiver keeps it a plain value that closures copy.
func (p permit) release() {
	if p.pool != nil {
		p.pool.Release(1)
	}
	if p.stream != nil {
		p.stream.Release(1)
	}
	if p.host != nil {
		p.host.Release()
	}
	if p.own != nil {
		p.own.Release()
	}
}
