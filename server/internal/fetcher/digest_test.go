package fetcher

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testmem"
)

// sum returns the SHA-256 of b.
func sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// pattern returns n bytes that are not all alike, so that a digest of the
// wrong bytes differs.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// TestFetchDigest: body_length is set on every result, body_sha256 when
// the job asks for it: of exactly the body returned (decoded, truncated at
// the cap), or, when the body is discarded, of the bytes read and counted
// (up to the discard cap, max_body_bytes not applying).
func TestFetchDigest(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		body := pattern(100 << 10)
		tests := []struct {
			name       string
			gzip       bool
			lim        Limits
			wantBody   int  // bytes returned
			wantLength int  // body_length
			wantSum    bool // body_sha256 set
			wantTrunc  bool
		}{
			{"inline, no digest", false, Limits{MaxBodyBytes: 1 << 20}, len(body), len(body), false, false},
			{"inline, digest", false, Limits{MaxBodyBytes: 1 << 20, Digest: true}, len(body), len(body), true, false},
			{"inline gzip, digest of the decoded bytes", true, Limits{MaxBodyBytes: 1 << 20, Digest: true}, len(body), len(body), true, false},
			{"inline, truncated: digest of the bytes returned", false, Limits{MaxBodyBytes: 10 << 10, Digest: true}, 10 << 10, 10 << 10, true, true},
			{"inline gzip, truncated", true, Limits{MaxBodyBytes: 10 << 10, Digest: true}, 10 << 10, 10 << 10, true, true},
			{"discard, no digest", false, Limits{MaxBodyBytes: 1 << 10, DiscardBody: true, MaxDiscardBytes: 1 << 20}, 0, len(body), false, false},
			{"discard, digest, max_body_bytes not applying", false, Limits{MaxBodyBytes: 1 << 10, DiscardBody: true, MaxDiscardBytes: 1 << 20, Digest: true}, 0, len(body), true, false},
			{"discard gzip, digest of the decoded bytes", true, Limits{MaxBodyBytes: 1 << 10, DiscardBody: true, MaxDiscardBytes: 1 << 20, Digest: true}, 0, len(body), true, false},
			{"discard beyond the cap: truncated", false, Limits{MaxBodyBytes: 1 << 20, DiscardBody: true, MaxDiscardBytes: 30000, Digest: true}, 0, 30000, true, true},
			{"discard exactly the cap", false, Limits{MaxBodyBytes: 1 << 20, DiscardBody: true, MaxDiscardBytes: int64(len(body)), Digest: true}, 0, len(body), true, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				wire := body
				if tt.gzip {
					wire = gzipped(t, body)
				}
				srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
					if tt.gzip {
						w.Header().Set("Content-Encoding", "gzip")
					}
					w.Header().Set("Content-Length", fmt.Sprint(len(wire)))
					w.Write(wire)
				})
				lim := tt.lim
				lim.DefaultTimeout, lim.MaxTimeout = testLimits.DefaultTimeout, testLimits.MaxTimeout
				resp := doFetch(testctx.New(t), t, loopbackFetcher(t, engine), &fetchv1.FetchRequest{Url: srv.URL}, lim)
				wantCode(t, srv.URL, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
				if len(resp.GetBody()) != tt.wantBody || resp.GetBodyLength() != uint64(tt.wantLength) || resp.GetTruncated() != tt.wantTrunc {
					t.Errorf("Fetch(%q) = %d bytes, body_length %d, truncated %v; want %d, %d, %v",
						srv.URL, len(resp.GetBody()), resp.GetBodyLength(), resp.GetTruncated(), tt.wantBody, tt.wantLength, tt.wantTrunc)
				}
				if tt.wantBody > 0 && !bytes.Equal(resp.GetBody(), body[:tt.wantBody]) {
					t.Errorf("Fetch(%q) body is not the upstream's first %d bytes", srv.URL, tt.wantBody)
				}
				var want []byte
				if tt.wantSum {
					want = sum(body[:tt.wantLength])
				}
				if !bytes.Equal(resp.GetBodySha256(), want) {
					t.Errorf("Fetch(%q).BodySha256 = %x, want %x", srv.URL, resp.GetBodySha256(), want)
				}
			})
		}
	})
}

