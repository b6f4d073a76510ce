package connlimit

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// Defaults of [Config]'s abuse detection.
const (
	// DefaultFailBurst is how many abusive RPCs (see Config.FailBurst) a
	// connection may end in a row before its rate counts.
	DefaultFailBurst = 100
	// DefaultFailRate is how many abusive RPCs per second a connection may
	// end, sustained.
	DefaultFailRate = 50
)

// Config configures a [Tracker]. The zero value has no limits and the
// default abuse detection.
type Config struct {
	// MaxConns is the most connections open at once (0: no limit).
	MaxConns int
	// MaxPerIP is the most connections open at once from one IP address
	// (0: no limit).
	MaxPerIP int
	// FailBurst and FailRate bound the abusive RPCs of an address's
	// connections (one bucket per address, kept while it refills, so that
	// reconnecting does not refill it): those
	// that end before a request message arrived (reset by the caller, as in
	// rapid reset) or are refused with UNAUTHENTICATED, PERMISSION_DENIED
	// or RESOURCE_EXHAUSTED. A token bucket of FailBurst tokens, refilled
	// at FailRate a second: the connection that ends one more is closed. RPCs
	// that fail at their work (a deadline, a caller's cancel after sending)
	// never count. 0: DefaultFailBurst, DefaultFailRate; a negative
	// FailBurst turns detection off.
	FailBurst int
	FailRate  float64
	// IsWork reports whether an RPC of this method is work that keeps its
	// connection's slot (nil: every RPC is). Waiting RPCs such as a health
	// Watch are not.
	IsWork func(fullMethod string) bool
	// Logger logs each connection evicted, refused or closed for abuse
	// (nil: no log). Under attack these are many lines: give a sampled
	// logger.
	Logger *slog.Logger
	// Now is the clock (nil: time.Now); for tests.
	Now func() time.Time
}

// Tracker tracks the connections of one listener and the RPCs on them;
// see the package doc. Make one with [New]; it is safe for concurrent use.
type Tracker struct {
	cfg Config

	mu    sync.Mutex         // guards conns, perIP and abuse, and the fields of each conn that say so
	conns map[string]*conn   // open connections, by remote address
	perIP map[string]int     // len(conns) by IP address
	abuse map[string]*bucket // abusive RPCs each address may still end; see Config.FailBurst
}

// maxBuckets is how many addresses' abuse buckets the tracker keeps
// beyond those with a connection open: the ones still refilling after
// abuse. Past it, the full ones are forgotten first.
const maxBuckets = 4096

// bucket is one address's token bucket of abusive RPCs. It is the
// address's, not a connection's, so that a caller that reconnects after
// its connection was closed for abuse starts with the tokens it left, and
// its next connection is closed at its first abusive RPC.
type bucket struct {
	tokens   float64
	refilled time.Time
}

// refill adds the tokens earned since the last refill, up to burst.
func (b *bucket) refill(now time.Time, burst int, rate float64) {
	b.tokens = min(float64(burst), b.tokens+now.Sub(b.refilled).Seconds()*rate)
	b.refilled = now
}

