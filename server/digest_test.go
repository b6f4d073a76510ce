package server

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testmem"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// sumOf returns the SHA-256 of b.
func sumOf(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// xs is the body testupstream sends for size=n.
func xs(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }

// TestDigestDiscard: the stream options digest and discard_body, on a
// Fetch stream and on a FetchBatch, and a stream that sets neither, which
// gets its bodies as before with body_length set.
func TestDigestDiscard(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t, WithMaxBodyBytes(1000), WithMaxDiscardBytes(50000))
	tests := []struct {
		name       string
		opts       *fetchv1.StreamOptions
		size       int
		wantBody   int
		wantLength int
		wantTrunc  bool
		wantSum    bool
	}{
		{"no options", nil, 700, 700, 700, false, false},
		{"no options, truncated", nil, 3000, 1000, 1000, true, false},
		{"digest", &fetchv1.StreamOptions{Digest: true}, 700, 700, 700, false, true},
		{"digest, truncated: of the bytes returned", &fetchv1.StreamOptions{Digest: true}, 3000, 1000, 1000, true, true},
		{"discard: max_body_bytes does not apply", &fetchv1.StreamOptions{DiscardBody: true}, 3000, 0, 3000, false, false},
		{"discard and digest", &fetchv1.StreamOptions{DiscardBody: true, Digest: true}, 3000, 0, 3000, false, true},
		{"discard beyond the cap", &fetchv1.StreamOptions{DiscardBody: true, Digest: true}, 60000, 0, 50000, true, true},
	}
	check := func(t *testing.T, r *fetchv1.FetchResponse, wantBody, wantLength int, wantTrunc, wantSum bool) {
		t.Helper()
		if r.GetError() != nil || r.GetStatusCode() != 200 {
			t.Fatalf("job %d = status %d, error %v; want 200", r.GetIndex(), r.GetStatusCode(), r.GetError())
		}
		if !bytes.Equal(r.GetBody(), xs(wantBody)) || r.GetBodyLength() != uint64(wantLength) || r.GetTruncated() != wantTrunc {
			t.Errorf("job %d = %d body bytes, body_length %d, truncated %v; want %d, %d, %v",
				r.GetIndex(), len(r.GetBody()), r.GetBodyLength(), r.GetTruncated(), wantBody, wantLength, wantTrunc)
		}
		var want []byte
		if wantSum {
			want = sumOf(xs(wantLength))
		}
		if !bytes.Equal(r.GetBodySha256(), want) {
			t.Errorf("job %d body_sha256 = %x, want %x", r.GetIndex(), r.GetBodySha256(), want)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := fmt.Sprintf("%s/?size=%d", up.URL, tt.size)
			t.Run("Fetch", func(t *testing.T) {
				jobs := []*fetchv1.FetchRequest{{Url: url, StreamOptions: tt.opts}, {Url: url}}
				res, err := fetchAll(testctx.New(t), t, c, jobs)
				if err != nil || len(res) != 2 {
					t.Fatalf("Fetch: %d results, %v; want 2, nil", len(res), err)
				}
				for _, r := range res {
					check(t, r, tt.wantBody, tt.wantLength, tt.wantTrunc, tt.wantSum)
				}
			})
			t.Run("FetchBatch", func(t *testing.T) {
				stream, err := c.FetchBatch(testctx.New(t), &fetchv1.FetchBatchRequest{
					Options: tt.opts, Jobs: []*fetchv1.FetchRequest{{Url: url}, {Url: url}}})
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for {
					r, err := stream.Recv()
					if err != nil {
						break
					}
					if res := r.GetResult(); res != nil {
						n++
						check(t, res, tt.wantBody, tt.wantLength, tt.wantTrunc, tt.wantSum)
					}
				}
				if n != 2 {
					t.Errorf("FetchBatch: %d results, want 2", n)
				}
			})
		})
	}
}

