package callerlimit

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/peer"

	"github.com/fetchd/fetchd/cmd/fetchd/internal/tokenauth"
)

// idleAfter is how long a caller's bucket is kept without use.
const idleAfter = 10 * time.Minute

// Limiter holds a token bucket per caller. It implements the Limiter of
// go-grpc-middleware's ratelimit package.
type Limiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu        sync.Mutex // guards callers and lastSweep
	callers   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// New returns a limiter allowing each caller perSecond calls a second on
// average, and burst at once.
func New(perSecond float64, burst int) *Limiter {
	return &Limiter{limit: rate.Limit(perSecond), burst: max(burst, 1), now: time.Now, callers: map[string]*bucket{}}
}

// Limit returns an error if the caller of ctx is over its rate.
func (l *Limiter) Limit(ctx context.Context) error {
	key := Key(ctx)
	now := l.now()
	l.mu.Lock()
	if now.Sub(l.lastSweep) > idleAfter {
		for k, b := range l.callers {
			if now.Sub(b.used) > idleAfter {
				delete(l.callers, k)
			}
		}
		l.lastSweep = now
	}
	b := l.callers[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.callers[key] = b
	}
	b.used = now
	ok := b.lim.AllowN(now, 1)
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("caller %s is over %g calls/s (burst %d)", key, float64(l.limit), l.burst)
	}
	return nil
}

// Key returns the caller of ctx: its authenticated identity, else its IP
// address, else "unknown".
func Key(ctx context.Context) string {
	if c := tokenauth.Caller(ctx); c != "" {
		return c
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			return "ip:" + host
		}
		return "addr:" + p.Addr.String()
	}
	return "unknown"
}