// TestFetchDigestEmpty: an empty body read is digested (the SHA-256 of no
// bytes); a job that got no response has neither length nor digest.
func TestFetchDigestEmpty(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
		lim := testLimits
		lim.Digest = true
		f := loopbackFetcher(t, engine)
		for _, discard := range []bool{false, true} {
			lim.DiscardBody, lim.MaxDiscardBytes = discard, 1<<20
			resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: srv.URL}, lim)
			wantCode(t, srv.URL, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
			if resp.GetBodyLength() != 0 || !bytes.Equal(resp.GetBodySha256(), sum(nil)) {
				t.Errorf("Fetch(%q) of an empty body (discard %v) = body_length %d, sha256 %x; want 0, %x",
					srv.URL, discard, resp.GetBodyLength(), resp.GetBodySha256(), sum(nil))
			}
		}
		url := "http://" + closedPort(t) + "/"
		resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, lim)
		if resp.GetError() == nil || resp.GetBodyLength() != 0 || len(resp.GetBodySha256()) != 0 {
			t.Errorf("Fetch(%q) of a closed port = error %v, body_length %d, sha256 %x; want an error, 0, none",
				url, resp.GetError(), resp.GetBodyLength(), resp.GetBodySha256())
		}
	})
}

// TestFetchDiscardMemory discards a 200 MiB body and checks that it was
// never held: the fetch allocates (TotalAlloc) and holds (HeapInuse,
// sampled during the fetch) a small fraction of the body, and still counts
// and digests all of it.
//
// Not parallel: the heap figures need the package to themselves.
func TestFetchDiscardMemory(t *testing.T) {
	forEachEngineInTurn(t, func(t *testing.T, engine Engine) {
		const (
			size  = 200 << 20
			bound = 16 << 20 // allocated or held during the fetch, well under size
		)
		chunk := pattern(64 << 10)
		want := sha256.New()
		for range size / len(chunk) {
			want.Write(chunk)
		}
		url := rawURL(t, func(c net.Conn) {
			if respond(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", size)) {
				for range size / len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}
		})
		f := newFetcher(t, engine, loopbackWith(Config{}))
		lim := Limits{DefaultTimeout: time.Minute, MaxTimeout: time.Minute, MaxBodyBytes: 1 << 20,
			Digest: true, DiscardBody: true, MaxDiscardBytes: 1 << 30}

		var resp *fetchv1.FetchResponse
		u := testmem.Measure(func() {
			resp = doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, lim)
		})

		mib, allocated, held := testmem.MiB, u.Allocated, u.Held
		t.Logf("discard of %d MiB: allocated %.1f MiB (TotalAlloc), peak HeapInuse +%.1f MiB (base %.1f MiB), in %v",
			size>>20, mib(allocated), mib(held), mib(u.Base), resp.GetDuration().AsDuration().Round(time.Millisecond))
		wantCode(t, url, resp, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
		if len(resp.GetBody()) != 0 || resp.GetBodyLength() != size || resp.GetTruncated() {
			t.Errorf("Fetch(%q) = %d bytes, body_length %d, truncated %v; want 0, %d, false",
				url, len(resp.GetBody()), resp.GetBodyLength(), resp.GetTruncated(), size)
		}
		if !bytes.Equal(resp.GetBodySha256(), want.Sum(nil)) {
			t.Errorf("Fetch(%q).BodySha256 = %x, want %x", url, resp.GetBodySha256(), want.Sum(nil))
		}
		if allocated > bound || held > bound {
			t.Errorf("discarding %d MiB allocated %.1f MiB and held %.1f MiB, want each under %.1f MiB",
				size>>20, mib(allocated), mib(held), mib(bound))
		}
	})
}