// TestDedupModes: identical jobs in flight at once on streams with
// different digest and discard modes do not share a fetch, so that each
// gets the result its stream asked for; identical jobs of the same modes
// still do.
func TestDedupModes(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t, WithDedup(true))
	url := up.URL + "/?delay=300ms&size=5000"
	modes := []*fetchv1.StreamOptions{
		nil,
		{Digest: true},
		{DiscardBody: true},
		{DiscardBody: true, Digest: true},
	}
	const perMode = 3
	results := make([][]*fetchv1.FetchResponse, len(modes))
	var wg sync.WaitGroup
	for i, o := range modes {
		wg.Go(func() {
			jobs := make([]*fetchv1.FetchRequest, perMode)
			for j := range jobs {
				jobs[j] = &fetchv1.FetchRequest{Url: url}
			}
			jobs[0].StreamOptions = o
			res, err := fetchAll(testctx.New(t), t, c, jobs)
			if err != nil || len(res) != perMode {
				t.Errorf("Fetch with options %v: %d results, %v; want %d, nil", o, len(res), err, perMode)
			}
			results[i] = res
		})
	}
	wg.Wait()
	for i, o := range modes {
		wantBody := 5000
		if o.GetDiscardBody() {
			wantBody = 0
		}
		var wantSum []byte
		if o.GetDigest() {
			wantSum = sumOf(xs(5000))
		}
		for _, r := range results[i] {
			if len(r.GetBody()) != wantBody || r.GetBodyLength() != 5000 || !bytes.Equal(r.GetBodySha256(), wantSum) {
				t.Errorf("options %v: job %d = %d body bytes, body_length %d, sha256 %x; want %d, 5000, %x",
					o, r.GetIndex(), len(r.GetBody()), r.GetBodyLength(), r.GetBodySha256(), wantBody, wantSum)
			}
		}
	}
	if up.Hits() != int64(len(modes)) {
		t.Errorf("upstream hits = %d, want %d: one fetch per mode", up.Hits(), len(modes))
	}
}

// TestDiscardMemory discards a 200 MiB body over gRPC and checks that the
// process (fetchd and the caller) allocated and held a small fraction of
// it, and that the result counts and digests all of it.
//
// Not parallel: the heap figures need the package to themselves.
func TestDiscardMemory(t *testing.T) {
	const (
		size  = 200 << 20
		bound = 16 << 20 // allocated or held during the fetch, well under size
	)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4<<10)
	want := sha256.New()
	for range size / len(chunk) {
		want.Write(chunk)
	}
	raw := testupstream.StartRaw(t, func(c net.Conn, _ <-chan struct{}) {
		buf := make([]byte, 4096)
		if n, err := c.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "\r\n\r\n") {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", size)
		for range size / len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	c, _ := startServer(t)
	url := "http://" + raw.Addr + "/"

	var (
		res []*fetchv1.FetchResponse
		err error
	)
	u := testmem.Measure(func() {
		res, err = fetchAll(testctx.New(t), t, c, []*fetchv1.FetchRequest{{Url: url, Timeout: dur(time.Minute),
			StreamOptions: &fetchv1.StreamOptions{DiscardBody: true, Digest: true}}})
	})
	if err != nil || len(res) != 1 {
		t.Fatalf("Fetch: %d results, %v; want 1, nil", len(res), err)
	}
	r := res[0]
	mib, allocated, held := testmem.MiB, u.Allocated, u.Held
	t.Logf("discard of %d MiB over gRPC: allocated %.1f MiB (TotalAlloc), peak HeapInuse +%.1f MiB (base %.1f MiB), fetch took %v",
		size>>20, mib(allocated), mib(held), mib(u.Base), r.GetDuration().AsDuration().Round(time.Millisecond))
	if r.GetError() != nil || len(r.GetBody()) != 0 || r.GetBodyLength() != size || r.GetTruncated() {
		t.Errorf("Fetch(%q) = error %v, %d body bytes, body_length %d, truncated %v; want none, 0, %d, false",
			url, r.GetError(), len(r.GetBody()), r.GetBodyLength(), r.GetTruncated(), size)
	}
	if !bytes.Equal(r.GetBodySha256(), want.Sum(nil)) {
		t.Errorf("Fetch(%q) body_sha256 = %x, want %x", url, r.GetBodySha256(), want.Sum(nil))
	}
	if allocated > bound || held > bound {
		t.Errorf("discarding %d MiB allocated %.1f MiB and held %.1f MiB, want each under %.1f MiB",
			size>>20, mib(allocated), mib(held), mib(bound))
	}
}
