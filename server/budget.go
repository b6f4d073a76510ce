package server

import (
	"context"
	"sync"

	"golang.org/x/sync/semaphore"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// A budget is memory in bytes shared by every caller, of which each caller
// may hold at most its share, so that one caller cannot take it all. It is
// what [Config.BodyMemory] and [Config.JobMemory] are made of.
type budget struct {
	total *semaphore.Weighted // FIFO
	size  int64
	share int64 // the most one caller holds

	mu      sync.Mutex // guards callers
	callers map[string]*callerBudget
}

func newBudget(size, share int64) *budget {
	return &budget{total: semaphore.NewWeighted(size), size: size, share: min(share, size), callers: map[string]*callerBudget{}}
}

// caller returns the share of the caller key, held until done is called;
// each stream of the caller holds it.
func (b *budget) caller(key string) *callerBudget {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.callers[key]
	if c == nil {
		c = &callerBudget{b: b, key: key, own: semaphore.NewWeighted(b.share)}
		b.callers[key] = c
	}
	c.refs++
	return c
}

// callerBudget is one caller's share of a budget. It implements
// [fetcher.Memory]: an Acquire takes from the caller's share, then from the
// budget, each in one step, in that order on every path, so that no cycle
// of waits can form.
type callerBudget struct {
	b    *budget
	key  string
	own  *semaphore.Weighted // the caller's share
	refs int                 // guarded by b.mu: the streams holding it
}

// Acquire takes n bytes, or the whole share if n is more (a single thing
// larger than a share is held alone, and still counted), waiting until
// they are free or ctx ends.
func (c *callerBudget) Acquire(ctx context.Context, n int64) error {
	n = min(n, c.b.share)
	if err := c.own.Acquire(ctx, n); err != nil {
		return err
	}
	if err := c.b.total.Acquire(ctx, n); err != nil {
		c.own.Release(n)
		return err
	}
	return nil
}

// Release gives back n bytes taken by Acquire (with the same n).
func (c *callerBudget) Release(n int64) {
	n = min(n, c.b.share)
	if n <= 0 {
		return
	}
	c.b.total.Release(n)
	c.own.Release(n)
}

// done ends one stream's hold on the share; the last one forgets it. Every
// byte the stream took is given back by then.
func (c *callerBudget) done() {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	c.refs--
	if c.refs == 0 {
		delete(c.b.callers, c.key)
	}
}

// jobCost estimates the memory a job holds while it waits and runs: its
// message decoded (the strings and body copied out of the wire bytes, and
// the structs around them), its fetcher.Job (the URL parsed, the headers as
// an http.Header), and the task, result and lane entry.
func jobCost(req *fetchv1.FetchRequest) int64 {
	n := int64(1 << 10) // task, result, job, URL: measured at about 1 KiB
	n += 2 * int64(len(req.GetUrl())+len(req.GetId()))
	n += int64(len(req.GetBody()))
	for _, h := range req.GetHeaders() {
		// The proto Header and the http.Header entry, each with its
		// strings and its header overhead.
		n += 2*int64(len(h.GetName())+len(h.GetValue())) + 160
	}
	return n
}
