package fetcher

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server/internal/egress"
)

// testLimits are the limits fetch tests run under unless they test a limit.
var testLimits = Limits{DefaultTimeout: 10 * time.Second, MaxTimeout: time.Minute, MaxBodyBytes: 1 << 20}

// loopbackPolicy opens loopback in both families, and nothing else: tests on
// loopback allow it explicitly, they never switch the guard off.
func loopbackPolicy() *egress.Policy {
	return egress.NewPolicy(egress.AllowCIDRs(netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")))
}

// newFetcher returns New(cfg) with engine as its Engine, closed when tb
// ends. Start the servers the Fetcher talks to before calling it: cleanups
// run last-registered-first, so f.Close drops the Fetcher's idle
// connections before the servers close.
func newFetcher(tb testing.TB, engine Engine, cfg Config) *Fetcher {
	tb.Helper()
	cfg.Engine = engine
	f := New(cfg)
	tb.Cleanup(f.Close)
	return f
}

// loopbackFetcher is newFetcher with the loopback policy and defaults.
func loopbackFetcher(tb testing.TB, engine Engine) *Fetcher {
	tb.Helper()
	return newFetcher(tb, engine, Config{Policy: loopbackPolicy()})
}

// quietLog discards the http.Server's complaints about the misbehaving
// clients and handshakes these tests provoke.
var quietLog = log.New(io.Discard, "", 0)

// startHTTP starts an HTTP server for h on 127.0.0.1, closed when tb ends.
// The returned counter counts the connections the server accepted.
func startHTTP(tb testing.TB, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	tb.Helper()
	return startServer(tb, h, false)
}

// startTLS is startHTTP over TLS with httptest's self-signed certificate.
func startTLS(tb testing.TB, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	tb.Helper()
	return startServer(tb, h, true)
}

func startServer(tb testing.TB, h http.HandlerFunc, useTLS bool) (*httptest.Server, *atomic.Int64) {
	tb.Helper()
	return startServerOn(tb, nil, h, useTLS)
}

// startServerOn is startServer on ln, or on 127.0.0.1 if ln is nil.
func startServerOn(tb testing.TB, ln net.Listener, h http.HandlerFunc, useTLS bool) (*httptest.Server, *atomic.Int64) {
	tb.Helper()
	conns := new(atomic.Int64)
	srv := httptest.NewUnstartedServer(h)
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Config.ErrorLog = quietLog
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	tb.Cleanup(srv.Close)
	return srv, conns
}

// startRaw serves every TCP connection on 127.0.0.1 with handle, which owns
// the connection until it returns (see [testupstream.StartRaw]). It returns
// the listening address.
func startRaw(tb testing.TB, handle func(net.Conn)) string {
	tb.Helper()
	return testupstream.StartRaw(tb, func(c net.Conn, _ <-chan struct{}) { handle(c) }).Addr
}

// readRequest reads one HTTP request head from c and discards its body.
func readRequest(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return err
}

// doFetch validates req under lim and fetches it with f.
func doFetch(ctx context.Context, tb testing.TB, f *Fetcher, req *fetchv1.FetchRequest, lim Limits) *fetchv1.FetchResponse {
	tb.Helper()
	job, err := Validate(req, lim)
	if err != nil {
		tb.Fatalf("Validate(%q) = %v, want nil", req.GetUrl(), err)
	}
	resp := &fetchv1.FetchResponse{}
	f.Fetch(ctx, job, resp)
	if resp.GetDuration() == nil || resp.GetDuration().AsDuration() <= 0 {
		tb.Errorf("Fetch(%q).Duration = %v, want > 0", req.GetUrl(), resp.GetDuration())
	}
	return resp
}

// wantCode checks resp's error code; UNSPECIFIED means no error at all. A set
// error must carry a message.
func wantCode(tb testing.TB, url string, resp *fetchv1.FetchResponse, want fetchv1.ErrorCode) {
	tb.Helper()
	got := resp.GetError()
	if want == fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
		if got != nil {
			tb.Fatalf("Fetch(%q).Error = %v, want nil", url, got)
		}
		return
	}
	if got.GetCode() != want {
		tb.Fatalf("Fetch(%q).Error = %v, want code %v", url, got, want)
	}
	if got.GetMessage() == "" {
		tb.Errorf("Fetch(%q).Error.Message is empty, want a description", url)
	}
}

// headerValues returns the values of name in resp's headers, in order.
func headerValues(resp *fetchv1.FetchResponse, name string) []string {
	var vs []string
	for _, h := range resp.GetHeaders() {
		if h.GetName() == name {
			vs = append(vs, h.GetValue())
		}
	}
	return vs
}

func TestFetchStatus(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		tests := []struct {
			name   string
			status int
			body   string
		}{
			{"200 with body", http.StatusOK, "hello, world"},
			{"200 empty", http.StatusOK, ""},
			{"204", http.StatusNoContent, ""},
			{"404 is a result", http.StatusNotFound, "no such page"},
			{"500 is a result", http.StatusInternalServerError, "upstream broke"},
		}
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			var status int
			fmt.Sscan(r.URL.Query().Get("status"), &status)
			w.WriteHeader(status)
			io.WriteString(w, r.URL.Query().Get("body"))
		})
		f := loopbackFetcher(t, engine)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				url := fmt.Sprintf("%s/?status=%d&body=%s", srv.URL, tt.status, strings.ReplaceAll(tt.body, " ", "+"))
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
				wantCode(t, url, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
				if resp.GetStatusCode() != int32(tt.status) {
					t.Errorf("Fetch(%q).StatusCode = %d, want %d", url, resp.GetStatusCode(), tt.status)
				}
				if string(resp.GetBody()) != tt.body || resp.GetTruncated() {
					t.Errorf("Fetch(%q) body = %q, truncated %v; want %q, false", url, resp.GetBody(), resp.GetTruncated(), tt.body)
				}
				if resp.GetFinalUrl() != url {
					t.Errorf("Fetch(%q).FinalUrl = %q, want %q", url, resp.GetFinalUrl(), url)
				}
			})
		}
	})
}

