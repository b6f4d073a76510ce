package h1_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server/internal/h1"
)

// prompt bounds how long an operation that should end "at once" (a timeout
// of 100 ms, a cancellation) may take: generous, for a loaded machine with
// the race detector, and far below the 5 s a stuck request would take.
const prompt = 2 * time.Second

// okResp is a complete keep-alive response with a two-byte body.
const okResp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// server is an httptest server that counts the connections it accepted and
// those it saw closed.
type server struct {
	*httptest.Server
	opened, closed atomic.Int64
}

// startServer starts an httptest server with h, closed when tb ends.
func startServer(tb testing.TB, h http.HandlerFunc) *server {
	tb.Helper()
	s := &server{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	s.Start()
	tb.Cleanup(s.Close)
	return s
}

// newTransport returns tr, whose idle connections are closed when tb ends.
func newTransport(tb testing.TB, tr *h1.Transport) *h1.Transport {
	tb.Helper()
	tb.Cleanup(tr.CloseIdleConnections)
	return tr
}

// rawConn is one connection to a raw upstream, as its handler sees it.
type rawConn struct {
	net.Conn
	br   *bufio.Reader
	done <-chan struct{} // closed when the test ends
}

// readRequest reads one request and its body.
func (rc *rawConn) readRequest() (*http.Request, []byte, error) {
	req, err := http.ReadRequest(rc.br)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(req.Body)
	return req, body, err
}

// readRaw reads one request as it came on the wire: head, and the body its
// Content-Length announces.
func (rc *rawConn) readRaw() (string, error) {
	var b strings.Builder
	n := 0
	for {
		line, err := rc.br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\r\n" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, n)
	_, err := io.ReadFull(rc.br, body)
	b.Write(body)
	return b.String(), err
}

// write writes s in one write.
func (rc *rawConn) write(s string) error {
	_, err := io.WriteString(rc.Conn, s)
	return err
}

// sleep waits for d; false if the test ended first.
func (rc *rawConn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-rc.done:
		return false
	}
}

// drip writes s one byte every interval, until the test ends or a write
// fails.
func (rc *rawConn) drip(s string, every time.Duration) {
	for i := range len(s) {
		if !rc.sleep(every) || rc.write(s[i:i+1]) != nil {
			return
		}
	}
}

// startRaw serves every connection with handle, which owns it until it
// returns (see [testupstream.StartRaw]).
func startRaw(tb testing.TB, handle func(rc *rawConn)) *testupstream.Raw {
	tb.Helper()
	return testupstream.StartRaw(tb, func(c net.Conn, done <-chan struct{}) {
		handle(&rawConn{Conn: c, br: bufio.NewReader(c), done: done})
	})
}

// serveEach answers every request on a connection with resp, and closes
// the connection after the first if closeAfter.
func serveEach(resp string, closeAfter bool) func(*rawConn) {
	return func(rc *rawConn) {
		for {
			if _, _, err := rc.readRequest(); err != nil {
				return
			}
			if rc.write(resp) != nil || closeAfter {
				return
			}
		}
	}
}

// countingDialer dials loopback with a net.Dialer and counts the calls.
type countingDialer struct {
	calls atomic.Int64
}

func (d *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.calls.Add(1)
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

// closeRecorder is a request body that records whether it was closed.
type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error {
	c.closed.Store(true)
	return nil
}

// newRequest is http.NewRequestWithContext that fails tb on error.
func newRequest(tb testing.TB, ctx context.Context, method, url string, body io.Reader) *http.Request {
	tb.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// roundTrip sends req through rt, reads the body to its end and closes it.
func roundTrip(tb testing.TB, rt http.RoundTripper, req *http.Request) (*http.Response, string) {
	tb.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		tb.Fatalf("RoundTrip(%q) = %v, want nil", req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("RoundTrip(%q): read body: %v, want nil", req.URL, err)
	}
	return resp, string(body)
}

// get sends a GET for url through rt and returns the body, read to its end.
func get(tb testing.TB, rt http.RoundTripper, url string) string {
	tb.Helper()
	_, body := roundTrip(tb, rt, newRequest(tb, context.Background(), http.MethodGet, url, nil))
	return body
}

// hold sends a GET for url through rt and returns the response unread: its
// connection stays out of the pool until the body is read.
func hold(tb testing.TB, rt http.RoundTripper, url string) *http.Response {
	tb.Helper()
	req := newRequest(tb, context.Background(), http.MethodGet, url, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		tb.Fatalf("RoundTrip(%q) = %v, want nil", url, err)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	return resp
}

// drain reads resp's body to its end and closes it, which puts its
// connection back in the pool.
func drain(tb testing.TB, resp *http.Response) {
	tb.Helper()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		tb.Fatalf("read body of %q: %v, want nil", resp.Request.URL, err)
	}
	resp.Body.Close()
}

// gzipped returns b gzip-compressed.
func gzipped(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// async runs f on a goroutine and returns the channel its error comes on.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// backstop is a context for a request that must end on its own, much
// sooner: it bounds the damage of a bug to 5 s instead of a hung test.
func backstop(tb testing.TB) context.Context {
	tb.Helper()
	return testctx.WithTimeout(tb, 5*time.Second)
}
