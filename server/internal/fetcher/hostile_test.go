package fetcher

import (
	"bytes"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
)

// drip writes s to w one byte at a time, one every interval, and stops
// early when a write fails (the client went away).
func drip(w io.Writer, s string, every time.Duration) {
	for i := range len(s) {
		time.Sleep(every)
		if _, err := w.Write([]byte{s[i]}); err != nil {
			return
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// writeForever writes chunk to w until a write fails.
func writeForever(w io.Writer, chunk []byte) {
	for {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// silent reads and discards what the client sends until it goes away.
func silent(c net.Conn) { io.Copy(io.Discard, c) }

// rawURL starts a raw upstream with handle and returns its URL.
func rawURL(tb testing.TB, handle func(net.Conn)) string {
	tb.Helper()
	return "http://" + startRaw(tb, handle) + "/"
}

// respond reads the request on c, then writes head.
func respond(c net.Conn, head string) bool {
	if readRequest(c) != nil {
		return false
	}
	_, err := io.WriteString(c, head)
	return err == nil
}

// loopbackWith is the loopback policy with cfg's other fields.
func loopbackWith(cfg Config) Config {
	cfg.Policy = loopbackPolicy()
	return cfg
}

// TestFetchHostile runs fetches against upstreams that misbehave on
// purpose. Each must end with a per-job error or a truncated body within the
// job's timeout, never a stuck Fetch.
func TestFetchHostile(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		const margin = 700 * time.Millisecond // scheduling slack on a loaded machine
		bombMember := gzipped(t, make([]byte, 1<<20))
		tests := []struct {
			name          string
			setup         func(tb testing.TB) (url string, cfg Config)
			timeout       time.Duration // the job's
			maxBody       int64         // 0 means testLimits'
			wantCode      fetchv1.ErrorCode
			wantStatus    int32
			wantBody      string // unless anyBody or wantLen
			anyBody       bool   // some bytes, not checked further
			wantLen       int    // when positive, the body length instead of wantBody
			wantZeros     bool   // the body is zeros, decoded
			wantTruncated bool
			minElapsed    time.Duration
			maxElapsed    time.Duration
		}{
			{
				name: "accepts and never answers",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) { readRequest(c); silent(c) }), loopbackWith(Config{})
				},
				timeout: 300 * time.Millisecond, wantCode: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT,
				minElapsed: 300 * time.Millisecond, maxElapsed: 300*time.Millisecond + margin,
			},
			{
				name: "accepts and never reads",
				setup: func(tb testing.TB) (string, Config) {
					// It reads nothing until well after the job has ended.
					return rawURL(tb, func(c net.Conn) { time.Sleep(600 * time.Millisecond); silent(c) }), loopbackWith(Config{})
				},
				timeout: 300 * time.Millisecond, wantCode: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT,
				minElapsed: 300 * time.Millisecond, maxElapsed: 300*time.Millisecond + margin,
			},
			{
				name: "never answers, ResponseHeaderTimeout",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) { readRequest(c); silent(c) }),
						loopbackWith(Config{ResponseHeaderTimeout: 100 * time.Millisecond})
				},
				timeout: 5 * time.Second, wantCode: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT,
				minElapsed: 100 * time.Millisecond, maxElapsed: 100*time.Millisecond + margin,
			},
			{
				name: "head drips every 200ms, IdleReadTimeout 100ms",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) {
							readRequest(c)
							drip(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200*time.Millisecond)
						}),
						loopbackWith(Config{IdleReadTimeout: 100 * time.Millisecond})
				},
				timeout: 5 * time.Second, wantCode: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT,
				minElapsed: 100 * time.Millisecond, maxElapsed: 300*time.Millisecond + margin,
			},
			{
				name: "body drips every 200ms, IdleReadTimeout 100ms",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) {
							if respond(c, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n") {
								drip(c, strings.Repeat("x", 20), 200*time.Millisecond)
							}
						}),
						loopbackWith(Config{IdleReadTimeout: 100 * time.Millisecond})
				},
				timeout: 5 * time.Second, wantCode: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT, wantStatus: 200,
				minElapsed: 100 * time.Millisecond, maxElapsed: 100*time.Millisecond + margin,
			},
			{
				name: "body drips every 50ms, IdleReadTimeout 1s, job timeout 300ms",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) {
							if respond(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n") {
								drip(c, strings.Repeat("x", 100), 50*time.Millisecond)
							}
						}),
						loopbackWith(Config{IdleReadTimeout: time.Second})
				},
				timeout: 300 * time.Millisecond, wantCode: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT, wantStatus: 200, anyBody: true,
				minElapsed: 300 * time.Millisecond, maxElapsed: 300*time.Millisecond + margin,
			},
			{
				name: "head drips every 50ms, IdleReadTimeout 1s, job timeout 300ms",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) {
							readRequest(c)
							drip(c, "HTTP/1.1 200 OK\r\nX-Slow: "+strings.Repeat("s", 100)+"\r\n\r\n", 50*time.Millisecond)
						}),
						loopbackWith(Config{IdleReadTimeout: time.Second})
				},
				timeout: 300 * time.Millisecond, wantCode: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT,
				minElapsed: 300 * time.Millisecond, maxElapsed: 300*time.Millisecond + margin,
			},
			{
				name: "infinite body",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) {
						if respond(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n") {
							writeForever(c, bytes.Repeat([]byte("x"), 32<<10))
						}
					}), loopbackWith(Config{})
				},
				timeout: 5 * time.Second, maxBody: 64 << 10, wantStatus: 200, wantLen: 64 << 10, wantTruncated: true,
				maxElapsed: margin,
			},
			{
				name: "infinite chunked body",
				setup: func(tb testing.TB) (string, Config) {
					srv, _ := startHTTP(tb, func(w http.ResponseWriter, r *http.Request) {
						w.(http.Flusher).Flush()
						writeForever(w, bytes.Repeat([]byte("x"), 32<<10))
					})
					return srv.URL, loopbackWith(Config{})
				},
				timeout: 5 * time.Second, maxBody: 64 << 10, wantStatus: 200, wantLen: 64 << 10, wantTruncated: true,
				maxElapsed: margin,
			},
			{
				name: "infinite gzip bomb",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) {
						if respond(c, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n") {
							// Concatenated gzip members, each 1 MiB of zeros
							// in about 1 KiB: an endless stream to decode.
							writeForever(c, bombMember)
						}
					}), loopbackWith(Config{})
				},
				timeout: 5 * time.Second, maxBody: 64 << 10, wantStatus: 200, wantLen: 64 << 10, wantZeros: true, wantTruncated: true,
				maxElapsed: margin,
			},
			{
				name: "endless header lines",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) {
						if respond(c, "HTTP/1.1 200 OK\r\n") {
							writeForever(c, []byte("X-Pad: "+strings.Repeat("p", 1000)+"\r\n"))
						}
					}), loopbackWith(Config{})
				},
				timeout: 5 * time.Second, wantCode: fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE,
				maxElapsed: margin,
			},
			{
				name: "one endless header line",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) {
						if respond(c, "HTTP/1.1 200 OK\r\nX-Endless: ") {
							writeForever(c, bytes.Repeat([]byte("e"), 4096))
						}
					}), loopbackWith(Config{})
				},
				timeout: 5 * time.Second, wantCode: fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE,
				maxElapsed: margin,
			},
			{
				name: "Content-Length longer than sent, then silence",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) {
							if respond(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789") {
								silent(c)
							}
						}),
						loopbackWith(Config{IdleReadTimeout: 200 * time.Millisecond})
				},
				timeout: 5 * time.Second, wantCode: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT, wantStatus: 200, wantBody: "0123456789",
				minElapsed: 200 * time.Millisecond, maxElapsed: 200*time.Millisecond + margin,
			},
			{
				// The framing is the upstream's word: the bytes after
				// Content-Length are not part of the body.
				name: "Content-Length shorter than sent",
				setup: func(tb testing.TB) (string, Config) {
					return rawURL(tb, func(c net.Conn) {
						respond(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n0123456789")
					}), loopbackWith(Config{})
				},
				timeout: 5 * time.Second, wantStatus: 200, wantBody: "01234",
				maxElapsed: margin,
			},
			{
				name: "redirect loop",
				setup: func(tb testing.TB) (string, Config) {
					srv, _ := startHTTP(tb, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
					return srv.URL + "/loop", loopbackWith(Config{})
				},
				timeout: 5 * time.Second, wantCode: fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED,
				maxElapsed: margin,
			},
			{
				name: "TLS handshake stalls, TLSHandshakeTimeout 200ms",
				setup: func(tb testing.TB) (string, Config) {
					return "https://" + startRaw(tb, silent) + "/", loopbackWith(Config{TLSHandshakeTimeout: 200 * time.Millisecond})
				},
				timeout: 5 * time.Second, wantCode: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT,
				minElapsed: 200 * time.Millisecond, maxElapsed: 200*time.Millisecond + margin,
			},
			{
				// The idle-read timeout covers the handshake too, under the
				// default TLSHandshakeTimeout (10s) and a longer job timeout.
				name: "TLS handshake stalls, IdleReadTimeout 200ms",
				setup: func(tb testing.TB) (string, Config) {
					return "https://" + startRaw(tb, silent) + "/", loopbackWith(Config{IdleReadTimeout: 200 * time.Millisecond})
				},
				timeout: 5 * time.Second, wantCode: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT,
				minElapsed: 200 * time.Millisecond, maxElapsed: 200*time.Millisecond + margin,
			},
			{
				name: "TLS handshake stalls, job timeout 300ms",
				setup: func(tb testing.TB) (string, Config) {
					return "https://" + startRaw(tb, silent) + "/", loopbackWith(Config{})
				},
				timeout: 300 * time.Millisecond, wantCode: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT,
				minElapsed: 300 * time.Millisecond, maxElapsed: 300*time.Millisecond + margin,
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				url, cfg := tt.setup(t)
				f := newFetcher(t, engine, cfg)
				lim := testLimits
				if tt.maxBody > 0 {
					lim.MaxBodyBytes = tt.maxBody
				}
				start := time.Now()
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url, Timeout: durationpb.New(tt.timeout)}, lim)
				elapsed := time.Since(start)
				t.Logf("Fetch(%q) = %d, %d bytes, truncated %v, error %v, after %v",
					url, resp.GetStatusCode(), len(resp.GetBody()), resp.GetTruncated(), resp.GetError(), elapsed.Round(time.Millisecond))
				wantCode(t, url, resp, tt.wantCode)
				if elapsed < tt.minElapsed || elapsed > tt.maxElapsed {
					t.Errorf("Fetch(%q) returned after %v, want between %v and %v (job timeout %v)",
						url, elapsed, tt.minElapsed, tt.maxElapsed, tt.timeout)
				}
				if resp.GetStatusCode() != tt.wantStatus {
					t.Errorf("Fetch(%q).StatusCode = %d, want %d", url, resp.GetStatusCode(), tt.wantStatus)
				}
				switch body := resp.GetBody(); {
				case tt.anyBody:
					if len(body) == 0 {
						t.Errorf("Fetch(%q) body is empty, want the bytes that arrived", url)
					}
				case tt.wantLen > 0:
					if len(body) != tt.wantLen {
						t.Errorf("Fetch(%q) = %d bytes, want %d", url, len(body), tt.wantLen)
					}
					if tt.wantZeros && bytes.ContainsFunc(body, func(r rune) bool { return r != 0 }) {
						t.Errorf("Fetch(%q) body is not all zeros, want the decoded bomb", url)
					}
				case string(body) != tt.wantBody:
					t.Errorf("Fetch(%q) body = %q, want %q", url, body, tt.wantBody)
				}
				if resp.GetTruncated() != tt.wantTruncated {
					t.Errorf("Fetch(%q).Truncated = %v, want %v", url, resp.GetTruncated(), tt.wantTruncated)
				}
			})
		}
	})
}

