package connlimit

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

var _ stats.Handler = (*Tracker)(nil)

type connKey struct{}

type rpcKey struct{}

// rpc is one RPC on a tracked connection.
type rpc struct {
	c       *conn
	work    bool
	got     atomic.Bool // a request message has arrived
	counted atomic.Bool // counted as abuse already (reset before it began)
	began   bool        // guarded by c.t.mu
}

// TagConn implements [stats.Handler]: it finds the accepted connection
// by its remote address.
func (t *Tracker) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	if info.RemoteAddr == nil {
		return ctx
	}
	t.mu.Lock()
	c := t.conns[info.RemoteAddr.String()]
	t.mu.Unlock()
	if c == nil {
		return ctx
	}
	return context.WithValue(ctx, connKey{}, c)
}

// HandleConn implements [stats.Handler]; the connection's slot follows
// its Close, not these events.
func (t *Tracker) HandleConn(context.Context, stats.ConnStats) {}

// TagRPC implements [stats.Handler].
func (t *Tracker) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	c, ok := ctx.Value(connKey{}).(*conn)
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, rpcKey{}, &rpc{c: c, work: t.cfg.IsWork(info.FullMethodName)})
}

// HandleRPC implements [stats.Handler]: it counts the work RPCs of each
// connection, and closes a connection whose abusive RPCs (see [abusive])
// go over its bucket.
func (t *Tracker) HandleRPC(ctx context.Context, s stats.RPCStats) {
	r, ok := ctx.Value(rpcKey{}).(*rpc)
	if !ok {
		return
	}
	var abuse bool
	switch s := s.(type) {
	case *stats.Begin:
		// A stream the caller reset before its handler began counts at
		// once: rapid reset puts thousands in the queue.
		early := ctx.Err() != nil
		if early {
			r.counted.Store(true)
		}
		abuse = t.begin(r, early)
	case *stats.InPayload:
		r.got.Store(true)
	case *stats.End:
		abuse = t.end(r, !r.counted.Load() && abusive(s.Error, r.got.Load()))
	}
	if abuse {
		r.c.Close()
		t.cfg.Logger.Warn("connection closed: abusive, too many RPCs reset or refused (HTTP/2 rapid reset?)",
			"peer", r.c.key, "burst", t.cfg.FailBurst, "per_second", t.cfg.FailRate)
	}
}

// abusive reports whether an RPC that ended with err, having received a
// request message or not, counts against its connection: it ended
// without a message (reset by the caller before sending one: rapid reset),
// or was refused for who the caller is or how much it calls. Failures of
// work (a deadline passed, a fetch failed, a caller's cancel after its
// jobs) never count.
func abusive(err error, got bool) bool {
	if !got {
		return true
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted:
		return true
	}
	return false
}

// begin records the beginning of r and, if it counts as abuse, reports
// whether its connection is to be closed.
func (t *Tracker) begin(r *rpc, abuse bool) bool {
	c := r.c
	t.mu.Lock()
	defer t.mu.Unlock()
	r.began, c.began = true, true
	now := t.cfg.Now()
	if r.work {
		c.work++
		c.lastWork = now
	}
	return abuse && t.spend(c, now)
}

// end records the end of r and, if it counts as abuse, reports whether
// its connection is to be closed.
func (t *Tracker) end(r *rpc, abuse bool) bool {
	c := r.c
	t.mu.Lock()
	defer t.mu.Unlock()
	if !r.began {
		return false
	}
	r.began = false
	now := t.cfg.Now()
	if r.work {
		c.work--
		c.lastWork = now
	}
	return abuse && t.spend(c, now)
}

// spend takes a token from the bucket of c's address and reports whether
// it had none left, once: c is then removed, and is for the caller to
// close. t.mu must be held.
func (t *Tracker) spend(c *conn, now time.Time) bool {
	if t.cfg.FailBurst < 0 || c.gone {
		return false
	}
	b := c.bucket
	b.refill(now, t.cfg.FailBurst, t.cfg.FailRate)
	if b.tokens < 1 {
		t.removeLocked(c)
		return true
	}
	b.tokens--
	return false
}
