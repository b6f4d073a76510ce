package server

import (
	"context"
)

// acquireFetch takes, in this order, everything one fetch holds: a slot of
// the stream's per-host cap, one of the host's cap, the host's permission
// (pause and rate), one of the stream's concurrency, and one of the global
// pool. The caller holds a window token, taken before all of these; every
// path takes them in this order, so none can deadlock. On error nothing is
// held.
func (st *stream) acquireFetch(ctx context.Context, ln *lane) error {
	if ln.own != nil {
		if err := ln.own.Acquire(ctx); err != nil {
			return err
		}
	}
	held := 1
	fail := func(err error) error {
		st.releaseN(ln, held)
		return err
	}
	if err := ln.host.Acquire(ctx); err != nil {
		return fail(err)
	}
	held = 2
	if err := ln.host.Wait(ctx); err != nil {
		return fail(err)
	}
	if ln.own != nil {
		if err := ln.own.Wait(ctx); err != nil {
			return fail(err)
		}
	}
	if err := st.fetchCap.Acquire(ctx, 1); err != nil {
		return fail(err)
	}
	held = 3
	// One waiter per stream at the global pool: streams take turns.
	select {
	case st.gate <- struct{}{}:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	err := st.s.pool.Acquire(ctx, 1)
	<-st.gate
	if err != nil {
		return fail(err)
	}
	return nil
}

// releaseFetch frees what acquireFetch took.
func (st *stream) releaseFetch(ln *lane) { st.releaseN(ln, 4) }

// releaseN frees the first n of: the lane slot, the host slot, the stream
// slot, the pool slot.
func (st *stream) releaseN(ln *lane, n int) {
	if n >= 4 {
		st.s.pool.Release(1)
	}
	if n >= 3 {
		st.fetchCap.Release(1)
	}
	if n >= 2 {
		ln.host.Release()
	}
	if ln.own != nil {
		ln.own.Release()
	}
}