// tlsServer is an upstream started by startTLSServer.
type tlsServer struct {
	*httptest.Server
	pool       *x509.CertPool // trusts the server's certificate
	conns      atomic.Int64   // connections accepted
	h2Requests atomic.Int64   // requests served over HTTP/2
}

// startTLSServer starts a TLS upstream for h on 127.0.0.1, offering HTTP/2
// if h2, closed when tb ends.
func startTLSServer(tb testing.TB, h http.HandlerFunc, h2 bool) *tlsServer {
	tb.Helper()
	s := &tlsServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			s.h2Requests.Add(1)
		}
		h(w, r)
	}))
	s.Config.ErrorLog = quietLog
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.EnableHTTP2 = h2
	s.StartTLS()
	tb.Cleanup(s.Close)
	s.pool = x509.NewCertPool()
	s.pool.AddCert(s.Certificate())
	return s
}

// TestFetchIdleReadTLS: the idle-read deadline watches the TCP connection
// under TLS, for HTTP/1.1 and HTTP/2 alike.
func TestFetchIdleReadTLS(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		for _, h2 := range []bool{false, true} {
			name := map[bool]string{false: "HTTP/1.1 over TLS", true: "HTTP/2"}[h2]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				srv := startTLSServer(t, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Length", "20")
					w.WriteHeader(http.StatusOK)
					w.(http.Flusher).Flush()
					drip(w, strings.Repeat("x", 20), 200*time.Millisecond)
				}, h2)
				f := newFetcher(t, engine, loopbackWith(Config{RootCAs: srv.pool, IdleReadTimeout: 100 * time.Millisecond}))
				start := time.Now()
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: srv.URL, Timeout: durationpb.New(5 * time.Second)}, testLimits)
				elapsed := time.Since(start)
				wantCode(t, srv.URL, resp, fetchv1.ErrorCode_ERROR_CODE_TIMEOUT)
				if resp.GetStatusCode() != 200 {
					t.Errorf("Fetch(%q).StatusCode = %d, want 200", srv.URL, resp.GetStatusCode())
				}
				if elapsed > time.Second {
					t.Errorf("Fetch(%q) returned after %v, want about IdleReadTimeout (100ms), well before the job timeout (5s)", srv.URL, elapsed)
				}
				if got, want := srv.h2Requests.Load(), map[bool]int64{false: 0, true: 1}[h2]; got != want {
					t.Errorf("upstream served %d HTTP/2 requests, want %d", got, want)
				}
				t.Logf("Fetch(%q) = %v after %v", srv.URL, resp.GetError(), elapsed.Round(time.Millisecond))
			})
		}
	})
}

