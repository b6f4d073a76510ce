package fetcher

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
)

// engineNames name the engines' subtests (without the slash of "net/http",
// which -run would read as a subtest level).
var engineNames = map[Engine]string{EngineLean: "lean", EngineNetHTTP: "nethttp"}

// engines are the HTTP engines every test that fetches runs with.
var engines = []Engine{EngineLean, EngineNetHTTP}

// forEachEngine runs test as a parallel subtest per HTTP engine, so that
// one `go test` covers both.
func forEachEngine(t *testing.T, test func(t *testing.T, engine Engine)) {
	t.Helper()
	for _, e := range engines {
		t.Run(engineNames[e], func(t *testing.T) {
			t.Parallel()
			test(t, e)
		})
	}
}

// forEachEngineInTurn is forEachEngine for a test that needs the package to
// itself: the subtests run one after the other.
func forEachEngineInTurn(t *testing.T, test func(t *testing.T, engine Engine)) {
	t.Helper()
	for _, e := range engines {
		t.Run(engineNames[e], func(t *testing.T) { test(t, e) })
	}
}

// TestFetchEarlyResponse: an upstream that answers before it has read the
// request body is heard at once, whether it closes (its answer is the
// result, not the broken pipe or reset the rest of the body meets) or keeps
// the connection open without reading on (the answer is the result, not
// the job timeout the stalled upload would meet). The fetch runs under a
// context of 5 s, half the job's timeout (10 s, testLimits): a result of 401
// means it came well before the job timed out.
func TestFetchEarlyResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body int  // request body bytes
		hold bool // keep the connection open, unread, after answering; else close it
	}{
		{"8 MiB body, closed", 8 << 20, false},
		{"64 KiB body, closed", 64 << 10, false},
		{"8 MiB body, kept open unread", 8 << 20, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachEngine(t, func(t *testing.T, engine Engine) {
				done := make(chan struct{})
				url := rawURL(t, func(c net.Conn) {
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
						return
					}
					if tt.hold {
						// Headers read, body not: answer, and read no more.
						io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 12\r\n\r\nunauthorized")
						<-done
						return
					}
					// Headers read, body not: answer and close, which resets
					// the connection under the body still on its way.
					io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 12\r\n\r\nunauthorized")
				})
				t.Cleanup(func() { close(done) }) // before the upstream's cleanup, which waits for its handler
				f := newFetcher(t, engine, loopbackWith(Config{}))
				req := &fetchv1.FetchRequest{Url: url, Method: "POST", Body: bytes.Repeat([]byte("b"), tt.body)}
				ctx, cancel := context.WithTimeout(testctx.New(t), 5*time.Second)
				defer cancel()
				resp := doFetch(ctx, t, f, req, testLimits)
				wantCode(t, url, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
				if resp.GetStatusCode() != http.StatusUnauthorized || string(resp.GetBody()) != "unauthorized" {
					t.Errorf("Fetch(POST %q) = %d %q, want 401 %q", url, resp.GetStatusCode(), resp.GetBody(), "unauthorized")
				}
			})
		})
	}
}

// connKey is the context key under which connContext stores an upstream's
// server-side connection.
type connKey struct{}

func connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// TestFetchHTTP2ConnectionLost: an HTTP/2 connection that the upstream
// drops while a job uses it is a connection failure, which callers may
// retry, not a bad response.
func TestFetchHTTP2ConnectionLost(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		tests := []struct {
			name    string
			method  string
			body    []byte
			handler http.HandlerFunc
		}{
			{
				name: "closed mid-body", method: http.MethodGet,
				handler: func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Length", "1000")
					w.WriteHeader(http.StatusOK)
					io.WriteString(w, "partial")
					w.(http.Flusher).Flush()
					r.Context().Value(connKey{}).(net.Conn).Close()
				},
			},
			{
				name: "closed before the head, request body unread", method: http.MethodPost,
				body: bytes.Repeat([]byte("b"), 4<<20),
				handler: func(w http.ResponseWriter, r *http.Request) {
					r.Context().Value(connKey{}).(net.Conn).Close()
				},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				srv := httptest.NewUnstartedServer(tt.handler)
				srv.EnableHTTP2 = true
				srv.Config.ConnContext = connContext
				srv.Config.ErrorLog = quietLog
				srv.StartTLS()
				t.Cleanup(srv.Close)
				pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
				f := newFetcher(t, engine, loopbackWith(Config{RootCAs: pool}))
				req := &fetchv1.FetchRequest{Url: srv.URL, Method: tt.method, Body: tt.body, Timeout: durationpb.New(5 * time.Second)}
				resp := doFetch(testctx.New(t), t, f, req, testLimits)
				t.Logf("Fetch(%q) = %d, error %v", srv.URL, resp.GetStatusCode(), resp.GetError())
				wantCode(t, srv.URL, resp, fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE)
			})
		}
	})
}

// TestFetchGzipBroken: a gzip body that is complete by its framing but not
// as gzip is a bad response on both engines; one that the connection cuts
// short is a connection failure.
func TestFetchGzipBroken(t *testing.T) {
	t.Parallel()
	wire := gzipped(t, []byte(strings.Repeat("hello, gzip ", 10000)))
	cut := wire[:len(wire)/2]
	tests := []struct {
		name       string
		head       string // status line and headers, without the blank line
		body       []byte
		closeAfter bool
		want       fetchv1.ErrorCode
	}{
		{"cut short under a correct Content-Length", fmt.Sprintf("Content-Length: %d", len(cut)), cut, false, fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"cut short, chunked", "Transfer-Encoding: chunked", chunked(cut), false, fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"not gzip at all", "Content-Length: 11", []byte("not gzipped"), false, fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"bad checksum", fmt.Sprintf("Content-Length: %d", len(wire)), badChecksum(wire), false, fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"connection closed mid-body", fmt.Sprintf("Content-Length: %d", len(wire)), cut, true, fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachEngine(t, func(t *testing.T, engine Engine) {
				url := rawURL(t, func(c net.Conn) {
					if !respond(c, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"+tt.head+"\r\n\r\n") {
						return
					}
					c.Write(tt.body)
					if !tt.closeAfter {
						silent(c)
					}
				})
				f := newFetcher(t, engine, loopbackWith(Config{}))
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url, Timeout: durationpb.New(5 * time.Second)}, testLimits)
				t.Logf("Fetch(%q) = %d, %d bytes, error %v", url, resp.GetStatusCode(), len(resp.GetBody()), resp.GetError())
				wantCode(t, url, resp, tt.want)
				if resp.GetStatusCode() != http.StatusOK {
					t.Errorf("Fetch(%q).StatusCode = %d, want 200", url, resp.GetStatusCode())
				}
			})
		})
	}
}

// chunked frames b as one chunk and the last chunk.
func chunked(b []byte) []byte {
	return fmt.Appendf(nil, "%x\r\n%s\r\n0\r\n\r\n", len(b), b)
}

// badChecksum returns a copy of the gzip member wire with its CRC-32 wrong.
func badChecksum(wire []byte) []byte {
	b := slices.Clone(wire)
	b[len(b)-8] ^= 0xff
	return b
}