func TestFetchResponseHeaders(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Add("X-Zeta", "last")
			h.Add("Set-Cookie", "a=1")
			h.Add("Set-Cookie", "b=2")
			h.Add("Set-Cookie", "c=3")
			h.Add("X-Alpha", "first")
			h.Set("Content-Type", "text/plain")
			io.WriteString(w, "ok")
		})
		f := loopbackFetcher(t, engine)
		resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: srv.URL}, testLimits)
		wantCode(t, srv.URL, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
		names := make([]string, 0, len(resp.GetHeaders()))
		for _, h := range resp.GetHeaders() {
			names = append(names, h.GetName())
		}
		if !slices.IsSorted(names) {
			t.Errorf("Fetch(%q) header names = %q, want sorted", srv.URL, names)
		}
		for _, tt := range []struct {
			name string
			want []string
		}{
			{"Set-Cookie", []string{"a=1", "b=2", "c=3"}},
			{"X-Alpha", []string{"first"}},
			{"X-Zeta", []string{"last"}},
			{"Content-Type", []string{"text/plain"}},
			{"Content-Length", []string{"2"}},
		} {
			if got := headerValues(resp, tt.name); !slices.Equal(got, tt.want) {
				t.Errorf("Fetch(%q) header %s = %q, want %q", srv.URL, tt.name, got, tt.want)
			}
		}
	})
}

// seen is what an upstream received.
type seen struct {
	method string
	header http.Header
	body   string
}

// recordingServer starts an upstream that records each request it receives
// on the returned channel and answers with "ok".
func recordingServer(tb testing.TB) (*httptest.Server, <-chan seen) {
	tb.Helper()
	ch := make(chan seen, 16)
	srv, _ := startHTTP(tb, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- seen{method: r.Method, header: r.Header.Clone(), body: string(b)}
		io.WriteString(w, "ok")
	})
	return srv, ch
}

// received returns the next request the recording server saw.
func received(tb testing.TB, ch <-chan seen) seen {
	tb.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		tb.Fatal("upstream saw no request, want one")
		return seen{}
	}
}

