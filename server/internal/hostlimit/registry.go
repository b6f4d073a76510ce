package hostlimit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/fetchd/fetchd/internal/retry"
)

// Registry holds the state of the hosts in use. The zero value is not
// usable; call [NewRegistry].
type Registry struct {
	perHost int     // fetches in flight per host before the share; 0: no cap
	rate    float64 // requests per second per host before the share; 0: no limit

	// share divides perHost and rate ([Registry.SetShare]); at least 1.
	// Written with mu held, read without it.
	share atomic.Int64

	mu    sync.Mutex // guards hosts, kept, share's writes and Host.refs
	hosts map[string]*Host
	kept  int // hosts kept with state since the last sweep
}

// NewRegistry returns a registry capping each host at perHost fetches in
// flight (0: no cap) and perSecond requests a second (0: no limit).
func NewRegistry(perHost int, perSecond float64) *Registry {
	r := &Registry{
		perHost: max(perHost, 0),
		rate:    perSecond,
		hosts:   map[string]*Host{},
	}
	r.share.Store(1)
	return r
}

// SetShare makes the registry this replica's share of n: each host's cap
// becomes max(1, perHost/n) fetches in flight (integer division) and its
// rate perSecond/n, for hosts in use and new ones alike. n below 1 counts
// as 1, the whole limits. The next fetch to start sees the new limits:
// fetches in flight above a lowered cap go on, and waiters that a raised
// cap allows start at once.
func (r *Registry) SetShare(n int) {
	n = max(n, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if int64(n) == r.share.Load() {
		return
	}
	r.share.Store(int64(n))
	limit, burst := r.hostRate()
	for _, h := range r.hosts {
		if h.limiter != nil {
			h.limiter.SetLimit(limit)
			h.limiter.SetBurst(burst)
		}
		if h.fetchCap != nil {
			h.fetchCap.limitChanged()
		}
	}
}

// Share returns the share set by [Registry.SetShare]; 1 by default.
func (r *Registry) Share() int { return int(r.share.Load()) }

// Cap returns the fetches in flight allowed per host now, with the share
// applied; 0 means no cap.
func (r *Registry) Cap() int {
	if r.perHost <= 0 {
		return 0
	}
	return r.hostCap()
}

// hostCap returns the fetches in flight allowed per host now, perHost > 0.
func (r *Registry) hostCap() int {
	return max(1, r.perHost/int(r.share.Load()))
}

// hostRate returns the rate and burst of a host's bucket now, rate > 0.
func (r *Registry) hostRate() (rate.Limit, int) {
	perSecond := r.rate / float64(r.share.Load())
	return rate.Limit(perSecond), max(1, int(perSecond))
}

// Host is the shared state of one host.
type Host struct {
	name     string
	fetchCap *gate         // caps fetches in flight to the host; nil: no cap
	limiter  *rate.Limiter // nil: no rate limit
	refs     int           // holders, guarded by Registry.mu

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
			h.fetchCap = &gate{limit: r.hostCap}
		}
		if r.rate > 0 {
			h.limiter = rate.NewLimiter(r.hostRate())
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
	return h.fetchCap.acquire(ctx)
}

// Release frees a slot taken by Acquire.
func (h *Host) Release() {
	if h.fetchCap != nil {
		h.fetchCap.release()
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
