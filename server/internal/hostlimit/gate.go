package hostlimit

import (
	"container/list"
	"context"
	"sync"
)

// A gate caps the fetches in flight to one host at a limit that may change
// while fetches wait or run: a semaphore like x/sync's semaphore.Weighted,
// of weight 1, whose size is read at each start. Waiters start in arrival
// order. Lowering the limit cancels nothing: fetches in flight above it go
// on, and none starts until fewer than the limit are in flight.
type gate struct {
	limit func() int // the cap now, at least 1

	mu      sync.Mutex // guards held and waiters
	held    int        // fetches in flight
	waiters list.List  // of chan struct{}, closed when its fetch may start
}

// acquire waits until fewer than the limit are in flight and no earlier
// waiter is left, then counts one more in flight. A ctx done already
// fails it, as it fails Weighted.Acquire.
func (g *gate) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.Lock()
	if g.held < g.limit() && g.waiters.Len() == 0 {
		g.held++
		g.mu.Unlock()
		return nil
	}
	ready := make(chan struct{})
	elem := g.waiters.PushBack(ready)
	g.mu.Unlock()

	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		select {
		case <-ready:
			// Started just as ctx ended: give the slot back.
			g.held--
		default:
			g.waiters.Remove(elem)
		}
		g.wake()
		g.mu.Unlock()
		return ctx.Err()
	}
}

// release counts one fetch fewer in flight and starts waiters the limit
// now allows.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held == 0 {
		panic("hostlimit: Release without Acquire")
	}
	g.held--
	g.wake()
}

// limitChanged starts the waiters a raised limit allows.
func (g *gate) limitChanged() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.wake()
}

// wake starts the first waiters while the limit allows. g.mu must be held.
func (g *gate) wake() {
	for lim := g.limit(); g.held < lim; {
		front := g.waiters.Front()
		if front == nil {
			return
		}
		g.waiters.Remove(front)
		g.held++
		close(front.Value.(chan struct{}))
	}
}