func TestFetchRequest(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		srv, ch := recordingServer(t)
		f := loopbackFetcher(t, engine)
		tests := []struct {
			name       string
			req        *fetchv1.FetchRequest
			wantMethod string
			wantBody   string // of the upstream request
			wantHeader http.Header
			wantResp   string // body of the result
		}{
			{
				name:       "default GET with default User-Agent",
				req:        &fetchv1.FetchRequest{Url: srv.URL},
				wantMethod: "GET",
				wantHeader: http.Header{"User-Agent": {"fetchd"}},
				wantResp:   "ok",
			},
			{
				name:       "caller User-Agent kept",
				req:        &fetchv1.FetchRequest{Url: srv.URL, Headers: hdrs("user-agent", "my-agent/1.0")},
				wantMethod: "GET",
				wantHeader: http.Header{"User-Agent": {"my-agent/1.0"}},
				wantResp:   "ok",
			},
			{
				name: "caller headers reach the upstream in order",
				req: &fetchv1.FetchRequest{Url: srv.URL, Headers: hdrs(
					"X-Api-Key", "secret", "X-Multi", "1", "x-multi", "2", "Accept", "application/json", "Authorization", "Bearer t")},
				wantMethod: "GET",
				wantHeader: http.Header{
					"X-Api-Key": {"secret"}, "X-Multi": {"1", "2"}, "Accept": {"application/json"},
					"Authorization": {"Bearer t"}, "User-Agent": {"fetchd"},
				},
				wantResp: "ok",
			},
			{
				name:       "HEAD",
				req:        &fetchv1.FetchRequest{Url: srv.URL, Method: "HEAD"},
				wantMethod: "HEAD",
				wantHeader: http.Header{"User-Agent": {"fetchd"}},
				wantResp:   "",
			},
			{
				name:       "POST body reaches upstream",
				req:        &fetchv1.FetchRequest{Url: srv.URL, Method: "post", Body: []byte(`{"a":1}`), Headers: hdrs("Content-Type", "application/json")},
				wantMethod: "POST",
				wantBody:   `{"a":1}`,
				wantHeader: http.Header{"Content-Type": {"application/json"}, "Content-Length": {"7"}},
				wantResp:   "ok",
			},
			{
				name:       "PUT body reaches upstream",
				req:        &fetchv1.FetchRequest{Url: srv.URL, Method: "PUT", Body: []byte("x")},
				wantMethod: "PUT",
				wantBody:   "x",
				wantResp:   "ok",
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp := doFetch(testctx.New(t), t, f, tt.req, testLimits)
				wantCode(t, tt.req.GetUrl(), resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
				if resp.GetStatusCode() != 200 || string(resp.GetBody()) != tt.wantResp {
					t.Errorf("Fetch(%q) = %d %q, want 200 %q", tt.req.GetUrl(), resp.GetStatusCode(), resp.GetBody(), tt.wantResp)
				}
				got := received(t, ch)
				if got.method != tt.wantMethod {
					t.Errorf("upstream method = %q, want %q", got.method, tt.wantMethod)
				}
				if got.body != tt.wantBody {
					t.Errorf("upstream body = %q, want %q", got.body, tt.wantBody)
				}
				for k, want := range tt.wantHeader {
					if g := got.header[k]; !slices.Equal(g, want) {
						t.Errorf("upstream header %s = %q, want %q", k, g, want)
					}
				}
			})
		}
	})
}

func TestFetchConfigUserAgent(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		srv, ch := recordingServer(t)
		f := newFetcher(t, engine, Config{Policy: loopbackPolicy(), UserAgent: "fetchd-test/2"})
		resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: srv.URL}, testLimits)
		wantCode(t, srv.URL, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
		if got := received(t, ch).header.Get("User-Agent"); got != "fetchd-test/2" {
			t.Errorf("upstream User-Agent = %q, want %q", got, "fetchd-test/2")
		}
	})
}

func TestFetchBodyCap(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		const max = 64
		tests := []struct {
			name          string
			size          int
			chunked       bool
			maxBody       int64
			wantLen       int
			wantTruncated bool
		}{
			{"shorter than cap", max - 1, false, max, max - 1, false},
			{"exactly cap", max, false, max, max, false},
			{"one over cap", max + 1, false, max, max, true},
			{"far over cap", 1 << 20, false, max, max, true},
			{"chunked shorter than cap", max - 1, true, max, max - 1, false},
			{"chunked exactly cap", max, true, max, max, false},
			{"chunked one over cap", max + 1, true, max, max, true},
			{"chunked far over cap", 1 << 20, true, max, max, true},
			{"no cap", 100 << 10, false, 0, 100 << 10, false},
			{"no cap chunked", 100 << 10, true, 0, 100 << 10, false},
		}
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			var size int
			fmt.Sscan(r.URL.Query().Get("size"), &size)
			body := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
			if r.URL.Query().Get("chunked") == "true" {
				// Flushing before the end leaves the length unknown: chunked.
				w.Write(body[:size/2])
				w.(http.Flusher).Flush()
				w.Write(body[size/2:])
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(size))
			w.Write(body)
		})
		f := loopbackFetcher(t, engine)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				url := fmt.Sprintf("%s/?size=%d&chunked=%v", srv.URL, tt.size, tt.chunked)
				lim := testLimits
				lim.MaxBodyBytes = tt.maxBody
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, lim)
				wantCode(t, url, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
				if len(resp.GetBody()) != tt.wantLen || resp.GetTruncated() != tt.wantTruncated {
					t.Errorf("Fetch(%q) = %d bytes, truncated %v; want %d, %v", url, len(resp.GetBody()), resp.GetTruncated(), tt.wantLen, tt.wantTruncated)
				}
				want := bytes.Repeat([]byte("0123456789abcdef"), tt.wantLen/16+1)[:tt.wantLen]
				if !bytes.Equal(resp.GetBody(), want) {
					t.Errorf("Fetch(%q) body is not the first %d bytes sent", url, tt.wantLen)
				}
				if cl := headerValues(resp, "Content-Length"); tt.chunked && len(cl) != 0 {
					t.Errorf("Fetch(%q) Content-Length = %q, want none (chunked)", url, cl)
				}
			})
		}
	})
}