// TestFetchEnginesAgree: what a caller gets from an upstream that sends an
// unasked upgrade or an encoding other than one gzip layer is the same on
// both engines.
func TestFetchEnginesAgree(t *testing.T) {
	t.Parallel()
	inner := []byte(strings.Repeat("two layers ", 100))
	once := gzipped(t, inner)
	twice := gzipped(t, once)
	tests := []struct {
		name       string
		head       string // headers after the status line, each ending in CRLF
		body       []byte
		status     string // default "200 OK"
		want       fetchv1.ErrorCode
		wantBody   []byte
		wantCE     []string // Content-Encoding values in the result
		wantStatus int32
	}{
		{
			name: "unsolicited 101", status: "101 Switching Protocols",
			head: "Connection: Upgrade\r\nUpgrade: websocket\r\n", body: []byte("raw bytes of another protocol"),
			want: fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE,
		},
		{
			name: "Content-Encoding: gzip, gzip", head: "Content-Encoding: gzip, gzip\r\n", body: twice,
			wantBody: twice, wantCE: []string{"gzip, gzip"}, wantStatus: 200,
		},
		{
			name: "Content-Encoding: gzip twice", head: "Content-Encoding: gzip\r\nContent-Encoding: gzip\r\n", body: twice,
			wantBody: twice, wantCE: []string{"gzip", "gzip"}, wantStatus: 200,
		},
		{
			name: "Content-Encoding: br", head: "Content-Encoding: br\r\n", body: []byte("not really brotli"),
			wantBody: []byte("not really brotli"), wantCE: []string{"br"}, wantStatus: 200,
		},
		{
			name: "Content-Encoding: GZIP, two layers sent", head: "Content-Encoding: GZIP\r\n", body: twice,
			wantBody: once, wantStatus: 200,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachEngine(t, func(t *testing.T, engine Engine) {
				status := tt.status
				if status == "" {
					status = "200 OK"
				}
				url := rawURL(t, func(c net.Conn) {
					head := fmt.Sprintf("HTTP/1.1 %s\r\n%sContent-Length: %d\r\n\r\n", status, tt.head, len(tt.body))
					if respond(c, head) {
						c.Write(tt.body)
						silent(c)
					}
				})
				f := newFetcher(t, engine, loopbackWith(Config{}))
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url, Timeout: durationpb.New(5 * time.Second)}, testLimits)
				t.Logf("Fetch(%q) = %d, %d bytes, error %v", url, resp.GetStatusCode(), len(resp.GetBody()), resp.GetError())
				wantCode(t, url, resp, tt.want)
				if resp.GetStatusCode() != tt.wantStatus {
					t.Errorf("Fetch(%q).StatusCode = %d, want %d", url, resp.GetStatusCode(), tt.wantStatus)
				}
				if !bytes.Equal(resp.GetBody(), tt.wantBody) {
					t.Errorf("Fetch(%q) body = %d bytes %.20q, want %d bytes %.20q", url, len(resp.GetBody()), resp.GetBody(), len(tt.wantBody), tt.wantBody)
				}
				if ce := headerValues(resp, "Content-Encoding"); !slices.Equal(ce, tt.wantCE) {
					t.Errorf("Fetch(%q) Content-Encoding = %q, want %q", url, ce, tt.wantCE)
				}
			})
		})
	}
}

// TestFetchGzipHTTP2: gzip over HTTP/2 is asked for and decoded as over
// HTTP/1.1.
func TestFetchGzipHTTP2(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		decoded := []byte(strings.Repeat("hello, h2 gzip ", 100))
		wire := gzipped(t, decoded)
		ae := make(chan []string, 1)
		srv := startTLSServer(t, func(w http.ResponseWriter, r *http.Request) {
			ae <- r.Header.Values("Accept-Encoding")
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(wire)
		}, true)
		f := newFetcher(t, engine, loopbackWith(Config{RootCAs: srv.pool}))
		resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: srv.URL}, testLimits)
		wantCode(t, srv.URL, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
		if !bytes.Equal(resp.GetBody(), decoded) {
			t.Errorf("Fetch(%q) body = %.20q (%d bytes), want the decoded %d bytes", srv.URL, resp.GetBody(), len(resp.GetBody()), len(decoded))
		}
		if ce := headerValues(resp, "Content-Encoding"); len(ce) != 0 {
			t.Errorf("Fetch(%q) Content-Encoding = %q, want none: the body is decoded", srv.URL, ce)
		}
		if got := <-ae; !slices.Equal(got, []string{"gzip"}) {
			t.Errorf("upstream Accept-Encoding = %q, want %q", got, "gzip")
		}
		if srv.h2Requests.Load() != 1 {
			t.Errorf("upstream served %d HTTP/2 requests, want 1", srv.h2Requests.Load())
		}
	})
}
