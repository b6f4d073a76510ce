package h1_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/server/internal/h1"
)

// TestRequestWire checks the exact bytes of requests as the upstream
// receives them: request line, Host, User-Agent, the caller's headers
// sorted by name, framing, Accept-Encoding and Connection.
func TestRequestWire(t *testing.T) {
	tests := []struct {
		name    string
		disable bool // DisableCompression
		req     func(tb testing.TB, url string) *http.Request
		want    string // {addr} stands for the upstream's host:port
	}{
		{
			name: "GET",
			req: func(tb testing.TB, url string) *http.Request {
				return newRequest(tb, context.Background(), http.MethodGet, url+"path?q=1", nil)
			},
			want: "GET /path?q=1 HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
		},
		{
			name: "caller headers sorted repeated and trimmed",
			req: func(tb testing.TB, url string) *http.Request {
				req := newRequest(tb, context.Background(), http.MethodGet, url, nil)
				req.Header["X-B"] = []string{"2", "3"}
				req.Header["X-A"] = []string{"1"}
				req.Header["X-C"] = []string{" \tspaced\t "}
				return req
			},
			want: "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\n" +
				"X-A: 1\r\nX-B: 2\r\nX-B: 3\r\nX-C: spaced\r\nAccept-Encoding: gzip\r\n\r\n",
		},
		{
			name: "IPv6 zone left out of Host, as net/http does",
			req: func(tb testing.TB, url string) *http.Request {
				req := newRequest(tb, context.Background(), http.MethodGet, url, nil)
				req.Host = "[fe80::1%eth0]:8080"
				return req
			},
			want: "GET / HTTP/1.1\r\nHost: [fe80::1]:8080\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
		},
		{
			name: "caller User-Agent",
			req: func(tb testing.TB, url string) *http.Request {
				req := newRequest(tb, context.Background(), http.MethodGet, url, nil)
				req.Header.Set("User-Agent", "fetchd/1.0")
				return req
			},
			want: "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: fetchd/1.0\r\nAccept-Encoding: gzip\r\n\r\n",
		},
		{
			name: "empty User-Agent suppresses it",
			req: func(tb testing.TB, url string) *http.Request {
				req := newRequest(tb, context.Background(), http.MethodGet, url, nil)
				req.Header["User-Agent"] = []string{""}
				return req
			},
			want: "GET / HTTP/1.1\r\nHost: {addr}\r\nAccept-Encoding: gzip\r\n\r\n",
		},
		{
			name: "Host override",
			req: func(tb testing.TB, url string) *http.Request {
				req := newRequest(tb, context.Background(), http.MethodGet, url, nil)
				req.Host = "example.test"
				return req
			},
			want: "GET / HTTP/1.1\r\nHost: example.test\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
		},
		{
			name: "framing headers of the caller are dropped",
			req: func(tb testing.TB, url string) *http.Request {
				req := newRequest(tb, context.Background(), http.MethodGet, url, nil)
				req.Header.Set("Host", "evil.test")
				req.Header.Set("Content-Length", "99")
				req.Header.Set("Transfer-Encoding", "chunked")
				req.Header.Set("Trailer", "X-T")
				return req
			},
			want: "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
		},
		{
			name: "caller Accept-Encoding",
			req: func(tb testing.TB, url string) *http.Request {
				req := newRequest(tb, context.Background(), http.MethodGet, url, nil)
				req.Header.Set("Accept-Encoding", "identity")
				return req
			},
			want: "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: identity\r\n\r\n",
		},
		{
			name: "Range",
			req: func(tb testing.TB, url string) *http.Request {
				req := newRequest(tb, context.Background(), http.MethodGet, url, nil)
				req.Header.Set("Range", "bytes=0-1")
				return req
			},
			want: "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nRange: bytes=0-1\r\n\r\n",
		},
		{
			name: "HEAD",
			req: func(tb testing.TB, url string) *http.Request {
				return newRequest(tb, context.Background(), http.MethodHead, url, nil)
			},
			want: "HEAD / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\n\r\n",
		},
		{
			name:    "DisableCompression",
			disable: true,
			req: func(tb testing.TB, url string) *http.Request {
				return newRequest(tb, context.Background(), http.MethodGet, url, nil)
			},
			want: "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\n\r\n",
		},
		{
			name: "POST with body",
			req: func(tb testing.TB, url string) *http.Request {
				return newRequest(tb, context.Background(), http.MethodPost, url, strings.NewReader("hello"))
			},
			want: "POST / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 5\r\nAccept-Encoding: gzip\r\n\r\nhello",
		},
		{
			name: "POST without body",
			req: func(tb testing.TB, url string) *http.Request {
				return newRequest(tb, context.Background(), http.MethodPost, url, nil)
			},
			want: "POST / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 0\r\nAccept-Encoding: gzip\r\n\r\n",
		},
		{
			name: "PUT with NoBody",
			req: func(tb testing.TB, url string) *http.Request {
				return newRequest(tb, context.Background(), http.MethodPut, url, http.NoBody)
			},
			want: "PUT / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 0\r\nAccept-Encoding: gzip\r\n\r\n",
		},
		{
			name: "PATCH without body",
			req: func(tb testing.TB, url string) *http.Request {
				return newRequest(tb, context.Background(), http.MethodPatch, url, nil)
			},
			want: "PATCH / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 0\r\nAccept-Encoding: gzip\r\n\r\n",
		},
		{
			name: "DELETE without body",
			req: func(tb testing.TB, url string) *http.Request {
				return newRequest(tb, context.Background(), http.MethodDelete, url, nil)
			},
			want: "DELETE / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
		},
		{
			name: "req.Close",
			req: func(tb testing.TB, url string) *http.Request {
				req := newRequest(tb, context.Background(), http.MethodGet, url, nil)
				req.Close = true
				return req
			},
			want: "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
		},
		{
			name: "empty method is GET",
			req: func(tb testing.TB, url string) *http.Request {
				req := newRequest(tb, context.Background(), http.MethodGet, url, nil)
				req.Method = ""
				return req
			},
			want: "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan string, 1)
			rs := startRaw(t, func(rc *rawConn) {
				for {
					raw, err := rc.readRaw()
					if err != nil {
						return
					}
					select {
					case got <- raw:
					case <-rc.done:
						return
					}
					if rc.write("HTTP/1.1 204 No Content\r\n\r\n") != nil {
						return
					}
				}
			})
			tr := newTransport(t, &h1.Transport{DisableCompression: tt.disable})
			req := tt.req(t, rs.URL)
			roundTrip(t, tr, req)
			want := strings.ReplaceAll(tt.want, "{addr}", rs.Addr)
			if raw := <-got; raw != want {
				t.Errorf("RoundTrip(%q) sent\n%q\nwant\n%q", req.URL, raw, want)
			}
		})
	}
}