func TestFetchBlockedByDefault(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		srv, conns := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "leaked") })
		f := newFetcher(t, engine, Config{})
		for _, url := range []string{
			srv.URL,
			strings.Replace(srv.URL, "127.0.0.1", "127.0.0.2", 1),
			strings.Replace(srv.URL, "127.0.0.1", "[::ffff:127.0.0.1]", 1),
			strings.Replace(srv.URL, "127.0.0.1", "[::1]", 1),
			// Names are covered in TestFetchDNS, against a local fake resolver:
			// tests send no DNS query off loopback.
		} {
			t.Run(url, func(t *testing.T) {
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
				wantCode(t, url, resp, fetchv1.ErrorCode_ERROR_CODE_BLOCKED)
				if resp.GetStatusCode() != 0 || len(resp.GetBody()) != 0 || resp.GetFinalUrl() != "" {
					t.Errorf("Fetch(%q) = status %d, body %q, final URL %q; want no response", url, resp.GetStatusCode(), resp.GetBody(), resp.GetFinalUrl())
				}
			})
		}
		if n := conns.Load(); n != 0 {
			t.Errorf("upstream saw %d connections, want 0: the guard must refuse before connect", n)
		}
	})
}

func TestFetchRedirectToMetadataBlocked(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		hits := new(atomic.Int64)
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		})
		// Only IPv4 loopback is open: the upstream is allowed, the metadata
		// address is not.
		f := newFetcher(t, engine, Config{Policy: egress.NewPolicy(egress.AllowCIDRs(netip.MustParsePrefix("127.0.0.0/8")))})
		start := time.Now()
		resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: srv.URL}, testLimits)
		wantCode(t, srv.URL, resp, fetchv1.ErrorCode_ERROR_CODE_BLOCKED)
		if msg := resp.GetError().GetMessage(); !strings.Contains(msg, "169.254.169.254") {
			t.Errorf("Fetch(%q).Error.Message = %q, want it to name 169.254.169.254", srv.URL, msg)
		}
		// Refused in ControlContext, before connect: no SYN leaves, so nothing
		// can wait on an unreachable or answering metadata address.
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Fetch(%q) took %v, want an immediate refusal", srv.URL, d)
		}
		if hits.Load() != 1 {
			t.Errorf("upstream hits = %d, want 1", hits.Load())
		}
	})
}

// closedPort returns a loopback address that refuses connections.
func closedPort(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestFetchConnectionFailure(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		tests := []struct {
			name       string
			addr       func(testing.TB) string
			wantStatus int32
			wantBody   string
		}{
			{
				name: "closed port",
				addr: closedPort,
			},
			{
				name: "reset after reading the request",
				addr: func(tb testing.TB) string {
					return startRaw(tb, func(c net.Conn) {
						readRequest(c)
						c.(*net.TCPConn).SetLinger(0) // close sends RST
					})
				},
			},
			{
				name: "closed after reading the request",
				addr: func(tb testing.TB) string {
					return startRaw(tb, func(c net.Conn) { readRequest(c) })
				},
			},
			{
				name: "body shorter than Content-Length",
				addr: func(tb testing.TB) string {
					return startRaw(tb, func(c net.Conn) {
						readRequest(c)
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
					})
				},
				wantStatus: 200,
				wantBody:   "0123456789",
			},
			{
				name: "reset mid-body",
				addr: func(tb testing.TB) string {
					return startRaw(tb, func(c net.Conn) {
						readRequest(c)
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
						time.Sleep(50 * time.Millisecond) // let the head and the bytes arrive first
						c.(*net.TCPConn).SetLinger(0)
					})
				},
				wantStatus: 200,
				wantBody:   "0123456789",
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				url := "http://" + tt.addr(t) + "/"
				f := loopbackFetcher(t, engine)
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
				wantCode(t, url, resp, fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE)
				if resp.GetStatusCode() != tt.wantStatus || string(resp.GetBody()) != tt.wantBody {
					t.Errorf("Fetch(%q) = %d %q, want %d %q", url, resp.GetStatusCode(), resp.GetBody(), tt.wantStatus, tt.wantBody)
				}
			})
		}
	})
}

