package h1_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/server/internal/h1"
)

// readAll reads resp's body to its end, closes it and returns it.
func readAll(tb testing.TB, resp *http.Response) string {
	tb.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read body of %q: %v, want nil", resp.Request.URL, err)
	}
	return string(b)
}

// TestReuseSequential checks that sequential requests, GETs and POSTs
// alike, share one connection.
func TestReuseSequential(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "body")
	})
	client := &http.Client{Transport: newTransport(t, &h1.Transport{})}
	for i := range 10 {
		req := newRequest(t, context.Background(), http.MethodGet, srv.URL, nil)
		if i%2 == 1 {
			req = newRequest(t, context.Background(), http.MethodPost, srv.URL, strings.NewReader("payload"))
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("RoundTrip(%s %q) #%d = %v, want nil", req.Method, srv.URL, i, err)
		}
		if body := readAll(t, resp); body != "body" {
			t.Errorf("RoundTrip(%s %q) #%d body = %q, want %q", req.Method, srv.URL, i, body, "body")
		}
	}
	if got := srv.opened.Load(); got != 1 {
		t.Errorf("connections for 10 sequential requests = %d, want 1", got)
	}
}

// TestIdleLIFO checks that the most recently used idle connection is
// taken first.
func TestIdleLIFO(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) })
	tr := newTransport(t, &h1.Transport{})
	a, b := hold(t, tr, srv.URL), hold(t, tr, srv.URL)
	addrA, addrB := readAll(t, a), readAll(t, b) // b is back last
	if addrA == addrB {
		t.Fatalf("two held responses came on one connection %s", addrA)
	}
	if got := get(t, tr, srv.URL); got != addrB {
		t.Errorf("RoundTrip(%q) used connection %s, want the last one back %s", srv.URL, got, addrB)
	}
	x, y := hold(t, tr, srv.URL), hold(t, tr, srv.URL)
	if gotX, gotY := readAll(t, x), readAll(t, y); gotX != addrB || gotY != addrA {
		t.Errorf("two held RoundTrip(%q) used %s, %s, want %s, %s", srv.URL, gotX, gotY, addrB, addrA)
	}
}

// TestMaxIdleConnsPerHost checks that concurrent requests open a
// connection each, and that only MaxIdleConnsPerHost of them stay idle
// after.
func TestMaxIdleConnsPerHost(t *testing.T) {
	const n, perHost = 4, 2
	var (
		mu      sync.Mutex // guards arrived
		arrived int
		all     = make(chan struct{}) // closed when n requests are in
	)
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/barrier" {
			mu.Lock()
			if arrived++; arrived == n {
				close(all)
			}
			mu.Unlock()
			select {
			case <-all:
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, "ok")
	})
	tr := newTransport(t, &h1.Transport{MaxIdleConnsPerHost: perHost})
	client := &http.Client{Transport: tr}
	ctx := backstop(t)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		req := newRequest(t, ctx, http.MethodGet, srv.URL+"/barrier", nil)
		wg.Go(func() {
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("RoundTrip(%q) = %v, want nil", srv.URL+"/barrier", err)
		}
	}
	if got := srv.opened.Load(); got != n {
		t.Fatalf("connections for %d concurrent requests = %d, want %d", n, got, n)
	}
	testctx.WaitFor(t, 5*time.Second, "the transport to close the connections over the per-host cap", func() bool {
		return srv.closed.Load() == n-perHost
	})
	for range perHost {
		hold(t, tr, srv.URL)
	}
	if got := srv.opened.Load(); got != n {
		t.Errorf("connections after %d more held requests = %d, want still %d: the idle ones reused", perHost, got, n)
	}
	hold(t, tr, srv.URL)
	if got := srv.opened.Load(); got != n+1 {
		t.Errorf("connections after one more = %d, want %d", got, n+1)
	}
}

// TestMaxIdleConns checks the cap on idle connections across hosts, and
// that CloseIdleConnections frees it.
func TestMaxIdleConns(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) {}
	a, b := startServer(t, ok), startServer(t, ok)
	tr := newTransport(t, &h1.Transport{MaxIdleConns: 1})
	get(t, tr, a.URL) // idle: the pool is full
	get(t, tr, b.URL) // closed: no room
	testctx.WaitFor(t, 5*time.Second, "b's connection to be closed by the full pool", func() bool { return b.closed.Load() == 1 })
	get(t, tr, a.URL)
	if got := a.opened.Load(); got != 1 {
		t.Errorf("connections to a = %d, want 1: its idle one reused", got)
	}
	tr.CloseIdleConnections()
	testctx.WaitFor(t, 5*time.Second, "a's idle connection to be closed", func() bool { return a.closed.Load() == 1 })
	get(t, tr, b.URL)
	get(t, tr, b.URL)
	if got := b.opened.Load(); got != 2 {
		t.Errorf("connections to b = %d, want 2: after CloseIdleConnections the pool has room again", got)
	}
}

