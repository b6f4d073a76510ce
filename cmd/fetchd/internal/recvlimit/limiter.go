package recvlimit

import (
	"log/slog"
	"net"
	"sync"
)

// DefaultBudget is the default of [Config.Budget]: 64 MiB.
const DefaultBudget = 64 << 20

// DefaultMaxStreams is the default of [Config.MaxStreams].
const DefaultMaxStreams = 1000

// Config configures a [Limiter]. Its zero value works.
type Config struct {
	// Budget is the most bytes of unfinished request messages held across
	// all connections (0: DefaultBudget).
	Budget int64

	// MaxStreams is the most streams of one connection with a message
	// unfinished at once; a connection with more is closed. gRPC refuses
	// streams beyond its MaxConcurrentStreams, so keep this above it
	// (0: DefaultMaxStreams).
	MaxStreams int

	// Logger gets one WARN line per connection closed (nil: slog.Default).
	Logger *slog.Logger
}

// Limiter holds the server-wide sum of unfinished request bytes and closes
// the connection that holds the most when the sum goes over the budget.
//
// Of the two choices (the connection whose bytes pushed the sum over, or the
// one holding the most), it closes the one holding the most: that one frees
// the most, it is the likeliest attacker, and a small caller that happens to
// send a message while attackers fill the budget is left alone. A connection
// whose whole holding fits in the budget with room for others is never
// closed while a larger one exists.
type Limiter struct {
	budget     int64
	maxStreams int
	logger     *slog.Logger

	mu    sync.Mutex         // guards total, conns, and each conn's held and closed
	total int64              // sum of the conns' held
	conns map[*conn]struct{} // the connections open and tracked
}

// New returns a Limiter configured by cfg.
func New(cfg Config) *Limiter {
	l := &Limiter{budget: cfg.Budget, maxStreams: cfg.MaxStreams, logger: cfg.Logger, conns: map[*conn]struct{}{}}
	if l.budget <= 0 {
		l.budget = DefaultBudget
	}
	if l.maxStreams <= 0 {
		l.maxStreams = DefaultMaxStreams
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	return l
}

// Held returns the bytes of unfinished request messages held now, across
// the connections.
func (l *Limiter) Held() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Wrap returns c, watched: c is what a server reads HTTP/2 from (after TLS,
// if any). Closing the returned conn stops the watch.
func (l *Limiter) Wrap(c net.Conn) net.Conn {
	wc := &conn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[wc] = struct{}{}
	l.mu.Unlock()
	return wc
}

// victim is a connection closed for holding too much.
type victim struct {
	c      *conn
	held   int64
	reason string
}

// update records that c holds held bytes, with streams streams unfinished
// (closing c if they are too many, or if its bytes made no sense: broken),
// and closes connections while the total is over the budget.
func (l *Limiter) update(c *conn, held int64, streams int, broken bool) {
	var victims []victim
	l.mu.Lock()
	if c.closed {
		l.mu.Unlock()
		return
	}
	l.total += held - c.held
	c.held = held
	switch {
	case broken:
		victims = append(victims, victim{c, c.held, "HTTP/2 bytes that make no sense"})
		l.removeLocked(c)
	case streams > l.maxStreams:
		victims = append(victims, victim{c, c.held, "too many streams with an unfinished message"})
		l.removeLocked(c)
	}
	for l.total > l.budget {
		var big *conn
		for o := range l.conns {
			if big == nil || o.held > big.held {
				big = o
			}
		}
		victims = append(victims, victim{big, big.held, "holds the most unfinished request bytes over -recv-memory"})
		l.removeLocked(big)
	}
	total := l.total
	l.mu.Unlock()

	for _, v := range victims {
		l.logger.Warn("connection closed: "+v.reason, "remote", v.c.RemoteAddr().String(),
			"held_bytes", v.held, "total_bytes", total, "budget_bytes", l.budget)
		v.c.closeRaw()
	}
}

// removeLocked stops counting c. l.mu is held.
func (l *Limiter) removeLocked(c *conn) {
	if c.closed {
		return
	}
	c.closed = true
	l.total -= c.held
	c.held = 0
	delete(l.conns, c)
}