// TestFetchLyingContentLength: a hostile upstream claims an enormous body.
// Without a cap (MaxBody 0, "no cap beyond memory") the fetch must still
// fail cleanly with what arrived, not panic or allocate what was claimed.
func TestFetchLyingContentLength(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		addr := startRaw(t, func(c net.Conn) {
			readRequest(c)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4611686018427387904\r\n\r\nhello")
		})
		url := "http://" + addr + "/"
		f := loopbackFetcher(t, engine)
		for _, max := range []int64{16, 0} {
			t.Run(fmt.Sprintf("MaxBody=%d", max), func(t *testing.T) {
				lim := testLimits
				lim.MaxBodyBytes = max
				var resp *fetchv1.FetchResponse
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Fatalf("Fetch(%q) with MaxBody %d panicked: %v; want a CONNECTION_FAILURE result", url, max, p)
						}
					}()
					resp = doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, lim)
				}()
				wantCode(t, url, resp, fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE)
				if resp.GetStatusCode() != 200 || string(resp.GetBody()) != "hello" {
					t.Errorf("Fetch(%q) = %d %q, want 200 %q", url, resp.GetStatusCode(), resp.GetBody(), "hello")
				}
			})
		}
	})
}

func TestFetchTimeout(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		tests := []struct {
			name       string
			timeout    time.Duration
			handler    http.HandlerFunc
			wantStatus int32
			wantBody   string
		}{
			{
				name:    "no response head",
				timeout: 100 * time.Millisecond,
				handler: func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-r.Context().Done():
					case <-time.After(2 * time.Second):
					}
				},
			},
			{
				// Long enough for the head to arrive first on a loaded machine.
				name:    "body stalls",
				timeout: 500 * time.Millisecond,
				handler: func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Length", "100")
					io.WriteString(w, "start")
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
					case <-time.After(2 * time.Second):
					}
				},
				wantStatus: 200,
				wantBody:   "start",
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				srv, _ := startHTTP(t, tt.handler)
				f := loopbackFetcher(t, engine)
				req := &fetchv1.FetchRequest{Url: srv.URL, Timeout: durationpb.New(tt.timeout)}
				start := time.Now()
				resp := doFetch(testctx.New(t), t, f, req, testLimits)
				elapsed := time.Since(start)
				wantCode(t, srv.URL, resp, fetchv1.ErrorCode_ERROR_CODE_TIMEOUT)
				if elapsed > 1500*time.Millisecond {
					t.Errorf("Fetch(%q) with timeout %v returned after %v, want < 1.5s", srv.URL, tt.timeout, elapsed)
				}
				if resp.GetStatusCode() != tt.wantStatus || string(resp.GetBody()) != tt.wantBody {
					t.Errorf("Fetch(%q) = %d %q, want %d %q", srv.URL, resp.GetStatusCode(), resp.GetBody(), tt.wantStatus, tt.wantBody)
				}
			})
		}
	})
}

func TestFetchCancelled(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		ctx, cancel := context.WithCancel(testctx.New(t))
		defer cancel()
		upstreamDone := make(chan bool, 1) // true if the upstream saw its request end
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			cancel() // the caller goes away while the fetch waits for the answer
			select {
			case <-r.Context().Done():
				upstreamDone <- true
			case <-time.After(5 * time.Second):
				upstreamDone <- false
			}
		})
		f := loopbackFetcher(t, engine)
		start := time.Now()
		resp := doFetch(ctx, t, f, &fetchv1.FetchRequest{Url: srv.URL}, testLimits)
		wantCode(t, srv.URL, resp, fetchv1.ErrorCode_ERROR_CODE_CANCELLED)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Fetch(%q) returned %v after cancel, want promptly", srv.URL, d)
		}
		if !<-upstreamDone {
			t.Errorf("upstream request context did not end after the caller cancelled")
		}
	})
}

