package h1_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fetchd/fetchd/server/internal/h1"
)

// TestRoundTripResponse checks that a response comes back as the server
// sent it: status, protocol, repeated header values in order, length and
// body, with the caller's request attached.
func TestRoundTripResponse(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "hello, world")
	})
	tr := newTransport(t, &h1.Transport{})
	url := srv.URL + "/path"
	req := newRequest(t, context.Background(), http.MethodGet, url, nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("RoundTrip(%q) = %v, want nil", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("RoundTrip(%q): read body: %v", url, err)
	}
	if resp.StatusCode != http.StatusCreated || resp.Status != "201 Created" {
		t.Errorf("RoundTrip(%q) status = %d %q, want 201 %q", url, resp.StatusCode, resp.Status, "201 Created")
	}
	if resp.Proto != "HTTP/1.1" || resp.ProtoMajor != 1 || resp.ProtoMinor != 1 {
		t.Errorf("RoundTrip(%q) proto = %q %d.%d, want HTTP/1.1", url, resp.Proto, resp.ProtoMajor, resp.ProtoMinor)
	}
	if got, want := resp.Header["X-Multi"], []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("RoundTrip(%q) X-Multi = %q, want %q", url, got, want)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/plain" {
		t.Errorf("RoundTrip(%q) Content-Type = %q, want %q", url, got, "text/plain")
	}
	if resp.ContentLength != 12 {
		t.Errorf("RoundTrip(%q) ContentLength = %d, want 12", url, resp.ContentLength)
	}
	if string(body) != "hello, world" {
		t.Errorf("RoundTrip(%q) body = %q, want %q", url, body, "hello, world")
	}
	if resp.Request != req {
		t.Errorf("RoundTrip(%q) resp.Request = %p, want the request sent %p", url, resp.Request, req)
	}
	if resp.Uncompressed {
		t.Errorf("RoundTrip(%q) Uncompressed = true, want false", url)
	}
}

// TestResponseFraming checks each way a response can delimit its body,
// and whether the connection then carries the next request.
func TestResponseFraming(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		resp       string // every request on a connection gets it
		closeAfter bool   // the upstream closes the connection after resp
		wantStatus int
		wantBody   string
		wantLength int64
		wantClose  bool
		wantConns  int64 // connections for two requests
	}{
		{"Content-Length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false,
			200, "hello", 5, false, 1},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", false,
			200, "hello world", -1, false, 1},
		{"chunked with trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n0\r\nX-T: v\r\n\r\n", false,
			200, "ok", -1, false, 1},
		{"read to close HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\n\r\nhello", true,
			200, "hello", -1, true, 2},
		{"read to close HTTP/1.1", "GET", "HTTP/1.1 200 OK\r\n\r\nhello", true,
			200, "hello", -1, true, 2},
		{"HTTP/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false,
			200, "ok", 2, false, 1},
		{"Connection: close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true,
			200, "ok", 2, true, 2},
		{"HEAD with Content-Length", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", false,
			200, "", 1000, false, 1},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", false,
			204, "", 0, false, 1},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n", false,
			304, "", 0, false, 1},
		{"100 and 103 skipped", "GET", "HTTP/1.1 100 Continue\r\n\r\n" +
			"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + okResp, false,
			200, "ok", 2, false, 1},
		{"five 1xx skipped", "GET", strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", 5) + okResp, false,
			200, "ok", 2, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := startRaw(t, serveEach(tt.resp, tt.closeAfter))
			tr := newTransport(t, &h1.Transport{})
			for i := range 2 {
				req := newRequest(t, context.Background(), tt.method, rs.URL, nil)
				resp, body := roundTrip(t, tr, req)
				if resp.StatusCode != tt.wantStatus || body != tt.wantBody {
					t.Errorf("RoundTrip(%q) #%d = %d %q, want %d %q", req.URL, i, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
				}
				if resp.ContentLength != tt.wantLength || resp.Close != tt.wantClose {
					t.Errorf("RoundTrip(%q) #%d ContentLength, Close = %d, %v, want %d, %v",
						req.URL, i, resp.ContentLength, resp.Close, tt.wantLength, tt.wantClose)
				}
				if got := resp.Header.Get("Link"); got != "" {
					t.Errorf("RoundTrip(%q) #%d Link = %q: a 1xx header leaked into the final response", req.URL, i, got)
				}
			}
			if got := rs.Accepted.Load(); got != tt.wantConns {
				t.Errorf("connections for two requests = %d, want %d", got, tt.wantConns)
			}
		})
	}
}