// TestRoundTripLeavesRequestAlone checks that the headers the transport
// adds go on the wire only, not into the caller's request.
func TestRoundTripLeavesRequestAlone(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {})
	tr := newTransport(t, &h1.Transport{})
	req := newRequest(t, context.Background(), http.MethodPost, srv.URL, strings.NewReader("x"))
	req.Close = true
	want := req.Header.Clone()
	roundTrip(t, tr, req)
	if !maps.EqualFunc(req.Header, want, slices.Equal) {
		t.Errorf("RoundTrip(%q) left req.Header = %v, want %v", req.URL, req.Header, want)
	}
}

// TestCallerConnectionCloseHeader checks that a Connection: close the
// caller sets as a header reaches the upstream, as with net/http, and that
// the connection is then not reused.
func TestCallerConnectionCloseHeader(t *testing.T) {
	sawClose := make(chan bool, 2)
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { sawClose <- r.Close })
	tr := newTransport(t, &h1.Transport{})
	for range 2 {
		req := newRequest(t, context.Background(), http.MethodGet, srv.URL, nil)
		req.Header.Set("Connection", "close")
		roundTrip(t, tr, req)
		if got := <-sawClose; !got {
			t.Errorf("RoundTrip(%q) with header Connection: close: upstream saw Close = %v, want true", req.URL, got)
		}
	}
	if got := srv.opened.Load(); got != 2 {
		t.Errorf("connections opened = %d, want 2", got)
	}
}