func TestFetchTLS(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		srv, _ := startTLS(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secure") })
		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		tests := []struct {
			name     string
			cfg      Config
			wantCode fetchv1.ErrorCode
			wantBody string
		}{
			{"self-signed with system roots", Config{Policy: loopbackPolicy()}, fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE, ""},
			{"self-signed with its certificate as root", Config{Policy: loopbackPolicy(), RootCAs: pool}, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, "secure"},
			{"other root", Config{Policy: loopbackPolicy(), RootCAs: x509.NewCertPool()}, fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f := newFetcher(t, engine, tt.cfg)
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: srv.URL}, testLimits)
				wantCode(t, srv.URL, resp, tt.wantCode)
				if string(resp.GetBody()) != tt.wantBody {
					t.Errorf("Fetch(%q) body = %q, want %q", srv.URL, resp.GetBody(), tt.wantBody)
				}
			})
		}
		t.Run("plain HTTP server", func(t *testing.T) {
			// https:// to a server that speaks plain HTTP fails the handshake.
			plain, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {})
			f := loopbackFetcher(t, engine)
			url := strings.Replace(plain.URL, "http://", "https://", 1)
			resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
			wantCode(t, url, resp, fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE)
		})
	})
}

func TestFetchBadResponse(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		tests := []struct {
			name string
			addr func(testing.TB) string
			cfg  Config
		}{
			{
				name: "response header over MaxResponseHeaderBytes",
				addr: func(tb testing.TB) string {
					srv, _ := startHTTP(tb, func(w http.ResponseWriter, r *http.Request) {
						w.Header().Set("X-Big", strings.Repeat("a", 16<<10))
					})
					return srv.Listener.Addr().String()
				},
				cfg: Config{Policy: loopbackPolicy(), MaxResponseHeaderBytes: 4 << 10},
			},
			{
				name: "garbage instead of a status line",
				addr: func(tb testing.TB) string {
					return startRaw(tb, func(c net.Conn) {
						readRequest(c)
						io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n\r\n")
					})
				},
				cfg: Config{Policy: loopbackPolicy()},
			},
			{
				name: "malformed header line",
				addr: func(tb testing.TB) string {
					return startRaw(tb, func(c net.Conn) {
						readRequest(c)
						io.WriteString(c, "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")
					})
				},
				cfg: Config{Policy: loopbackPolicy()},
			},
			{
				name: "invalid Content-Length",
				addr: func(tb testing.TB) string {
					return startRaw(tb, func(c net.Conn) {
						readRequest(c)
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n")
					})
				},
				cfg: Config{Policy: loopbackPolicy()},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				url := "http://" + tt.addr(t) + "/"
				f := newFetcher(t, engine, tt.cfg)
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
				wantCode(t, url, resp, fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE)
			})
		}
	})
}

func TestFetchRedirect(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		// other is a second upstream: same address, another port, so another
		// host.
		other, otherCh := recordingServer(t)
		hits := new(atomic.Int64)
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			switch r.URL.Path {
			case "/loop":
				http.Redirect(w, r, "/loop", http.StatusFound)
			case "/a":
				http.Redirect(w, r, "/b", http.StatusMovedPermanently)
			case "/b":
				http.Redirect(w, r, "/final", http.StatusFound)
			case "/final":
				b, _ := io.ReadAll(r.Body)
				fmt.Fprintf(w, "%s %s", r.Method, b)
			case "/ftp":
				http.Redirect(w, r, "ftp://127.0.0.1/file", http.StatusFound)
			case "/file":
				http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
			case "/307-same":
				http.Redirect(w, r, "/final", http.StatusTemporaryRedirect)
			case "/307-other", "/308-other":
				code := http.StatusTemporaryRedirect
				if r.URL.Path == "/308-other" {
					code = http.StatusPermanentRedirect
				}
				http.Redirect(w, r, other.URL+"/stolen", code)
			case "/302-other":
				http.Redirect(w, r, other.URL+"/moved", http.StatusFound)
			}
		})
		f := newFetcher(t, engine, Config{Policy: loopbackPolicy(), MaxRedirects: 3})
		tests := []struct {
			name      string
			path      string
			method    string
			body      string
			wantCode  fetchv1.ErrorCode
			wantBody  string
			wantFinal string // URL, when a response is expected
			wantHits  int64  // requests to srv
			wantOther bool   // whether other must see a request
		}{
			{name: "two hops followed", path: "/a", wantBody: "GET ", wantFinal: srv.URL + "/final", wantHits: 3},
			{name: "loop over MaxRedirects", path: "/loop", wantCode: fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED, wantHits: 4},
			{name: "to ftp", path: "/ftp", wantCode: fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED, wantHits: 1},
			{name: "to file", path: "/file", wantCode: fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED, wantHits: 1},
			{name: "307 POST with body to same host", path: "/307-same", method: "POST", body: "payload", wantBody: "POST payload", wantFinal: srv.URL + "/final", wantHits: 2},
			{name: "307 POST with body to other host", path: "/307-other", method: "POST", body: "payload", wantCode: fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED, wantHits: 1},
			{name: "308 PUT with body to other host", path: "/308-other", method: "PUT", body: "payload", wantCode: fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED, wantHits: 1},
			{name: "307 GET without body to other host", path: "/307-other", wantBody: "ok", wantFinal: other.URL + "/stolen", wantHits: 1, wantOther: true},
			{name: "302 POST to other host becomes GET", path: "/302-other", method: "POST", body: "payload", wantBody: "ok", wantFinal: other.URL + "/moved", wantHits: 1, wantOther: true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hits.Store(0)
				url := srv.URL + tt.path
				req := &fetchv1.FetchRequest{Url: url, Method: tt.method, Body: []byte(tt.body)}
				resp := doFetch(testctx.New(t), t, f, req, testLimits)
				wantCode(t, url, resp, tt.wantCode)
				if string(resp.GetBody()) != tt.wantBody {
					t.Errorf("Fetch(%q) body = %q, want %q", url, resp.GetBody(), tt.wantBody)
				}
				if resp.GetFinalUrl() != tt.wantFinal {
					t.Errorf("Fetch(%q).FinalUrl = %q, want %q", url, resp.GetFinalUrl(), tt.wantFinal)
				}
				if tt.wantFinal != "" && resp.GetStatusCode() != 200 {
					t.Errorf("Fetch(%q).StatusCode = %d, want 200", url, resp.GetStatusCode())
				}
				if got := hits.Load(); got != tt.wantHits {
					t.Errorf("Fetch(%q): upstream saw %d requests, want %d", url, got, tt.wantHits)
				}
				if tt.wantOther {
					if s := received(t, otherCh); s.method != "GET" || s.body != "" {
						t.Errorf("Fetch(%q): other host saw %s with body %q, want GET without body", url, s.method, s.body)
					}
				}
				select {
				case s := <-otherCh:
					t.Errorf("Fetch(%q): other host saw an unexpected %s with body %q", url, s.method, s.body)
				default:
				}
			})
		}
	})
}

