package h1_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fetchd/fetchd/server/internal/h1"
)

// TestMaxResponseHeaderBytes checks that a response head over the cap
// fails, and one under it does not.
func TestMaxResponseHeaderBytes(t *testing.T) {
	tests := []struct {
		name    string
		max     int64 // 0: the default, 64 KiB
		size    int   // of one header value
		wantMsg string
	}{
		{"64 KiB head, 4 KiB cap", 4 << 10, 64 << 10, "exceeded 4096 bytes"},
		{"3 KiB head, 4 KiB cap", 4 << 10, 3 << 10, ""},
		{"100 KiB head, default cap", 0, 100 << 10, "exceeded 65536 bytes"},
		{"32 KiB head, default cap", 0, 32 << 10, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			big := strings.Repeat("a", tt.size)
			rs := startRaw(t, serveEach("HTTP/1.1 200 OK\r\nX-Big: "+big+"\r\nContent-Length: 2\r\n\r\nok", false))
			tr := newTransport(t, &h1.Transport{MaxResponseHeaderBytes: tt.max})
			resp, err := tr.RoundTrip(newRequest(t, backstop(t), http.MethodGet, rs.URL, nil))
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("RoundTrip(%q) = %v, want nil", rs.URL, err)
				}
				if body := readAll(t, resp); len(resp.Header.Get("X-Big")) != tt.size || body != "ok" {
					t.Errorf("RoundTrip(%q) = %d-byte X-Big, body %q, want %d, %q", rs.URL, len(resp.Header.Get("X-Big")), body, tt.size, "ok")
				}
				return
			}
			if err == nil {
				resp.Body.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("RoundTrip(%q) = %v, want an error containing %q", rs.URL, err, tt.wantMsg)
			}
		})
	}
}

// slowHead is a response whose head takes long to drip: 200 bytes.
var slowHead = "HTTP/1.1 200 OK\r\nX-Pad: " + strings.Repeat("a", 200) + "\r\nContent-Length: 2\r\n\r\nok"

// dripping returns an upstream that, for every request, drips the head
// (inBody false) or sends the head at once and drips a 1000-byte body,
// one byte every interval.
func dripping(inBody bool, every time.Duration) func(*rawConn) {
	return func(rc *rawConn) {
		if _, _, err := rc.readRequest(); err != nil {
			return
		}
		if !inBody {
			rc.drip(slowHead, every)
			return
		}
		if rc.write("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n") == nil {
			rc.drip(strings.Repeat("b", 1000), every)
		}
	}
}

// exchange sends req with client and reads the response body to its end;
// it returns the first error, of either.
func exchange(client *http.Client, req *http.Request) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return err
}

// TestIdleReadTimeout checks that an upstream that goes quiet for
// IdleReadTimeout, in the head or in the body, fails the request at once
// with an *IdleReadError that is a net.Error timeout.
func TestIdleReadTimeout(t *testing.T) {
	const idle = 100 * time.Millisecond
	tests := []struct {
		name   string
		inBody bool
	}{
		{"head", false},
		{"body", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := startRaw(t, dripping(tt.inBody, 300*time.Millisecond))
			client := &http.Client{Transport: newTransport(t, &h1.Transport{IdleReadTimeout: idle})}
			start := time.Now()
			err := exchange(client, newRequest(t, backstop(t), http.MethodGet, rs.URL, nil))
			elapsed := time.Since(start)
			var (
				ne  net.Error
				ire *h1.IdleReadError
			)
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("RoundTrip(%q) = %v, want a net.Error timeout", rs.URL, err)
			}
			if !errors.As(err, &ire) || ire.Idle != idle || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("RoundTrip(%q) = %v, want an *h1.IdleReadError for %v wrapping os.ErrDeadlineExceeded", rs.URL, err, idle)
			}
			if elapsed > prompt {
				t.Errorf("RoundTrip(%q) took %v, want under %v", rs.URL, elapsed, prompt)
			}
		})
	}
}

// TestContextDeadline checks that a dripping upstream is cut off by the
// request's deadline, with context.DeadlineExceeded, when no idle-read
// timeout fires first: none is set, it is longer than the deadline, or
// each byte rearms it.
func TestContextDeadline(t *testing.T) {
	tests := []struct {
		name    string
		idle    time.Duration // IdleReadTimeout
		timeout time.Duration // the request's
		every   time.Duration // between two bytes
		inBody  bool
	}{
		{"no idle read, head", 0, 300 * time.Millisecond, 300 * time.Millisecond, false},
		{"no idle read, body", 0, 300 * time.Millisecond, 300 * time.Millisecond, true},
		{"idle read longer than the deadline", time.Second, 300 * time.Millisecond, 50 * time.Millisecond, false},
		{"idle read rearmed by each byte, head", 400 * time.Millisecond, 1200 * time.Millisecond, 50 * time.Millisecond, false},
		{"idle read rearmed by each byte, body", 400 * time.Millisecond, 1200 * time.Millisecond, 50 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each waits for its deadline
			rs := startRaw(t, dripping(tt.inBody, tt.every))
			client := &http.Client{Transport: newTransport(t, &h1.Transport{IdleReadTimeout: tt.idle})}
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			start := time.Now()
			err := exchange(client, newRequest(t, ctx, http.MethodGet, rs.URL, nil))
			elapsed := time.Since(start)
			var ire *h1.IdleReadError
			if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ire) {
				t.Errorf("RoundTrip(%q) = %v, want %v", rs.URL, err, context.DeadlineExceeded)
			}
			if elapsed > tt.timeout+prompt {
				t.Errorf("RoundTrip(%q) took %v, want under %v", rs.URL, elapsed, tt.timeout+prompt)
			}
		})
	}
}