// TestRequestBody checks that request bodies arrive intact with their
// Content-Length, and that the transport closes them.
func TestRequestBody(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 64<<10) // 1 MiB: more than any buffer
	tests := []struct {
		name   string
		method string
		body   io.Reader // nil: none
		want   string
	}{
		{"POST", http.MethodPost, bytes.NewReader([]byte("hello")), "hello"},
		{"PUT 1 MiB", http.MethodPut, strings.NewReader(big), big},
		{"PATCH", http.MethodPatch, strings.NewReader("{}"), "{}"},
		{"POST NoBody", http.MethodPost, http.NoBody, ""},
		{"POST nil body", http.MethodPost, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type seen struct {
				length int64
				te     []string
				body   string
			}
			got := make(chan seen, 1)
			srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got <- seen{r.ContentLength, r.TransferEncoding, string(b)}
			})
			tr := newTransport(t, &h1.Transport{})
			req := newRequest(t, context.Background(), tt.method, srv.URL, nil)
			var rec *closeRecorder
			switch tt.body {
			case nil:
			case http.NoBody:
				req.Body = http.NoBody
			default:
				rec = &closeRecorder{Reader: tt.body}
				req.Body, req.ContentLength = rec, int64(len(tt.want))
			}
			roundTrip(t, tr, req)
			s := <-got
			if s.length != int64(len(tt.want)) || s.te != nil || s.body != tt.want {
				t.Errorf("RoundTrip(%s %q): upstream saw ContentLength %d, TransferEncoding %q, %d-byte body; want %d, none, the %d bytes sent",
					tt.method, req.URL, s.length, s.te, len(s.body), len(tt.want), len(tt.want))
			}
			if rec != nil && !rec.closed.Load() {
				t.Errorf("RoundTrip(%s %q) left the request body open, want it closed", tt.method, req.URL)
			}
		})
	}
}