func TestFetchRedirectHeaders(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		other, otherCh := recordingServer(t)
		sameCh := make(chan seen, 4)
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/to-other":
				http.Redirect(w, r, other.URL+"/landing", http.StatusFound)
			case "/to-same":
				http.Redirect(w, r, "/landing", http.StatusFound)
			case "/landing":
				sameCh <- seen{method: r.Method, header: r.Header.Clone()}
			}
		})
		f := loopbackFetcher(t, engine)
		headers := hdrs("X-Api-Key", "secret", "Authorization", "Bearer t", "Cookie", "session=1",
			"User-Agent", "agent/1", "Accept", "text/plain", "Accept-Language", "en")
		tests := []struct {
			name      string
			path      string
			ch        <-chan seen
			wantKept  []string
			wantGone  []string
			wantFinal string
		}{
			{
				name:      "other host",
				path:      "/to-other",
				ch:        otherCh,
				wantKept:  []string{"User-Agent", "Accept", "Accept-Language"},
				wantGone:  []string{"X-Api-Key", "Authorization", "Cookie"},
				wantFinal: other.URL + "/landing",
			},
			{
				name:      "same host",
				path:      "/to-same",
				ch:        sameCh,
				wantKept:  []string{"User-Agent", "Accept", "Accept-Language", "X-Api-Key", "Authorization", "Cookie"},
				wantFinal: srv.URL + "/landing",
			},
		}
		want := http.Header{}
		for _, h := range headers {
			want.Add(h.GetName(), h.GetValue())
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				url := srv.URL + tt.path
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url, Headers: headers}, testLimits)
				wantCode(t, url, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
				if resp.GetFinalUrl() != tt.wantFinal {
					t.Errorf("Fetch(%q).FinalUrl = %q, want %q", url, resp.GetFinalUrl(), tt.wantFinal)
				}
				got := received(t, tt.ch)
				for _, k := range tt.wantKept {
					if !slices.Equal(got.header[k], want[k]) {
						t.Errorf("Fetch(%q): redirected request header %s = %q, want %q", url, k, got.header[k], want[k])
					}
				}
				for _, k := range tt.wantGone {
					if v, ok := got.header[k]; ok {
						t.Errorf("Fetch(%q): redirected request header %s = %q, want it dropped", url, k, v)
					}
				}
			})
		}
	})
}