// TestIdleConnTimeout checks that a connection idle for IdleConnTimeout
// is closed, and leaves room under MaxIdleConns.
func TestIdleConnTimeout(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) {}
	a, b := startServer(t, ok), startServer(t, ok)
	tr := newTransport(t, &h1.Transport{IdleConnTimeout: 250 * time.Millisecond, MaxIdleConns: 1})
	get(t, tr, a.URL)
	testctx.WaitFor(t, 5*time.Second, "the idle connection to time out", func() bool { return a.closed.Load() == 1 })
	get(t, tr, b.URL)
	get(t, tr, b.URL)
	if got := b.opened.Load(); got != 1 {
		t.Errorf("connections to b = %d, want 1: the expired one left room in the pool", got)
	}
	get(t, tr, a.URL)
	if got := a.opened.Load(); got != 2 {
		t.Errorf("connections to a = %d, want 2: its idle one expired", got)
	}
}

// TestCloseIdleConnections checks that idle connections are closed and
// one in use is not.
func TestCloseIdleConnections(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tr := newTransport(t, &h1.Transport{})
	x, y, inUse := hold(t, tr, srv.URL), hold(t, tr, srv.URL), hold(t, tr, srv.URL)
	drain(t, x)
	drain(t, y)
	tr.CloseIdleConnections()
	testctx.WaitFor(t, 5*time.Second, "the two idle connections to be closed", func() bool { return srv.closed.Load() == 2 })
	if body := readAll(t, inUse); body != "ok" {
		t.Errorf("body of the response in use = %q, want %q", body, "ok")
	}
	get(t, tr, srv.URL)
	if got, closed := srv.opened.Load(), srv.closed.Load(); got != 3 || closed != 2 {
		t.Errorf("connections opened, closed = %d, %d, want 3, 2: the one in use survives and is reused", got, closed)
	}
}

// TestNotReused checks the ways a response ends that leave its connection
// unfit for the next request.
func TestNotReused(t *testing.T) {
	tests := []struct {
		name      string
		first     func(tb testing.TB, tr *h1.Transport, url string)
		wantConns int64
	}{
		{"read to its end", func(tb testing.TB, tr *h1.Transport, url string) { get(tb, tr, url) }, 1},
		{"closed unread", func(tb testing.TB, tr *h1.Transport, url string) {
			hold(tb, tr, url).Body.Close()
		}, 2},
		{"closed partly read", func(tb testing.TB, tr *h1.Transport, url string) {
			resp := hold(tb, tr, url+"big")
			if _, err := io.ReadFull(resp.Body, make([]byte, 1<<10)); err != nil {
				tb.Fatal(err)
			}
			resp.Body.Close()
		}, 2},
		{"response Connection: close", func(tb testing.TB, tr *h1.Transport, url string) {
			resp, _ := roundTrip(tb, tr, newRequest(tb, context.Background(), http.MethodGet, url+"close", nil))
			if !resp.Close {
				tb.Errorf("RoundTrip(%q) Close = false, want true", url+"close")
			}
		}, 2},
		{"req.Close", func(tb testing.TB, tr *h1.Transport, url string) {
			req := newRequest(tb, context.Background(), http.MethodGet, url+"reqclose", nil)
			req.Close = true
			roundTrip(tb, tr, req)
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/big":
					w.Write(make([]byte, 64<<10))
				case "/close":
					w.Header().Set("Connection", "close")
				case "/reqclose":
					if !r.Close {
						t.Errorf("upstream saw Close = false for a request with req.Close, want true")
					}
				default:
					io.WriteString(w, "hello") // a body to leave unread
				}
			})
			tr := newTransport(t, &h1.Transport{})
			tt.first(t, tr, srv.URL+"/")
			get(t, tr, srv.URL)
			if got := srv.opened.Load(); got != tt.wantConns {
				t.Errorf("connections for two requests = %d, want %d", got, tt.wantConns)
			}
		})
	}
}

// TestNotReusedAfterExtraBytes checks that a connection on which the
// upstream sent more than the response is not reused.
func TestNotReusedAfterExtraBytes(t *testing.T) {
	rs := startRaw(t, func(rc *rawConn) {
		for i := 0; ; i++ {
			if _, _, err := rc.readRequest(); err != nil {
				return
			}
			resp := okResp
			if i == 0 {
				resp += "HTTP/1.1 200 OK\r\nGARBAGE" // in the same write
			}
			if rc.write(resp) != nil {
				return
			}
		}
	})
	tr := newTransport(t, &h1.Transport{})
	for i := range 2 {
		if got := get(t, tr, rs.URL); got != "ok" {
			t.Errorf("RoundTrip(%q) #%d = %q, want %q", rs.URL, i, got, "ok")
		}
	}
	if got := rs.Accepted.Load(); got != 2 {
		t.Errorf("connections for two requests = %d, want 2", got)
	}
}

// TestReqCloseNotReused checks that a connection a request asked to close
// is not reused, even when the upstream ignores the ask and keeps it open.
func TestReqCloseNotReused(t *testing.T) {
	rs := startRaw(t, serveEach(okResp, false)) // keep-alive whatever is asked
	tr := newTransport(t, &h1.Transport{})
	req := newRequest(t, context.Background(), http.MethodGet, rs.URL, nil)
	req.Close = true
	roundTrip(t, tr, req)
	get(t, tr, rs.URL)
	if got := rs.Accepted.Load(); got != 2 {
		t.Errorf("connections for a req.Close request and another = %d, want 2", got)
	}
}