// TestSupports checks which requests the transport refuses with
// ErrUnsupported, before dialing and closing their bodies, and which it
// carries.
func TestSupports(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	body := func(r *http.Request, n int64) *closeRecorder {
		rec := &closeRecorder{Reader: strings.NewReader("abc")}
		r.Method, r.Body, r.ContentLength = http.MethodPost, rec, n
		return rec
	}
	tests := []struct {
		name        string
		mod         func(r *http.Request) *closeRecorder
		unsupported bool
	}{
		{"https", func(r *http.Request) *closeRecorder { r.URL.Scheme = "https"; return nil }, true},
		{"no URL", func(r *http.Request) *closeRecorder { r.URL = nil; return nil }, true},
		{"non-ASCII URL host", func(r *http.Request) *closeRecorder { r.URL.Host = "bücher.test"; return nil }, true},
		{"non-ASCII Host", func(r *http.Request) *closeRecorder { r.Host = "bücher.test"; return nil }, true},
		{"body of length 0", func(r *http.Request) *closeRecorder { return body(r, 0) }, true},
		{"body of length -1", func(r *http.Request) *closeRecorder { return body(r, -1) }, true},
		{"TransferEncoding", func(r *http.Request) *closeRecorder {
			r.TransferEncoding = []string{"chunked"}
			return body(r, 3)
		}, true},
		{"Trailer", func(r *http.Request) *closeRecorder {
			r.Trailer = http.Header{"X-T": nil}
			return body(r, 3)
		}, true},
		{"Expect", func(r *http.Request) *closeRecorder {
			r.Header.Set("Expect", "100-continue")
			return body(r, 3)
		}, true},
		{"Upgrade", func(r *http.Request) *closeRecorder {
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			return nil
		}, true},

		{"GET", func(r *http.Request) *closeRecorder { return nil }, false},
		{"POST with known length", func(r *http.Request) *closeRecorder { return body(r, 3) }, false},
		{"POST with NoBody", func(r *http.Request) *closeRecorder {
			r.Method, r.Body = http.MethodPost, http.NoBody
			return nil
		}, false},
		{"ContentLength without body", func(r *http.Request) *closeRecorder { r.ContentLength = 3; return nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d countingDialer
			tr := newTransport(t, &h1.Transport{DialContext: d.DialContext})
			req := newRequest(t, backstop(t), http.MethodGet, srv.URL, nil)
			rec := tt.mod(req)
			if err := h1.Supports(req); tt.unsupported != errors.Is(err, h1.ErrUnsupported) || !tt.unsupported && err != nil {
				t.Errorf("Supports(%s) = %v, want unsupported %v", tt.name, err, tt.unsupported)
			}
			resp, err := tr.RoundTrip(req)
			if !tt.unsupported {
				if err != nil {
					t.Fatalf("RoundTrip(%s) = %v, want nil", tt.name, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("RoundTrip(%s) = %d, want 200", tt.name, resp.StatusCode)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
			}
			if !errors.Is(err, h1.ErrUnsupported) {
				t.Errorf("RoundTrip(%s) = %v, want an error wrapping ErrUnsupported", tt.name, err)
			}
			if n := d.calls.Load(); n != 0 {
				t.Errorf("RoundTrip(%s) dialed %d times, want 0", tt.name, n)
			}
			if rec != nil && !rec.closed.Load() {
				t.Errorf("RoundTrip(%s) left the request body open, want it closed", tt.name)
			}
		})
	}
}

// invalidRequests are requests whose bytes would break the framing of
// HTTP/1.1, which writeRequest refuses.
var invalidRequests = []struct {
	name string
	mod  func(r *http.Request)
}{
	{"header name with a space", func(r *http.Request) { r.Header["Bad Name"] = []string{"x"} }},
	{"header name with a colon", func(r *http.Request) { r.Header["X-A:b"] = []string{"x"} }},
	{"header value with CRLF", func(r *http.Request) { r.Header["X-A"] = []string{"a\r\nX-Injected: 1"} }},
	{"header value with NUL", func(r *http.Request) { r.Header["X-A"] = []string{"a\x00b"} }},
	{"User-Agent with CRLF", func(r *http.Request) { r.Header["User-Agent"] = []string{"ua\r\nX-Injected: 1"} }},
	{"request target with a space", func(r *http.Request) { r.URL.RawQuery = "a b" }},
	{"request target with CRLF", func(r *http.Request) { r.URL.RawQuery = "a\r\nX-Injected: 1" }},
	{"Host with a space", func(r *http.Request) { r.Host = "bad host" }},
	{"Host with CRLF", func(r *http.Request) { r.Host = "h\r\nX-Injected: 1" }},
	{"method with a space", func(r *http.Request) { r.Method = "GET /x HTTP/1.1\r\n" }},
}

// TestInvalidRequest checks that a request that would break the framing
// fails and that not one byte of it reaches the upstream.
func TestInvalidRequest(t *testing.T) {
	for _, tt := range invalidRequests {
		t.Run(tt.name, func(t *testing.T) {
			var received atomic.Int64
			rs := startRaw(t, func(rc *rawConn) {
				n, _ := io.Copy(io.Discard, rc.br)
				received.Add(n)
			})
			var d countingDialer
			tr := newTransport(t, &h1.Transport{DialContext: d.DialContext})
			req := newRequest(t, backstop(t), http.MethodGet, rs.URL, nil)
			tt.mod(req)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("RoundTrip(%s) = nil error, want one", tt.name)
			}
			if !strings.Contains(err.Error(), "invalid") {
				t.Errorf("RoundTrip(%s) = %v, want an error saying what is invalid", tt.name, err)
			}
			// Every connection dialed is closed by the transport: once
			// the upstream has seen each one end, it has seen all it
			// will ever get.
			testctx.WaitFor(t, 5*time.Second, "the upstream to see every connection end", func() bool {
				return rs.Finished.Load() == d.calls.Load()
			})
			if n := received.Load(); n != 0 {
				t.Errorf("RoundTrip(%s): upstream received %d bytes, want 0", tt.name, n)
			}
		})
	}
}

// TestInvalidRequestKeepsIdleConn checks that a request refused for its
// own content costs no healthy pooled connection and no dial: the next
// valid request reuses the connection the pool held.
func TestInvalidRequestKeepsIdleConn(t *testing.T) {
	for _, tt := range invalidRequests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {})
			var d countingDialer
			tr := newTransport(t, &h1.Transport{DialContext: d.DialContext})
			get(t, tr, srv.URL)
			req := newRequest(t, backstop(t), http.MethodGet, srv.URL, nil)
			tt.mod(req)
			if resp, err := tr.RoundTrip(req); err == nil {
				resp.Body.Close()
				t.Fatalf("RoundTrip(%s) = nil error, want one", tt.name)
			}
			get(t, tr, srv.URL)
			if n := d.calls.Load(); n != 1 {
				t.Errorf("dials for valid, invalid, valid requests = %d, want 1", n)
			}
		})
	}
}