// TestResponseErrors checks responses the transport must refuse, in the
// head or in the body.
func TestResponseErrors(t *testing.T) {
	tests := []struct {
		name    string
		resp    string // written, then the upstream closes the connection
		inBody  bool   // the head is fine, reading the body fails
		wantIs  error  // nil: check wantMsg
		wantMsg string
	}{
		{"six 1xx", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6) + okResp, false, h1.ErrBadResponse, "too many 1xx"},
		{"unsolicited 101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false, h1.ErrBadResponse, "101"},
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n\r\n", false, h1.ErrBadResponse, "malformed HTTP"},
		{"malformed header line", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", false, h1.ErrBadResponse, "malformed MIME header"},
		{"closed before a byte", "", false, io.ErrUnexpectedEOF, ""},
		{"truncated head", "HTTP/1.1 200 OK\r\nX-A: b\r\n", false, io.ErrUnexpectedEOF, ""},
		{"bad Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, h1.ErrBadResponse, "Content-Length"},
		{"malformed chunked body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n", true, h1.ErrBadResponse, "chunk"},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", true, io.ErrUnexpectedEOF, ""},
		{"truncated chunked body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", true, io.ErrUnexpectedEOF, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := startRaw(t, serveEach(tt.resp, true))
			tr := newTransport(t, &h1.Transport{})
			req := newRequest(t, backstop(t), http.MethodGet, rs.URL, nil)
			resp, err := tr.RoundTrip(req)
			if tt.inBody {
				if err != nil {
					t.Fatalf("RoundTrip(%q) = %v, want nil", rs.URL, err)
				}
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			} else if err == nil {
				resp.Body.Close()
			}
			switch {
			case err == nil:
				t.Errorf("RoundTrip(%q) = nil error, want one (%v %q)", rs.URL, tt.wantIs, tt.wantMsg)
			case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
				t.Errorf("RoundTrip(%q) = %v, want an error wrapping %v", rs.URL, err, tt.wantIs)
			case tt.wantIs != h1.ErrBadResponse && errors.Is(err, h1.ErrBadResponse):
				t.Errorf("RoundTrip(%q) = %v, want an error not wrapping ErrBadResponse: the connection failed", rs.URL, err)
			case !strings.Contains(err.Error(), tt.wantMsg):
				t.Errorf("RoundTrip(%q) = %v, want an error containing %q", rs.URL, err, tt.wantMsg)
			}
		})
	}
}

// TestDialError checks that a failed dial is returned as is, and that the
// request body is closed.
func TestDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/"
	ln.Close() // nothing listens there now
	tr := newTransport(t, &h1.Transport{})
	rec := &closeRecorder{Reader: strings.NewReader("abc")}
	req := newRequest(t, backstop(t), http.MethodPost, url, nil)
	req.Body, req.ContentLength = rec, 3
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
	var opErr *net.OpError
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &opErr) || opErr.Op != "dial" {
		t.Errorf("RoundTrip(%q) = %v, want a dial error wrapping ECONNREFUSED", url, err)
	}
	if !rec.closed.Load() {
		t.Errorf("RoundTrip(%q) left the request body open, want it closed", url)
	}
}

// TestDialContext checks that a custom DialContext is used, with the
// address the URL names, once per connection.
func TestDialContext(t *testing.T) {
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {})
	var (
		calls int
		addrs []string
	)
	tr := newTransport(t, &h1.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			calls++ // requests are sequential
			addrs = append(addrs, network+" "+addr)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	})
	for range 3 {
		get(t, tr, srv.URL)
	}
	want := []string{"tcp " + srv.Listener.Addr().String()}
	if calls != 1 || !slices.Equal(addrs, want) {
		t.Errorf("DialContext calls for 3 requests = %d %q, want 1 %q", calls, addrs, want)
	}
}

// TestDialAddress checks the address dialed for each form of URL host,
// and that the dialer's error is returned.
func TestDialAddress(t *testing.T) {
	errDial := errors.New("dial refused by test")
	tests := []struct {
		url  string
		want string
	}{
		{"http://example.test/", "example.test:80"},
		{"http://example.test:8080/x", "example.test:8080"},
		{"http://[::1]/", "[::1]:80"},
		{"http://[::1]:8080/", "[::1]:8080"},
		{"http://127.0.0.1/", "127.0.0.1:80"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			var got string
			tr := newTransport(t, &h1.Transport{
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					got = addr
					return nil, errDial
				},
			})
			_, err := tr.RoundTrip(newRequest(t, context.Background(), http.MethodGet, tt.url, nil))
			if !errors.Is(err, errDial) {
				t.Errorf("RoundTrip(%q) = %v, want %v", tt.url, err, errDial)
			}
			if got != tt.want {
				t.Errorf("RoundTrip(%q) dialed %q, want %q", tt.url, got, tt.want)
			}
		})
	}
}

// TestDialBoundedByContext checks that a dial that hangs ends with the
// request's context.
func TestDialBoundedByContext(t *testing.T) {
	tr := newTransport(t, &h1.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	url := "http://example.test/"
	start := time.Now()
	_, err := tr.RoundTrip(newRequest(t, ctx, http.MethodGet, url, nil))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("RoundTrip(%q) = %v, want %v", url, err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d > prompt {
		t.Errorf("RoundTrip(%q) took %v, want under %v", url, d, prompt)
	}
}

// TestCanceledBeforeRoundTrip checks that a request whose context has
// already ended is not dialed, and its body is closed.
func TestCanceledBeforeRoundTrip(t *testing.T) {
	var d countingDialer
	tr := newTransport(t, &h1.Transport{DialContext: d.DialContext})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := &closeRecorder{Reader: strings.NewReader("abc")}
	url := "http://example.test/"
	req := newRequest(t, ctx, http.MethodPost, url, nil)
	req.Body, req.ContentLength = rec, 3
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("RoundTrip(%q) = %v, want %v", url, err, context.Canceled)
	}
	if n := d.calls.Load(); n != 0 {
		t.Errorf("RoundTrip(%q) dialed %d times, want 0", url, n)
	}
	if !rec.closed.Load() {
		t.Errorf("RoundTrip(%q) left the request body open, want it closed", url)
	}
}
