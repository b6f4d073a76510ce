package h1_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/fetchd/fetchd/server/internal/h1"
)

// TestGzip checks that gzip the transport asked for is decoded, with the
// response's headers made to match, and that gzip it did not ask for is
// returned as sent; either way the connection is reused.
func TestGzip(t *testing.T) {
	plain := []byte(strings.Repeat("gzip me, ", 1000))
	gz := gzipped(t, plain)
	tests := []struct {
		name        string
		encoding    string // the upstream's Content-Encoding
		header      http.Header
		disable     bool // DisableCompression
		wantDecoded bool
	}{
		{"asked", "gzip", nil, false, true},
		{"asked, upper case", "GZIP", nil, false, true},
		{"caller Accept-Encoding", "gzip", http.Header{"Accept-Encoding": {"gzip"}}, false, false},
		{"caller Range", "gzip", http.Header{"Range": {"bytes=0-"}}, false, false},
		{"DisableCompression", "gzip", nil, true, false},
		{"other encoding", "br", nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Encoding", tt.encoding)
				w.Header().Set("Content-Length", strconv.Itoa(len(gz)))
				w.Write(gz) // asked or not, as hostile or broken upstreams do
			})
			tr := newTransport(t, &h1.Transport{DisableCompression: tt.disable})
			for i := range 2 {
				req := newRequest(t, context.Background(), http.MethodGet, srv.URL, nil)
				maps.Copy(req.Header, tt.header)
				resp, body := roundTrip(t, tr, req)
				if tt.wantDecoded {
					if body != string(plain) {
						t.Errorf("RoundTrip(%q) #%d body = %d bytes, want the %d decoded", srv.URL, i, len(body), len(plain))
					}
					if ce, cl := resp.Header["Content-Encoding"], resp.Header["Content-Length"]; ce != nil || cl != nil {
						t.Errorf("RoundTrip(%q) #%d Content-Encoding, Content-Length = %q, %q, want both removed", srv.URL, i, ce, cl)
					}
					if !resp.Uncompressed || resp.ContentLength != -1 {
						t.Errorf("RoundTrip(%q) #%d Uncompressed, ContentLength = %v, %d, want true, -1", srv.URL, i, resp.Uncompressed, resp.ContentLength)
					}
				} else {
					if body != string(gz) {
						t.Errorf("RoundTrip(%q) #%d body = %d bytes, want the %d sent, raw", srv.URL, i, len(body), len(gz))
					}
					if ce := resp.Header.Get("Content-Encoding"); ce != tt.encoding {
						t.Errorf("RoundTrip(%q) #%d Content-Encoding = %q, want %q", srv.URL, i, ce, tt.encoding)
					}
					if resp.Uncompressed || resp.ContentLength != int64(len(gz)) {
						t.Errorf("RoundTrip(%q) #%d Uncompressed, ContentLength = %v, %d, want false, %d", srv.URL, i, resp.Uncompressed, resp.ContentLength, len(gz))
					}
				}
			}
			if got := srv.opened.Load(); got != 1 {
				t.Errorf("connections for two requests = %d, want 1", got)
			}
		})
	}
}

// TestGzipCorrupt checks that a gzipped body that does not decode fails
// the read, and that the decoders pooled across responses still decode
// the next ones right.
func TestGzipCorrupt(t *testing.T) {
	plain := []byte(strings.Repeat("pooled decoder ", 500))
	gz := gzipped(t, plain)
	badSum := bytes.Clone(gz)
	badSum[len(badSum)-8] ^= 0xff // the CRC-32 in the trailer
	tests := []struct {
		name string
		body []byte
		want error
	}{
		{"not gzip", []byte("plain text, not gzip"), gzip.ErrHeader},
		{"bad checksum", badSum, gzip.ErrChecksum},
		{"truncated", gz[:len(gz)/2], io.ErrUnexpectedEOF},
	}
	bodies := map[string][]byte{"/good": gz}
	for _, tt := range tests {
		bodies["/"+tt.name] = tt.body
	}
	srv := startServer(t, func(w http.ResponseWriter, r *http.Request) {
		b := bodies[r.URL.Path]
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
	tr := newTransport(t, &h1.Transport{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := srv.URL + "/" + tt.name
			resp, err := tr.RoundTrip(newRequest(t, context.Background(), http.MethodGet, url, nil))
			if err != nil {
				t.Fatalf("RoundTrip(%q) = %v, want nil", url, err)
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if !errors.Is(err, tt.want) || !errors.Is(err, h1.ErrBadResponse) {
				t.Errorf("RoundTrip(%q): read body: %v, want %v wrapped in ErrBadResponse", url, err, tt.want)
			}
			if got := get(t, tr, srv.URL+"/good"); got != string(plain) {
				t.Errorf("RoundTrip(%q) after a corrupt body = %d bytes, want the %d decoded", srv.URL+"/good", len(got), len(plain))
			}
		})
	}
}

// TestGzipCutByConnection: a gzip body that the connection cuts short is a
// connection error (io.ErrUnexpectedEOF), not a bad response: the gzip may
// well have been fine.
func TestGzipCutByConnection(t *testing.T) {
	gz := gzipped(t, []byte(strings.Repeat("cut by the connection ", 500)))
	rs := startRaw(t, func(rc *rawConn) {
		if _, _, err := rc.readRequest(); err != nil {
			return
		}
		rc.write(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", len(gz), gz[:len(gz)/2]))
	})
	tr := newTransport(t, &h1.Transport{})
	resp, err := tr.RoundTrip(newRequest(t, backstop(t), http.MethodGet, rs.URL, nil))
	if err != nil {
		t.Fatalf("RoundTrip(%q) = %v, want nil", rs.URL, err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, h1.ErrBadResponse) {
		t.Errorf("RoundTrip(%q): read body: %v, want io.ErrUnexpectedEOF, not ErrBadResponse", rs.URL, err)
	}
}