// gzipped returns b compressed with gzip.
func gzipped(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// TestFetchGzip: gzip is decoded and the body cap counts decoded bytes,
// whatever Accept-Encoding the caller sent: the caller's is dropped so that
// the transport asks for gzip itself and decodes it.
func TestFetchGzip(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		small := []byte(strings.Repeat("hello, gzip ", 100))
		bomb := make([]byte, 10<<20) // 10 MiB of zeros
		tests := []struct {
			name           string
			decoded        []byte
			acceptEncoding string // sent by the caller; "" for none
			maxBody        int64
			wantLen        int
			wantTruncated  bool
		}{
			{"decoded", small, "", 1 << 20, len(small), false},
			{"decoded, caller asked for gzip", small, "gzip", 1 << 20, len(small), false},
			{"bomb capped after decoding", bomb, "", 64 << 10, 64 << 10, true},
			{"bomb capped after decoding, caller asked for gzip", bomb, "gzip", 64 << 10, 64 << 10, true},
			{"bomb capped after decoding, caller asked for GZIP;q=1, br", bomb, "GZIP;q=1, br", 64 << 10, 64 << 10, true},
			{"bomb capped after decoding, caller asked for identity", bomb, "identity", 64 << 10, 64 << 10, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				wire := gzipped(t, tt.decoded)
				if len(wire) > 16<<10 {
					t.Fatalf("gzip of %d bytes is %d bytes, want a small body on the wire", len(tt.decoded), len(wire))
				}
				acceptEncoding := make(chan []string, 1)
				srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
					acceptEncoding <- r.Header.Values("Accept-Encoding")
					w.Header().Set("Content-Encoding", "gzip")
					w.Header().Set("Content-Length", fmt.Sprint(len(wire)))
					w.Write(wire)
				})
				f := loopbackFetcher(t, engine)
				lim := testLimits
				lim.MaxBodyBytes = tt.maxBody
				req := &fetchv1.FetchRequest{Url: srv.URL}
				if tt.acceptEncoding != "" {
					req.Headers = hdrs("Accept-Encoding", tt.acceptEncoding)
				}
				resp := doFetch(testctx.New(t), t, f, req, lim)
				wantCode(t, srv.URL, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
				if len(resp.GetBody()) != tt.wantLen || resp.GetTruncated() != tt.wantTruncated {
					t.Errorf("Fetch(%q) = %d bytes, truncated %v; want %d, %v (%d bytes on the wire)",
						srv.URL, len(resp.GetBody()), resp.GetTruncated(), tt.wantLen, tt.wantTruncated, len(wire))
				}
				if !bytes.Equal(resp.GetBody(), tt.decoded[:tt.wantLen]) {
					t.Errorf("Fetch(%q) body is not the decoded body", srv.URL)
				}
				if ce := headerValues(resp, "Content-Encoding"); len(ce) != 0 {
					t.Errorf("Fetch(%q) Content-Encoding = %q, want none: the body is decoded", srv.URL, ce)
				}
				if ae := <-acceptEncoding; !slices.Equal(ae, []string{"gzip"}) {
					t.Errorf("upstream Accept-Encoding = %q, want only the transport's %q", ae, "gzip")
				}
			})
		}
	})
}

func TestFetchRedirectCap(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		hits := new(atomic.Int64)
		// /hop/N redirects to /hop/N-1; /hop/0 answers.
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			var n int
			fmt.Sscan(strings.TrimPrefix(r.URL.Path, "/hop/"), &n)
			if n > 0 {
				http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
				return
			}
			io.WriteString(w, "done")
		})
		tests := []struct {
			name         string
			maxRedirects int
			hops         int
			wantCode     fetchv1.ErrorCode
			wantHits     int64
		}{
			{"default allows 10", 0, 10, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, 11},
			{"default refuses 11", 0, 11, fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED, 11},
			{"3 allows 3", 3, 3, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, 4},
			{"3 refuses 4", 3, 4, fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED, 4},
			{"negative follows none", -1, 1, fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED, 1},
			{"negative, no redirect", -1, 0, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, 1},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hits.Store(0)
				f := newFetcher(t, engine, Config{Policy: loopbackPolicy(), MaxRedirects: tt.maxRedirects})
				url := fmt.Sprintf("%s/hop/%d", srv.URL, tt.hops)
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
				wantCode(t, url, resp, tt.wantCode)
				if got := hits.Load(); got != tt.wantHits {
					t.Errorf("Fetch(%q) with MaxRedirects %d: upstream saw %d requests, want %d", url, tt.maxRedirects, got, tt.wantHits)
				}
				if tt.wantCode == fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
					if want := srv.URL + "/hop/0"; resp.GetFinalUrl() != want || string(resp.GetBody()) != "done" {
						t.Errorf("Fetch(%q) = %q at %q, want %q at %q", url, resp.GetBody(), resp.GetFinalUrl(), "done", want)
					}
				}
			})
		}
	})
}
