package h1_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fetchd/fetchd/server/internal/h1"
)

// unauthorized is an early answer: complete, with a small body, kept alive.
const unauthorized = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 12\r\n\r\nunauthorized"

// TestEarlyAnswer checks that an upstream that answers a large upload
// (more than the socket buffers hold) before reading its body is heard at
// once, whether it then closes the
// connection or keeps it open without reading a byte more: the answer is
// the response, its body readable, and the connection is not reused (the
// request on it was cut short). The request's context (backstop, 5 s) is
// what a stuck upload would meet instead.
func TestEarlyAnswer(t *testing.T) {
	tests := []struct {
		name   string
		body   int    // request body bytes
		head   string // the answer, written once the request head is read
		close  bool   // close after answering; else hold the connection, unread, until the test ends
		status int
	}{
		{"8 MiB, kept open unread", 8 << 20, unauthorized, false, 401},
		{"8 MiB, closed", 8 << 20, "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 12\r\n\r\nunauthorized", true, 401},
		{"8 MiB, 413 kept open unread", 8 << 20, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 12\r\n\r\nunauthorized", false, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := startRaw(t, func(rc *rawConn) {
				if _, err := http.ReadRequest(rc.br); err != nil {
					return
				}
				if rc.write(tt.head) != nil || tt.close {
					return
				}
				<-rc.done
			})
			tr := newTransport(t, &h1.Transport{IdleReadTimeout: 30 * time.Second})
			for i := range 2 {
				req := newRequest(t, backstop(t), http.MethodPost, rs.URL, bytes.NewReader(bytes.Repeat([]byte("b"), tt.body)))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatalf("RoundTrip(POST %q, %d-byte body) #%d = %v, want the early answer", rs.URL, tt.body, i, err)
				}
				if body := readAll(t, resp); resp.StatusCode != tt.status || body != "unauthorized" {
					t.Errorf("RoundTrip(POST %q, %d-byte body) #%d = %d %q, want %d %q", rs.URL, tt.body, i, resp.StatusCode, body, tt.status, "unauthorized")
				}
			}
			if got := rs.Accepted.Load(); got != 2 {
				t.Errorf("connections = %d, want 2 (a connection whose upload was cut short is not reused)", got)
			}
		})
	}
}

// TestUploadThenAnswer checks the common case of a large upload: an
// upstream that reads the whole body, slowly, and then answers. The
// upload's time does not count against ResponseHeaderTimeout or
// IdleReadTimeout (which start once the request is written), an interim
// 1xx sent during the upload does not cut it short, and the connection is
// reused.
func TestUploadThenAnswer(t *testing.T) {
	tests := []struct {
		name    string
		tr      *h1.Transport
		interim bool // send a 100 Continue before reading the body
	}{
		{"ResponseHeaderTimeout", &h1.Transport{ResponseHeaderTimeout: 50 * time.Millisecond}, false},
		{"IdleReadTimeout", &h1.Transport{IdleReadTimeout: 50 * time.Millisecond}, false},
		{"no timeouts", &h1.Transport{}, false},
		{"100 Continue during the upload", &h1.Transport{IdleReadTimeout: 30 * time.Second}, true},
	}
	const size = 8 << 20
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := startRaw(t, func(rc *rawConn) {
				for {
					req, err := http.ReadRequest(rc.br)
					if err != nil {
						return
					}
					if tt.interim && rc.write("HTTP/1.1 100 Continue\r\n\r\n") != nil {
						return
					}
					// Let the upload stall for longer than the timeouts
					// above: 8 MiB is more than the socket buffers hold.
					if !rc.sleep(200 * time.Millisecond) {
						return
					}
					n, err := io.Copy(io.Discard, req.Body)
					if err != nil || n != size || rc.write(okResp) != nil {
						return
					}
				}
			})
			tr := newTransport(t, tt.tr)
			for i := range 2 {
				req := newRequest(t, backstop(t), http.MethodPost, rs.URL, bytes.NewReader(bytes.Repeat([]byte("b"), size)))
				if _, body := roundTrip(t, tr, req); body != "ok" {
					t.Errorf("RoundTrip(POST %q, %d-byte body) #%d = %q, want %q", rs.URL, size, i, body, "ok")
				}
			}
			if got := rs.Accepted.Load(); got != 1 {
				t.Errorf("connections = %d, want 1", got)
			}
		})
	}
}

// TestUploadCanceled checks that cancelling a request stuck in its upload
// (an upstream that neither reads nor answers) ends it at once with the
// context's error, and that the goroutine writing the body is gone by then
// (TestMain's goleak check).
func TestUploadCanceled(t *testing.T) {
	rs := startRaw(t, func(rc *rawConn) {
		if _, err := http.ReadRequest(rc.br); err != nil {
			return
		}
		<-rc.done
	})
	tr := newTransport(t, &h1.Transport{})
	ctx, cancel := context.WithTimeout(backstop(t), 200*time.Millisecond)
	defer cancel()
	req := newRequest(t, ctx, http.MethodPost, rs.URL, bytes.NewReader(bytes.Repeat([]byte("b"), 8<<20)))
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("RoundTrip(POST %q) stuck in its upload = %v, want %v", rs.URL, err, context.DeadlineExceeded)
	}
}

// TestShortRequestBody checks that a request body that ends before its
// ContentLength fails the request with the body's error at once, however
// large: the upstream, still waiting for the rest, never answers.
func TestShortRequestBody(t *testing.T) {
	tests := []struct {
		name      string
		sent, cl  int // bytes the body has, and its ContentLength
		wantInErr string
	}{
		{"small", 10, 100, "request body: 10 of 100 bytes"},
		{"large", 1 << 20, 8 << 20, "request body: 1048576 of 8388608 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := startRaw(t, func(rc *rawConn) {
				io.Copy(io.Discard, rc) // reads what comes, never answers
			})
			tr := newTransport(t, &h1.Transport{})
			req := newRequest(t, backstop(t), http.MethodPost, rs.URL, nil)
			rec := &closeRecorder{Reader: bytes.NewReader(make([]byte, tt.sent))}
			req.Body, req.ContentLength = rec, int64(tt.cl)
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			if !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("RoundTrip(POST %q, %d of %d bytes) = %v, want an error wrapping io.EOF with %q", rs.URL, tt.sent, tt.cl, err, tt.wantInErr)
			}
			if !rec.closed.Load() {
				t.Errorf("RoundTrip(POST %q) left the request body open, want it closed", rs.URL)
			}
		})
	}
}
