package connlimit

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a fake clock that moves only when told.
type clock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// harness is a Tracker over a real loopback listener.
type harness struct {
	t     *Tracker
	lis   net.Listener
	clock *clock
	tb    testing.TB
}

func newHarness(tb testing.TB, cfg Config) *harness {
	tb.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	clk := &clock{now: time.Unix(1_000_000, 0)}
	cfg.Now = clk.Now
	tr := New(cfg)
	h := &harness{t: tr, lis: tr.Listen(inner), clock: clk, tb: tb}
	tb.Cleanup(func() { h.lis.Close() })
	return h
}

// peer is one client connection and the server side the tracker gave it,
// if any.
type peer struct {
	client net.Conn
	server net.Conn // nil if refused
	ctx    context.Context
}

// connect dials from 127.0.0.ip and accepts; it returns once Accept has
// returned or the connection was refused (the client then reads EOF).
func (h *harness) connect(ip byte) *peer {
	h.tb.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, ip)}}
	c, err := d.Dial("tcp", h.lis.Addr().String())
	if err != nil {
		h.tb.Fatal(err)
	}
	h.tb.Cleanup(func() { c.Close() })
	p := &peer{client: c}
	accepted := make(chan net.Conn, 1)
	go func() {
		sc, err := h.lis.Accept()
		if err == nil {
			accepted <- sc
		}
		close(accepted)
	}()
	// A refused connection reads EOF (or a reset) while Accept waits for
	// the next one; an admitted one reads nothing.
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, rerr := c.Read(make([]byte, 1))
	c.SetReadDeadline(time.Time{})
	var ne net.Error
	if rerr != nil && !(errors.As(rerr, &ne) && ne.Timeout()) {
		h.lis.Close() // end the Accept still waiting
		h.relisten()
		<-accepted
		return p
	}
	p.server = <-accepted
	h.tb.Cleanup(func() { p.server.Close() })
	p.ctx = h.t.TagConn(context.Background(), &stats.ConnTagInfo{RemoteAddr: p.server.RemoteAddr()})
	return p
}

// relisten replaces the closed listener by a new one on the same tracker.
func (h *harness) relisten() {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.tb.Fatal(err)
	}
	h.lis = h.t.Listen(inner)
	h.tb.Cleanup(func() { h.lis.Close() })
}

// call begins an RPC on p and returns the function that ends it with err.
func (h *harness) call(p *peer, method string, sendMsg bool) (end func(err error)) {
	ctx := h.t.TagRPC(p.ctx, &stats.RPCTagInfo{FullMethodName: method})
	h.t.HandleRPC(ctx, &stats.Begin{})
	if sendMsg {
		h.t.HandleRPC(ctx, &stats.InPayload{})
	}
	return func(err error) { h.t.HandleRPC(ctx, &stats.End{Error: err}) }
}

// closed reports whether the server side closed p.
func closed(tb testing.TB, p *peer) bool {
	tb.Helper()
	p.client.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	defer p.client.SetReadDeadline(time.Time{})
	_, err := p.client.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && (errors.Is(err, io.EOF) || !(errors.As(err, &ne) && ne.Timeout()))
}

const (
	work = "/fetch.v1.FetchService/Fetch"
	wait = "/grpc.health.v1.Health/Watch"
)

func isWork(m string) bool { return m == work }