// TestResponseHeaderTimeout checks that an upstream that never answers
// fails the request after ResponseHeaderTimeout.
func TestResponseHeaderTimeout(t *testing.T) {
	rs := startRaw(t, func(rc *rawConn) {
		rc.readRequest()
		<-rc.done
	})
	tr := newTransport(t, &h1.Transport{ResponseHeaderTimeout: 100 * time.Millisecond})
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Do(newRequest(t, backstop(t), http.MethodGet, rs.URL, nil))
	elapsed := time.Since(start)
	if err == nil {
		resp.Body.Close()
	}
	var (
		ne  net.Error
		ire *h1.IdleReadError
	)
	if !errors.As(err, &ne) || !ne.Timeout() || errors.As(err, &ire) {
		t.Errorf("RoundTrip(%q) = %v, want a net.Error timeout, not an idle read", rs.URL, err)
	}
	if err != nil && !strings.Contains(err.Error(), "timeout awaiting response headers") {
		t.Errorf("RoundTrip(%q) = %v, want it to say %q", rs.URL, err, "timeout awaiting response headers")
	}
	if elapsed > prompt {
		t.Errorf("RoundTrip(%q) took %v, want under %v", rs.URL, elapsed, prompt)
	}
}

// TestResponseHeaderTimeoutSparesBody checks that ResponseHeaderTimeout
// bounds the head only: a body slower than it is read, and the
// connection reused.
func TestResponseHeaderTimeoutSparesBody(t *testing.T) {
	rs := startRaw(t, func(rc *rawConn) {
		for {
			if _, _, err := rc.readRequest(); err != nil {
				return
			}
			if rc.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n") != nil ||
				!rc.sleep(300*time.Millisecond) || rc.write("ok") != nil {
				return
			}
		}
	})
	tr := newTransport(t, &h1.Transport{ResponseHeaderTimeout: 100 * time.Millisecond})
	for i := range 2 {
		_, body := roundTrip(t, tr, newRequest(t, backstop(t), http.MethodGet, rs.URL, nil))
		if body != "ok" {
			t.Errorf("RoundTrip(%q) #%d = %q, want %q", rs.URL, i, body, "ok")
		}
	}
	if got := rs.Accepted.Load(); got != 1 {
		t.Errorf("connections for two requests = %d, want 1", got)
	}
}