// TestFetchIdleReadKeepsPooledConns: a connection idle in the pool for
// longer than IdleReadTimeout is not broken by a stale deadline: the next
// job reuses it.
func TestFetchIdleReadKeepsPooledConns(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		hello := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }
		tests := []struct {
			name  string
			setup func(tb testing.TB) (url string, pool *x509.CertPool, conns func() int64)
		}{
			{"HTTP/1.1", func(tb testing.TB) (string, *x509.CertPool, func() int64) {
				srv, conns := startHTTP(tb, hello)
				return srv.URL, nil, conns.Load
			}},
			{"HTTP/1.1 over TLS", func(tb testing.TB) (string, *x509.CertPool, func() int64) {
				srv := startTLSServer(tb, hello, false)
				return srv.URL, srv.pool, srv.conns.Load
			}},
			{"HTTP/2", func(tb testing.TB) (string, *x509.CertPool, func() int64) {
				srv := startTLSServer(tb, hello, true)
				return srv.URL, srv.pool, srv.conns.Load
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				url, pool, conns := tt.setup(t)
				f := newFetcher(t, engine, loopbackWith(Config{RootCAs: pool, IdleReadTimeout: 100 * time.Millisecond}))
				for i := range 2 {
					if i > 0 {
						time.Sleep(400 * time.Millisecond) // idle in the pool, 4 × IdleReadTimeout
					}
					resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
					wantCode(t, url, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
					if string(resp.GetBody()) != "hello" {
						t.Errorf("Fetch(%q) #%d body = %q, want %q", url, i+1, resp.GetBody(), "hello")
					}
				}
				if n := conns(); n != 1 {
					t.Errorf("upstream saw %d connections for two fetches, want 1: the idle connection must be reused", n)
				}
			})
		}
	})
}
