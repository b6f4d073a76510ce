package testupstream

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Upstream is a counting test upstream. Its methods are safe for concurrent
// use.
type Upstream struct {
	*httptest.Server

	inFlight  atomic.Int64
	peak      atomic.Int64
	hits      atomic.Int64
	cancelled atomic.Int64
	written   atomic.Int64 // pattern body bytes written
	cut       atomic.Int64 // pattern bodies cut short
	closing   chan struct{}

	mu     sync.Mutex       // guards tags, agents and seen
	tags   map[string]int64 // requests per tag
	agents map[string]int64 // requests per User-Agent
	seen   map[string]int64 // requests per URL, for fail=
}

// New starts an upstream on 127.0.0.1 and closes it when tb ends.
func New(tb testing.TB) *Upstream {
	tb.Helper()
	return NewAt(tb, "127.0.0.1:0")
}

// NewAt starts an upstream listening on addr, such as "127.0.0.2:0" for a
// second loopback host, and closes it when tb ends.
func NewAt(tb testing.TB, addr string) *Upstream {
	tb.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("testupstream: listen %s: %v", addr, err)
	}
	u := &Upstream{closing: make(chan struct{}), tags: map[string]int64{}, agents: map[string]int64{}, seen: map[string]int64{}}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.Server.Listener.Close()
	u.Server.Listener = lis
	u.Server.Start()
	tb.Cleanup(u.Close)
	return u
}

// Close releases hanging requests and stops the server.
func (u *Upstream) Close() {
	select {
	case <-u.closing:
	default:
		close(u.closing)
	}
	u.Server.Close()
}

// Peak returns the most requests the upstream has served at once.
func (u *Upstream) Peak() int64 { return u.peak.Load() }

// InFlight returns the requests being served now.
func (u *Upstream) InFlight() int64 { return u.inFlight.Load() }

// Hits returns the number of requests received.
func (u *Upstream) Hits() int64 { return u.hits.Load() }

// Cancelled returns the number of requests whose context ended (the client
// went away) before the upstream answered.
func (u *Upstream) Cancelled() int64 { return u.cancelled.Load() }

// Tag returns the number of requests received with tag=name.
func (u *Upstream) Tag(name string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.tags[name]
}

// Agent returns the number of requests received with User-Agent ua.
func (u *Upstream) Agent(ua string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.agents[ua]
}

// ResetPeak sets the peak to the current number of requests in flight.
func (u *Upstream) ResetPeak() { u.peak.Store(u.inFlight.Load()) }

var okBody = []byte("ok\n")

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.hits.Add(1)
	n := u.inFlight.Add(1)
	defer u.inFlight.Add(-1)
	for {
		p := u.peak.Load()
		if n <= p || u.peak.CompareAndSwap(p, n) {
			break
		}
	}
	q := r.URL.Query()
	u.mu.Lock()
	if tag := q.Get("tag"); tag != "" {
		u.tags[tag]++
	}
	u.agents[r.UserAgent()]++
	u.seen[r.URL.String()]++
	nth := u.seen[r.URL.String()]
	u.mu.Unlock()
	if n, err := strconv.Atoi(q.Get("fail")); err == nil && nth <= int64(n) {
		// The first n requests for this URL fail with failstatus
		// (default 503) and, if set, Retry-After.
		st, err := strconv.Atoi(q.Get("failstatus"))
		if err != nil {
			st = http.StatusServiceUnavailable
		}
		if ra := q.Get("retryafter"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(st)
		return
	}
	var wait <-chan time.Time
	if d, err := time.ParseDuration(q.Get("delay")); err == nil && d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		wait = t.C
	}
	if q.Get("hang") != "" || wait != nil {
		select {
		case <-wait:
		case <-r.Context().Done():
			u.cancelled.Add(1)
			return
		case <-u.closing:
			return
		}
	}
	status := http.StatusOK
	if s, err := strconv.Atoi(q.Get("status")); err == nil && s >= 100 && s <= 999 {
		status = s
	}
	if n, err := strconv.ParseInt(q.Get("pattern"), 10, 64); err == nil && n >= 0 {
		u.servePattern(w, n, q.Get("chunked") != "")
		return
	}
	body := okBody
	if s, err := strconv.Atoi(q.Get("size")); err == nil && s >= 0 {
		body = bytes.Repeat([]byte{'x'}, s)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