// TestCancelAwaitingHead checks that cancelling a request while the
// upstream holds the response head ends it at once with
// context.Canceled, and closes the connection.
func TestCancelAwaitingHead(t *testing.T) {
	gotReq, sawClose := make(chan struct{}, 1), make(chan struct{}, 1)
	rs := startRaw(t, func(rc *rawConn) {
		if _, _, err := rc.readRequest(); err != nil {
			return
		}
		select {
		case gotReq <- struct{}{}:
		default:
		}
		rc.br.ReadByte() // until the client closes, or the test ends
		select {
		case sawClose <- struct{}{}:
		default:
		}
	})
	tr := newTransport(t, &h1.Transport{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := newRequest(t, ctx, http.MethodGet, rs.URL, nil)
	done := async(func() error {
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	<-gotReq
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RoundTrip(%q) = %v, want %v", rs.URL, err, context.Canceled)
		}
	case <-time.After(prompt):
		t.Fatalf("RoundTrip(%q) did not return within %v of the cancel", rs.URL, prompt)
	}
	select {
	case <-sawClose:
	case <-time.After(prompt):
		t.Errorf("upstream did not see the connection closed within %v of the cancel", prompt)
	}
}

// TestCancelReadingBody checks that cancelling a request while its body
// is read fails the read at once with context.Canceled, and that the
// upstream's handler sees its request end.
func TestCancelReadingBody(t *testing.T) {
	handlerErr, release := make(chan error, 1), make(chan struct{})
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "hello")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			handlerErr <- r.Context().Err()
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // before srv.Close, which waits for the handler
	tr := newTransport(t, &h1.Transport{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := tr.RoundTrip(newRequest(t, ctx, http.MethodGet, srv.URL, nil))
	if err != nil {
		t.Fatalf("RoundTrip(%q) = %v, want nil", srv.URL, err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("RoundTrip(%q): first 5 bytes = %q, %v, want %q", srv.URL, buf, err, "hello")
	}
	cancel()
	select {
	case err := <-async(func() error { _, err := resp.Body.Read(buf); return err }):
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RoundTrip(%q): read body after cancel = %v, want %v", srv.URL, err, context.Canceled)
		}
	case <-time.After(prompt):
		t.Fatalf("RoundTrip(%q): read body did not return within %v of the cancel", srv.URL, prompt)
	}
	select {
	case err := <-handlerErr:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("handler's request context ended with %v, want %v", err, context.Canceled)
		}
	case <-time.After(prompt):
		t.Errorf("handler's request context did not end within %v of the cancel", prompt)
	}
}

// hookConn is a real connection that runs hooks when the transport moves
// its deadlines, to force one interleaving of a cancellation with the
// transport's own work.
type hookConn struct {
	net.Conn
	beforeClear func() // before the read deadline is cleared
	afterAll    func() // after SetDeadline, which only an abort calls
}

func (c *hookConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		c.beforeClear()
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *hookConn) SetDeadline(t time.Time) error {
	err := c.Conn.SetDeadline(t)
	c.afterAll()
	return err
}

// TestCancelWhileClearingHeadDeadline checks that a cancellation that
// lands just as the transport clears the ResponseHeaderTimeout deadline,
// after the head was read, is not lost: reading the body must still fail
// at once with context.Canceled, not wait on the upstream for ever.
func TestCancelWhileClearingHeadDeadline(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	rs := startRaw(t, func(rc *rawConn) {
		if _, _, err := rc.readRequest(); err != nil {
			return
		}
		rc.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n") // and no body
		select {
		case <-release:
		case <-rc.done:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		first   atomic.Bool
		aborted = make(chan struct{}, 1)
	)
	tr := newTransport(t, &h1.Transport{
		ResponseHeaderTimeout: 5 * time.Second,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &hookConn{
				Conn: nc,
				beforeClear: func() {
					if first.Swap(true) {
						return
					}
					cancel() // the abort runs now, on its own goroutine
					select {
					case <-aborted:
					case <-time.After(prompt):
					}
				},
				afterAll: func() {
					select {
					case aborted <- struct{}{}:
					default:
					}
				},
			}, nil
		},
	})
	resp, err := tr.RoundTrip(newRequest(t, ctx, http.MethodGet, rs.URL, nil))
	cancel() // in case the transport never cleared the deadline
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RoundTrip(%q) = %v, want nil or %v", rs.URL, err, context.Canceled)
		}
		return
	}
	defer resp.Body.Close()
	read := async(func() error { _, err := io.ReadAll(resp.Body); return err })
	select {
	case err := <-read:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RoundTrip(%q): read body after cancel = %v, want %v", rs.URL, err, context.Canceled)
		}
	case <-time.After(prompt):
		t.Errorf("RoundTrip(%q): read body did not return within %v of the cancel: the abort's deadline was cleared", rs.URL, prompt)
		close(release) // the upstream hangs up, which ends the read
		<-read
	}
}

// TestBodyCloseConcurrentWithRead checks that closing a gzipped body
// while another goroutine is blocked reading it ends the read, without a
// data race (run with -race): net/http allows Close concurrent with Read.
func TestBodyCloseConcurrentWithRead(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	plain := make([]byte, 64<<10)
	for i := range plain {
		plain[i] = 'a' + byte(rnd.IntN(26)) // compresses poorly
	}
	gz := gzipped(t, plain)
	release := make(chan struct{})
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(gz)))
		w.Write(gz[:len(gz)/2])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	tr := newTransport(t, &h1.Transport{})
	resp, err := tr.RoundTrip(newRequest(t, backstop(t), http.MethodGet, srv.URL, nil))
	if err != nil {
		t.Fatalf("RoundTrip(%q) = %v, want nil", srv.URL, err)
	}
	var got bytes.Buffer
	read := async(func() error { _, err := io.Copy(&got, resp.Body); return err })
	// No synchronisation with the reader on purpose, so that the race
	// detector sees the two goroutines as concurrent: give it time to
	// decode the first half and block.
	time.Sleep(200 * time.Millisecond)
	resp.Body.Close()
	select {
	case err := <-read:
		if err == nil {
			t.Errorf("RoundTrip(%q): read of a body closed half way = nil error, want one", srv.URL)
		}
	case <-time.After(prompt):
		t.Fatalf("RoundTrip(%q): read did not return within %v of Close", srv.URL, prompt)
	}
	if !bytes.HasPrefix(plain, got.Bytes()) {
		t.Errorf("RoundTrip(%q): read %d bytes that are not a prefix of the body", srv.URL, got.Len())
	}
}