func TestEviction(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		// setup opens peers and calls on them; it returns the peers.
		setup      func(h *harness) []*peer
		newIP      byte
		wantClosed int // index of the peer evicted; -1: none
		wantRefuse bool
	}{
		{
			name: "never began an RPC goes first",
			cfg:  Config{MaxConns: 3},
			setup: func(h *harness) []*peer {
				a, b, c := h.connect(2), h.connect(3), h.connect(4)
				h.call(a, wait, true)      // a health Watch: no work
				h.call(b, work, true)(nil) // worked, now idle
				_ = c                      // never began
				return []*peer{a, b, c}
			},
			newIP: 5, wantClosed: 2,
		},
		{
			name: "idle longest goes first",
			cfg:  Config{MaxConns: 3},
			setup: func(h *harness) []*peer {
				a, b, c := h.connect(2), h.connect(3), h.connect(4)
				endA, endB := h.call(a, work, true), h.call(b, work, true)
				h.call(c, work, true)
				h.clock.Advance(time.Second)
				endB(nil) // b idle since t+1s
				h.clock.Advance(time.Second)
				endA(nil) // a idle since t+2s; c still working
				return []*peer{a, b, c}
			},
			newIP: 5, wantClosed: 1,
		},
		{
			name: "every slot working: refused",
			cfg:  Config{MaxConns: 2},
			setup: func(h *harness) []*peer {
				a, b := h.connect(2), h.connect(3)
				h.call(a, work, true)
				h.call(b, work, true)
				h.call(b, wait, true)
				return []*peer{a, b}
			},
			newIP: 4, wantClosed: -1, wantRefuse: true,
		},
		{
			name: "per-IP cap evicts from that IP only",
			cfg:  Config{MaxConns: 10, MaxPerIP: 2},
			setup: func(h *harness) []*peer {
				other := h.connect(2) // older, never began: yet another IP's
				a, b := h.connect(3), h.connect(3)
				h.call(a, work, true)
				return []*peer{other, a, b}
			},
			newIP: 3, wantClosed: 2,
		},
		{
			name: "per-IP cap, all working: refused",
			cfg:  Config{MaxConns: 10, MaxPerIP: 1},
			setup: func(h *harness) []*peer {
				a := h.connect(3)
				h.call(a, work, true)
				return []*peer{a}
			},
			newIP: 3, wantClosed: -1, wantRefuse: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.IsWork = isWork
			h := newHarness(t, cfg)
			peers := tt.setup(h)
			h.clock.Advance(time.Second)
			p := h.connect(tt.newIP)
			if refused := p.server == nil; refused != tt.wantRefuse {
				t.Errorf("new connection refused = %v, want %v", refused, tt.wantRefuse)
			}
			for i, old := range peers {
				if got, want := closed(t, old), i == tt.wantClosed; got != want {
					t.Errorf("connection %d closed = %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestSlotFreedOnClose(t *testing.T) {
	h := newHarness(t, Config{MaxConns: 1, IsWork: isWork})
	a := h.connect(2)
	h.call(a, work, true)
	if p := h.connect(3); p.server != nil {
		t.Fatalf("2nd connection admitted while the 1st works")
	}
	a.server.Close()
	if n := h.t.Len(); n != 0 {
		t.Errorf("Len() = %d after Close, want 0", n)
	}
	if p := h.connect(3); p.server == nil {
		t.Errorf("connection refused after the slot was given back")
	}
}

func TestAbuse(t *testing.T) {
	canceled := status.Error(codes.Canceled, "context canceled")
	tests := []struct {
		name       string
		calls      int
		every      time.Duration // between two calls
		sendMsg    bool
		err        error
		wantClosed bool
	}{
		{name: "resets without a message, burst", calls: 101, sendMsg: false, err: canceled, wantClosed: true},
		{name: "resets within the rate", calls: 400, every: 25 * time.Millisecond, sendMsg: false, err: canceled},
		{name: "resets over the rate", calls: 400, every: 10 * time.Millisecond, sendMsg: false, err: canceled, wantClosed: true},
		{name: "unauthenticated, burst", calls: 101, sendMsg: true, err: status.Error(codes.Unauthenticated, "no token"), wantClosed: true},
		{name: "fast successful calls", calls: 5000, sendMsg: true},
		{name: "cancelled after sending", calls: 5000, sendMsg: true, err: canceled},
		{name: "deadlines", calls: 5000, sendMsg: true, err: status.Error(codes.DeadlineExceeded, "deadline")},
		{name: "a burst within the bucket", calls: 100, sendMsg: false, err: canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{IsWork: isWork})
			p := h.connect(2)
			for range tt.calls {
				h.call(p, work, tt.sendMsg)(tt.err)
				h.clock.Advance(tt.every)
			}
			if got := closed(t, p); got != tt.wantClosed {
				t.Errorf("%d calls every %v (message %v, %v): connection closed = %v, want %v",
					tt.calls, tt.every, tt.sendMsg, tt.err, got, tt.wantClosed)
			}
		})
	}
}

// TestAbuseReconnect: the abuse bucket is the address's: a caller that
// reconnects after its connection was closed for abuse starts with the
// tokens it left, and its new connection is closed at its first abusive
// RPC, until the bucket refills; other addresses are untouched.
func TestAbuseReconnect(t *testing.T) {
	canceled := status.Error(codes.Canceled, "context canceled")
	h := newHarness(t, Config{IsWork: isWork})
	first := h.connect(2)
	for range DefaultFailBurst + 1 {
		h.call(first, work, false)(canceled)
	}
	if !closed(t, first) {
		t.Fatalf("connection not closed after %d resets", DefaultFailBurst+1)
	}
	// At once, the address's next connection is refused; once it has
	// earned a token (1/50 s), it spends it and is closed at its next
	// reset.
	if refused := h.connect(2); !closed(t, refused) {
		t.Errorf("a new connection from the address with its bucket spent was accepted")
	}
	h.clock.Advance(time.Second / DefaultFailRate)
	again := h.connect(2)
	h.call(again, work, false)(canceled)
	h.call(again, work, false)(canceled)
	if !closed(t, again) {
		t.Errorf("a new connection from the same address survived its first reset with the bucket spent")
	}
	other := h.connect(3)
	for range DefaultFailBurst {
		h.call(other, work, false)(canceled)
	}
	if closed(t, other) {
		t.Errorf("another address's connection closed within its own bucket")
	}
	// Two seconds refill 100 tokens: the address may reset again.
	h.clock.Advance(2 * time.Second)
	later := h.connect(2)
	for range DefaultFailBurst - 1 {
		h.call(later, work, false)(canceled)
	}
	if closed(t, later) {
		t.Errorf("connection closed within a refilled bucket")
	}
}