// TestBodilessResponseClosedUnreadIsReused checks that a response that
// has no body (HEAD, 204, 304) leaves its connection reusable even when
// the caller closes the body without reading it, as with net/http.
func TestBodilessResponseClosedUnreadIsReused(t *testing.T) {
	tests := []struct{ name, method, path string }{
		{"HEAD", http.MethodHead, "/"},
		{"204", http.MethodGet, "/204"},
		{"304", http.MethodGet, "/304"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/204":
					w.WriteHeader(http.StatusNoContent)
				case "/304":
					w.WriteHeader(http.StatusNotModified)
				default:
					io.WriteString(w, "hello")
				}
			})
			tr := newTransport(t, &h1.Transport{})
			for range 2 {
				req := newRequest(t, context.Background(), tt.method, srv.URL+tt.path, nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatalf("RoundTrip(%q) = %v, want nil", req.URL, err)
				}
				resp.Body.Close()
			}
			if got := srv.opened.Load(); got != 1 {
				t.Errorf("connections for two %s requests closed unread = %d, want 1", tt.name, got)
			}
		})
	}
}

// TestNonReplayableNeedsFreshConn checks that a POST does not take a
// connection idle for more than a second, which a GET still takes.
func TestNonReplayableNeedsFreshConn(t *testing.T) {
	t.Parallel() // sleeps past freshFor
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	tr := newTransport(t, &h1.Transport{})
	drainAll := func(rs ...*http.Response) {
		for _, r := range rs {
			drain(t, r)
		}
	}
	drainAll(hold(t, tr, srv.URL), hold(t, tr, srv.URL)) // two idle
	time.Sleep(1100 * time.Millisecond)                  // older than freshFor
	post := newRequest(t, context.Background(), http.MethodPost, srv.URL, strings.NewReader("x"))
	roundTrip(t, tr, post) // dials; its connection finds the pool full and is closed
	if got := srv.opened.Load(); got != 3 {
		t.Errorf("connections after a POST with only stale idle ones = %d, want 3", got)
	}
	get(t, tr, srv.URL)
	if got := srv.opened.Load(); got != 3 {
		t.Errorf("connections after a GET with stale idle ones = %d, want still 3", got)
	}
}

// TestUnsolicitedBytesOnIdleConn checks that a pooled connection on which
// the upstream sent bytes nobody asked for (here a whole forged response)
// is not reused: the next request goes on a new connection and gets the
// answer to its own request.
func TestUnsolicitedBytesOnIdleConn(t *testing.T) {
	const evil = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
	forged := make(chan struct{})
	var once sync.Once
	rs := startRaw(t, func(rc *rawConn) {
		first := true
		for {
			if _, _, err := rc.readRequest(); err != nil {
				return
			}
			if rc.write(okResp) != nil {
				return
			}
			if first {
				first = false
				once.Do(func() {
					rc.write(evil) // while the connection idles in the pool
					close(forged)
				})
			}
		}
	})
	tr := newTransport(t, &h1.Transport{})
	if got := get(t, tr, rs.URL); got != "ok" {
		t.Fatalf("RoundTrip(%q) = %q, want %q", rs.URL, got, "ok")
	}
	<-forged
	// The forged bytes are written; loopback delivers them in
	// microseconds, so that the check meets them rather than races them.
	time.Sleep(50 * time.Millisecond)
	if got := get(t, tr, rs.URL); got != "ok" {
		t.Errorf("RoundTrip(%q) after unsolicited bytes = %q, want %q", rs.URL, got, "ok")
	}
	if got := rs.Accepted.Load(); got != 2 {
		t.Errorf("connections = %d, want 2: the one with unsolicited bytes must be dropped", got)
	}
}

// TestPostAfterUpstreamClosedIdle checks that a request that may not be
// sent twice does not meet a pooled connection the upstream has closed:
// the check finds it closed, and the POST goes on a new connection.
func TestPostAfterUpstreamClosedIdle(t *testing.T) {
	var posts atomic.Int64
	rs := startRaw(t, func(rc *rawConn) {
		req, _, err := rc.readRequest()
		if err != nil {
			return
		}
		if req.Method == http.MethodPost {
			posts.Add(1)
		}
		rc.write(okResp) // then the connection is closed
	})
	tr := newTransport(t, &h1.Transport{})
	get(t, tr, rs.URL)
	testctx.WaitFor(t, 5*time.Second, "the upstream to close its connection", func() bool { return rs.Finished.Load() == 1 })
	req := newRequest(t, backstop(t), http.MethodPost, rs.URL, strings.NewReader("payload"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip(POST %q) after the upstream closed the idle connection = %v, want nil", rs.URL, err)
	}
	if body := readAll(t, resp); body != "ok" {
		t.Errorf("RoundTrip(POST %q) = %q, want %q", rs.URL, body, "ok")
	}
	if got := posts.Load(); got != 1 {
		t.Errorf("upstream saw %d POSTs, want 1", got)
	}
}