// New returns a Tracker with cfg.
func New(cfg Config) *Tracker {
	if cfg.FailBurst == 0 {
		cfg.FailBurst = DefaultFailBurst
	}
	if cfg.FailRate == 0 {
		cfg.FailRate = DefaultFailRate
	}
	if cfg.IsWork == nil {
		cfg.IsWork = func(string) bool { return true }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Tracker{cfg: cfg, conns: map[string]*conn{}, perIP: map[string]int{}, abuse: map[string]*bucket{}}
}

// Len returns the number of connections open.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// conn is an accepted connection. Closing it gives its slot back.
type conn struct {
	net.Conn
	t        *Tracker
	key      string // remote address, the key of t.conns
	ip       string
	accepted time.Time
	once     sync.Once

	// Guarded by t.mu.
	began    bool      // an RPC of any kind has begun
	work     int       // work RPCs in progress
	lastWork time.Time // when the last work RPC began or ended; accepted if none
	bucket   *bucket   // its address's abuse bucket
	gone     bool      // removed from t.conns (evicted or closed)
}

// Close closes the connection and gives its slot back.
func (c *conn) Close() error {
	c.t.remove(c)
	return c.Conn.Close()
}

// remove takes c out of the tracker's maps, once.
func (t *Tracker) remove(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(c)
}

// removeLocked is remove with t.mu held.
func (t *Tracker) removeLocked(c *conn) {
	if c.gone {
		return
	}
	c.gone = true
	delete(t.conns, c.key)
	if t.perIP[c.ip]--; t.perIP[c.ip] <= 0 {
		delete(t.perIP, c.ip)
		// An address's bucket outlives its connections while it refills.
		if c.bucket.refill(t.cfg.Now(), t.cfg.FailBurst, t.cfg.FailRate); c.bucket.tokens >= float64(t.cfg.FailBurst) {
			delete(t.abuse, c.ip)
		}
	}
}

// admit registers nc, making room by evicting an idle connection if a
// limit is reached. It returns nil, having closed nc, if no room can be
// made.
func (t *Tracker) admit(nc net.Conn) *conn {
	key := nc.RemoteAddr().String()
	ip := key
	if host, _, err := net.SplitHostPort(key); err == nil {
		ip = host
	}
	now := t.cfg.Now()
	c := &conn{Conn: nc, t: t, key: key, ip: ip, accepted: now, lastWork: now}

	t.mu.Lock()
	c.bucket = t.bucketLocked(ip, now)
	if c.bucket.refill(now, t.cfg.FailBurst, t.cfg.FailRate); t.cfg.FailBurst >= 0 && c.bucket.tokens < 1 {
		// The address spent its bucket on abuse: no new connection
		// until it earns a token back (1/FailRate seconds).
		t.mu.Unlock()
		nc.Close()
		t.cfg.Logger.Warn("connection refused: its address's connections were closed for abuse", "peer", key)
		return nil
	}
	var victim *conn
	limit := ""
	switch {
	case t.cfg.MaxPerIP > 0 && t.perIP[ip] >= t.cfg.MaxPerIP:
		victim, limit = t.idlest(ip), "per-IP"
	case t.cfg.MaxConns > 0 && len(t.conns) >= t.cfg.MaxConns:
		victim, limit = t.idlest(""), "total"
	}
	if limit != "" && victim == nil {
		t.mu.Unlock()
		nc.Close()
		t.cfg.Logger.Warn("connection refused: every slot has work in progress", "limit", limit, "peer", key)
		return nil
	}
	if victim != nil {
		t.removeLocked(victim)
	}
	if old, ok := t.conns[key]; ok {
		t.removeLocked(old) // a closed connection's address, reused before its Close
	}
	t.conns[key] = c
	t.perIP[ip]++
	t.mu.Unlock()

	if victim != nil {
		victim.Conn.Close()
		t.cfg.Logger.Info("connection evicted: its slot went to a new one", "limit", limit,
			"peer", victim.key, "began_rpc", victim.began, "idle", now.Sub(victim.lastWork).Round(time.Millisecond))
	}
	return c
}

// bucketLocked returns ip's abuse bucket, made full if it has none, and
// forgets full buckets of addresses without a connection once there are
// too many. t.mu must be held.
func (t *Tracker) bucketLocked(ip string, now time.Time) *bucket {
	if b, ok := t.abuse[ip]; ok {
		return b
	}
	if len(t.abuse) >= maxBuckets+len(t.perIP) {
		for a, b := range t.abuse {
			if t.perIP[a] > 0 {
				continue
			}
			if b.refill(now, t.cfg.FailBurst, t.cfg.FailRate); b.tokens >= float64(t.cfg.FailBurst) || len(t.abuse) >= 2*maxBuckets {
				delete(t.abuse, a)
			}
		}
	}
	b := &bucket{tokens: float64(t.cfg.FailBurst), refilled: now}
	t.abuse[ip] = b
	return b
}

// idlest returns the connection to evict, of address ip (any if empty),
// or nil if every one has work in progress: one that never began an RPC,
// the longest-open first, else the one whose last work ended longest
// ago. t.mu must be held.
func (t *Tracker) idlest(ip string) *conn {
	var best *conn
	for _, c := range t.conns {
		if c.work > 0 || (ip != "" && c.ip != ip) {
			continue
		}
		if best == nil || before(c, best) {
			best = c
		}
	}
	return best
}

// before reports whether a is to be evicted before b.
func before(a, b *conn) bool {
	if a.began != b.began {
		return !a.began
	}
	if !a.began {
		return a.accepted.Before(b.accepted)
	}
	return a.lastWork.Before(b.lastWork)
}
