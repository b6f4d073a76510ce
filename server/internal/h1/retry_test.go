package h1_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/server/internal/h1"
)

// TestRetryIdleClosedByUpstream checks that a GET that meets a pooled
// connection the upstream has closed is sent again on a new one.
func TestRetryIdleClosedByUpstream(t *testing.T) {
	rs := startRaw(t, serveEach(okResp, true)) // one response per connection, then close
	tr := newTransport(t, &h1.Transport{})
	get(t, tr, rs.URL)
	testctx.WaitFor(t, 5*time.Second, "the upstream to close its connection", func() bool { return rs.Finished.Load() == 1 })
	if got := get(t, tr, rs.URL); got != "ok" {
		t.Errorf("RoundTrip(%q) = %q, want %q", rs.URL, got, "ok")
	}
	if got := rs.Accepted.Load(); got != 2 {
		t.Errorf("connections = %d, want 2", got)
	}
}

// TestRetryAllIdleDead checks that a GET is retried on a new connection
// when every pooled connection is dead, as after an upstream restart: the
// retry must not take the next dead one from the pool.
func TestRetryAllIdleDead(t *testing.T) {
	rs := startRaw(t, serveEach(okResp, true))
	tr := newTransport(t, &h1.Transport{})
	a, b := hold(t, tr, rs.URL), hold(t, tr, rs.URL)
	drain(t, a)
	drain(t, b) // two idle connections
	testctx.WaitFor(t, 5*time.Second, "the upstream to close both connections", func() bool { return rs.Finished.Load() == 2 })
	req := newRequest(t, backstop(t), http.MethodGet, rs.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip(%q) with two dead idle connections = %v, want nil", rs.URL, err)
	}
	if body := readAll(t, resp); body != "ok" {
		t.Errorf("RoundTrip(%q) = %q, want %q", rs.URL, body, "ok")
	}
	if got := rs.Accepted.Load(); got != 3 {
		t.Errorf("connections = %d, want 3", got)
	}
}

// recorder records the requests an upstream read, as "METHOD path body".
type recorder struct {
	mu   sync.Mutex // guards seen
	seen []string
}

func (r *recorder) add(req *http.Request, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, req.Method+" "+req.URL.Path+" "+string(body))
}

// count returns how many requests for path it recorded, and whether each
// came with wantBody.
func (r *recorder) count(path, wantBody string) (n int, bodiesOK bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	bodiesOK = true
	for _, s := range r.seen {
		f := strings.SplitN(s, " ", 3)
		if f[1] == path {
			n++
			bodiesOK = bodiesOK && f[2] == wantBody
		}
	}
	return n, bodiesOK
}

// hangUpOnSecond is an upstream that answers the first request on each
// connection and hangs up on the second without a byte of answer.
type hangUpOnSecond struct{ recorder }

func (h *hangUpOnSecond) serve(rc *rawConn) {
	for i := 0; ; i++ {
		req, body, err := rc.readRequest()
		if err != nil {
			return
		}
		h.add(req, body)
		if i > 0 || rc.write(okResp) != nil {
			return
		}
	}
}

// TestRetry checks which requests are sent again when the upstream hangs
// up on a reused connection before answering: replayable ones (GET,
// OPTIONS, or with an idempotency key and a body that can be had again),
// once, on a new connection; others not at all. A body too large for one
// write with its head (written beside the read of the answer) follows the
// same rule.
func TestRetry(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB
	tests := []struct {
		name      string
		method    string
		header    string // an idempotency key header to set
		body      string
		noGetBody bool
		wantErr   bool
		wantSent  int   // times the upstream read the request
		wantConns int64 // connections, the warm-up one included
	}{
		{"GET", http.MethodGet, "", "", false, false, 2, 2},
		{"OPTIONS", http.MethodOptions, "", "", false, false, 2, 2},
		{"POST", http.MethodPost, "", "payload", false, true, 1, 1},
		{"PUT", http.MethodPut, "", "payload", false, true, 1, 1},
		{"DELETE", http.MethodDelete, "", "", false, true, 1, 1},
		{"POST with Idempotency-Key", http.MethodPost, "Idempotency-Key", "payload", false, false, 2, 2},
		{"POST with X-Idempotency-Key", http.MethodPost, "X-Idempotency-Key", "payload", false, false, 2, 2},
		{"POST with Idempotency-Key, body not replayable", http.MethodPost, "Idempotency-Key", "payload", true, true, 1, 1},
		{"POST 1 MiB", http.MethodPost, "", big, false, true, 1, 1},
		{"POST 1 MiB with Idempotency-Key", http.MethodPost, "Idempotency-Key", big, false, false, 2, 2},
		{"POST 1 MiB with Idempotency-Key, body not replayable", http.MethodPost, "Idempotency-Key", big, true, true, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var up hangUpOnSecond
			rs := startRaw(t, up.serve)
			tr := newTransport(t, &h1.Transport{})
			get(t, tr, rs.URL+"warm")
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			url := rs.URL + "target"
			req := newRequest(t, backstop(t), tt.method, url, body)
			if tt.header != "" {
				req.Header.Set(tt.header, "key-1")
			}
			if tt.noGetBody {
				req.GetBody = nil
			}
			resp, err := tr.RoundTrip(req)
			if err == nil {
				readAll(t, resp)
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("RoundTrip(%s %q) = %v, want error %v", tt.method, url, err, tt.wantErr)
			}
			if n, bodiesOK := up.count("/target", tt.body); n != tt.wantSent || !bodiesOK {
				t.Errorf("RoundTrip(%s %q): upstream read it %d times (bodies intact %v), want %d (true)", tt.method, url, n, bodiesOK, tt.wantSent)
			}
			if got := rs.Accepted.Load(); got != tt.wantConns {
				t.Errorf("connections = %d, want %d", got, tt.wantConns)
			}
		})
	}
}

// TestRetryNotOnTimeout checks that a GET on a reused connection that
// times out waiting for its answer is not sent again: the upstream is
// slow, not gone.
func TestRetryNotOnTimeout(t *testing.T) {
	tests := []struct {
		name string
		tr   func() *h1.Transport
	}{
		{"ResponseHeaderTimeout", func() *h1.Transport { return &h1.Transport{ResponseHeaderTimeout: 100 * time.Millisecond} }},
		{"IdleReadTimeout", func() *h1.Transport { return &h1.Transport{IdleReadTimeout: 100 * time.Millisecond} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var up recorder
			rs := startRaw(t, func(rc *rawConn) {
				for {
					req, body, err := rc.readRequest()
					if err != nil {
						return
					}
					up.add(req, body)
					if req.URL.Path == "/slow" {
						<-rc.done // never answers
						return
					}
					if rc.write(okResp) != nil {
						return
					}
				}
			})
			tr := newTransport(t, tt.tr())
			get(t, tr, rs.URL)
			url := rs.URL + "slow"
			start := time.Now()
			resp, err := tr.RoundTrip(newRequest(t, backstop(t), http.MethodGet, url, nil))
			if err == nil {
				resp.Body.Close()
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("RoundTrip(%q) = %v, want a timeout", url, err)
			}
			if n, _ := up.count("/slow", ""); n != 1 {
				t.Errorf("RoundTrip(%q): upstream read it %d times, want 1", url, n)
			}
			if d := time.Since(start); d > prompt {
				t.Errorf("RoundTrip(%q) took %v, want under %v", url, d, prompt)
			}
		})
	}
}
