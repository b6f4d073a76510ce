package hostlimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/fetchd/fetchd/internal/retry"
)

// Registry holds the state of the hosts in use. The zero value is not
// usable; call [NewRegistry].
type Registry struct {
	perHost int        // fetches in flight per host; 0: no cap
	rate    rate.Limit // requests per second per host; 0: no limit
	burst   int

	mu    sync.Mutex // guards hosts, kept and Host.refs
	hosts map[string]*Host
	kept  int // hosts kept with state since the last sweep
}

// NewRegistry returns a registry capping each host at perHost fetches in
// flight (0: no cap) and perSecond requests a second (0: no limit).
func NewRegistry(perHost int, perSecond float64) *Registry {
	return &Registry{
		perHost: max(perHost, 0),
		rate:    rate.Limit(perSecond),
		burst:   max(1, int(perSecond)),
		hosts:   map[string]*Host{},
	}
}

// Host is the shared state of one host.
type Host struct {
	name     string
	fetchCap *semaphore.Weighted // caps fetches in flight to the host; nil: no cap
	limiter  *rate.Limiter       // nil: no rate limit
	refs     int                 // holders, guarded by Registry.mu

	mu          sync.Mutex // guards pausedUntil
	pausedUntil time.Time
}

// Get returns the host called name; call [Registry.Put] when done with it.
func (r *Registry) Get(name string) *Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hosts[name]
	if h == nil {
		h = &Host{name: name}
		if r.perHost > 0 {
			h.fetchCap = semaphore.NewWeighted(int64(r.perHost))
		}
		if r.rate > 0 {
			h.limiter = rate.NewLimiter(r.rate, r.burst)
		}
		r.hosts[name] = h
	}
	h.refs++
	return h
}

// Put releases a host from [Registry.Get]. The last holder's Put forgets
// it unless it still has state worth keeping: a pause ahead, or a rate
// bucket not yet refilled. Such hosts are swept once that state is gone.
func (r *Registry) Put(h *Host) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h.refs--
	if h.refs > 0 {
		return
	}
	now := time.Now()
	if h.idle(now) {
		delete(r.hosts, h.name)
		return
	}
	r.kept++
	if r.kept >= sweepEvery {
		r.kept = 0
		for name, k := range r.hosts {
			if k.refs == 0 && k.idle(now) {
				delete(r.hosts, name)
			}
		}
	}
}

// sweepEvery is how many hosts kept with state trigger a sweep of those
// whose state is gone.
const sweepEvery = 1024

// idle reports whether forgetting h loses nothing: no pause ahead and a
// full rate bucket.
func (h *Host) idle(now time.Time) bool {
	h.mu.Lock()
	paused := h.pausedUntil.After(now)
	h.mu.Unlock()
	return !paused && (h.limiter == nil || h.limiter.TokensAt(now) >= float64(h.limiter.Burst()))
}

// Len returns the number of hosts in use or keeping state.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.hosts)
}

// Name returns the host's name.
func (h *Host) Name() string { return h.name }

// Acquire waits for a fetch slot of the host.
func (h *Host) Acquire(ctx context.Context) error {
	if h.fetchCap == nil {
		return ctx.Err()
	}
	return h.fetchCap.Acquire(ctx, 1)
}

// Release frees a slot taken by Acquire.
func (h *Host) Release() {
	if h.fetchCap != nil {
		h.fetchCap.Release(1)
	}
}

// Wait waits until the host may be sent a request: its pause is over and,
// with a rate, a token is available.
func (h *Host) Wait(ctx context.Context) error {
	for {
		h.mu.Lock()
		d := time.Until(h.pausedUntil)
		h.mu.Unlock()
		if d <= 0 {
			break
		}
		if !retry.Sleep(ctx, d) {
			return ctx.Err()
		}
	}
	if h.limiter == nil {
		return ctx.Err()
	}
	return h.limiter.Wait(ctx)
}

// Pause holds back every request to the host until t (it only extends a
// pause already set).
func (h *Host) Pause(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t.After(h.pausedUntil) {
		h.pausedUntil = t
	}
}
