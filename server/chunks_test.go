package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testmem"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// patternURL returns the URL of n bytes of the pattern body on up, framed
// by Content-Length or, if chunked, chunked.
func patternURL(up *testupstream.Upstream, n int, chunked bool) string {
	u := fmt.Sprintf("%s/?pattern=%d", up.URL, n)
	if chunked {
		u += "&chunked=1"
	}
	return u
}

// parts is what a stream sent for one job: its chunks reassembled, and its
// result.
type parts struct {
	head   *fetchv1.ResponseHead
	body   []byte
	chunks int
	result *fetchv1.FetchResponse
}

// collect reads responses from recv until it fails and checks the chunk
// protocol: a chunk carries only index and chunk, offsets follow on with
// no gap, the head comes on the first chunk alone, and every chunk comes
// before its job's one result. It returns the parts by index and recv's
// error (nil at io.EOF).
func collect(t *testing.T, recv func() (*fetchv1.FetchResponse, error)) (map[uint64]*parts, error) {
	t.Helper()
	got := map[uint64]*parts{}
	for {
		r, err := recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return got, err
		}
		p := got[r.GetIndex()]
		if p == nil {
			p = &parts{}
			got[r.GetIndex()] = p
		}
		if p.result != nil {
			t.Fatalf("job %d: a message after its result: %v", r.GetIndex(), r)
		}
		ch := r.GetChunk()
		if ch == nil {
			p.result = r
			continue
		}
		if r.GetStatusCode() != 0 || r.GetId() != "" || r.GetUrl() != "" || r.GetBody() != nil || r.GetError() != nil {
			t.Errorf("job %d: a chunk message with result fields set: %v", r.GetIndex(), r)
		}
		if ch.GetOffset() != uint64(len(p.body)) {
			t.Fatalf("job %d: chunk at offset %d after %d bytes", r.GetIndex(), ch.GetOffset(), len(p.body))
		}
		if (ch.GetHead() != nil) != (ch.GetOffset() == 0) {
			t.Errorf("job %d: chunk at offset %d has head %v; want a head on the first chunk only", r.GetIndex(), ch.GetOffset(), ch.GetHead())
		}
		if ch.GetOffset() == 0 {
			p.head = ch.GetHead()
		}
		p.body = append(p.body, ch.GetData()...)
		p.chunks++
	}
}

// TestChunkedBodies: with chunk_bytes a long body comes in chunks before
// its result, byte for byte, on Fetch and FetchBatch, framed by
// Content-Length or chunked; a body that fits in a chunk comes inline; the
// caps and the digest hold.
func TestChunkedBodies(t *testing.T) {
	up := testupstream.New(t)
	const chunk = 64 << 10
	c, _ := startServer(t, WithMaxBodyBytes(256<<10), WithMaxStreamBodyBytes(3<<20))
	tests := []struct {
		name       string
		size       int
		maxBody    uint64
		wantChunks int // 0: inline
		wantLength int
		wantTrunc  bool
	}{
		{"small: inline", 1000, 0, 0, 1000, false},
		{"exactly one chunk: inline", chunk, 0, 0, chunk, false},
		{"a chunk and a byte", chunk + 1, 0, 2, chunk + 1, false},
		{"many chunks", 2<<20 + 12345, 0, 2<<20/chunk + 1, 2<<20 + 12345, false},
		{"over the server's streamed cap", 4 << 20, 0, 3 << 20 / chunk, 3 << 20, true},
		{"over the stream's max_body_bytes", 1 << 20, 200000, 4, 200000, true},
		{"max_body_bytes under a chunk: inline, cut", 1 << 20, 1000, 0, 1000, true},
	}
	for _, tt := range tests {
		for _, framing := range []string{"content-length", "chunked"} {
			t.Run(tt.name+"/"+framing, func(t *testing.T) {
				opts := &fetchv1.StreamOptions{ChunkBytes: chunk, Digest: true, MaxBodyBytes: tt.maxBody}
				url := patternURL(up, tt.size, framing == "chunked")
				check := func(t *testing.T, got map[uint64]*parts) {
					t.Helper()
					want := testupstream.PatternBytes(tt.size)[:tt.wantLength]
					for i := range uint64(2) {
						p := got[i]
						if p == nil || p.result == nil {
							t.Fatalf("job %d: no result", i)
						}
						r := p.result
						body := p.body
						if tt.wantChunks == 0 {
							body = r.GetBody()
						}
						if r.GetError() != nil || r.GetStatusCode() != 200 || r.GetBodyLength() != uint64(tt.wantLength) || r.GetTruncated() != tt.wantTrunc {
							t.Errorf("job %d result: status %d, error %v, body_length %d, truncated %v; want 200, none, %d, %v",
								i, r.GetStatusCode(), r.GetError(), r.GetBodyLength(), r.GetTruncated(), tt.wantLength, tt.wantTrunc)
						}
						if p.chunks != tt.wantChunks || r.GetStreamed() != (tt.wantChunks > 0) || (tt.wantChunks > 0 && len(r.GetBody()) > 0) {
							t.Errorf("job %d: %d chunks, streamed %v, %d inline bytes; want %d chunks", i, p.chunks, r.GetStreamed(), len(r.GetBody()), tt.wantChunks)
						}
						if !bytes.Equal(body, want) {
							t.Errorf("job %d: body of %d bytes differs from the upstream's %d", i, len(body), len(want))
						}
						if sum := sha256.Sum256(want); !bytes.Equal(r.GetBodySha256(), sum[:]) {
							t.Errorf("job %d: body_sha256 %x, want %x", i, r.GetBodySha256(), sum)
						}
						if p.head != nil && (p.head.GetStatusCode() != 200 || len(p.head.GetHeaders()) == 0) {
							t.Errorf("job %d: head %v, want status 200 and the headers", i, p.head)
						}
					}
				}
				t.Run("Fetch", func(t *testing.T) {
					stream, err := c.Fetch(testctx.New(t))
					if err != nil {
						t.Fatal(err)
					}
					for _, j := range []*fetchv1.FetchRequest{{Url: url, StreamOptions: opts}, {Url: url}} {
						if err := stream.Send(j); err != nil {
							t.Fatal(err)
						}
					}
					stream.CloseSend()
					got, err := collect(t, stream.Recv)
					if err != nil {
						t.Fatalf("Fetch: %v", err)
					}
					check(t, got)
				})
				t.Run("FetchBatch", func(t *testing.T) {
					stream, err := c.FetchBatch(testctx.New(t), &fetchv1.FetchBatchRequest{Options: opts,
						Jobs: []*fetchv1.FetchRequest{{Url: url}, {Url: url}}})
					if err != nil {
						t.Fatal(err)
					}
					got, err := collect(t, func() (*fetchv1.FetchResponse, error) {
						r, err := stream.Recv()
						return r.GetResult(), err
					})
					if err != nil {
						t.Fatalf("FetchBatch: %v", err)
					}
					check(t, got)
				})
			})
		}
	}
}

// TestChunksInterleave: a long body streams while the stream's other jobs
// finish; their results do not wait for its end.
func TestChunksInterleave(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t)
	stream, err := c.Fetch(testctx.New(t))
	if err != nil {
		t.Fatal(err)
	}
	const small = 20
	big := &fetchv1.FetchRequest{Url: patternURL(up, 64<<20, false), StreamOptions: &fetchv1.StreamOptions{ChunkBytes: 64 << 10}}
	if err := stream.Send(big); err != nil {
		t.Fatal(err)
	}
	// The small jobs go once the big body has begun.
	first, err := stream.Recv()
	if err != nil || first.GetChunk() == nil {
		t.Fatalf("first message = %v, %v; want a chunk of job 0", first, err)
	}
	for range small {
		if err := stream.Send(job(up.URL + "/?delay=10ms")); err != nil {
			t.Fatal(err)
		}
	}
	stream.CloseSend()
	results, chunksBefore := 0, 0
	for {
		r, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		switch {
		case r.GetChunk() != nil:
			if results < small {
				chunksBefore++
			}
		case r.GetIndex() == 0:
			if results < small {
				t.Errorf("the big body ended after only %d of the %d small results", results, small)
			}
		default:
			results++
		}
	}
	if results != small {
		t.Errorf("%d small results, want %d", results, small)
	}
	t.Logf("%d chunks of the big body came before the last small result", chunksBefore)
}

// TestChunkedSlowReader: a caller that stops reading a streamed body holds
// up the upstream read, not fetchd's memory: the upstream gets to write
// only what the chunk, gRPC's and the sockets' buffers hold.
func TestChunkedSlowReader(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t)
	ctx, cancel := context.WithCancel(testctx.New(t))
	defer cancel()
	stream, err := c.Fetch(ctx, grpc.MaxCallRecvMsgSize(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 30
	if err := stream.Send(&fetchv1.FetchRequest{Url: patternURL(up, size, false), Timeout: dur(time.Minute),
		StreamOptions: &fetchv1.StreamOptions{ChunkBytes: 1 << 20}}); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.GetChunk() == nil {
		t.Fatalf("first message = %v, %v; want a chunk", r, err)
	}
	// Read nothing more, and wait until the upstream's writes stall.
	stalled := func() int64 {
		last := int64(-1)
		for {
			time.Sleep(300 * time.Millisecond)
			n := up.Written()
			if n == last {
				return n
			}
			last = n
		}
	}
	n := stalled()
	// The chunk in fetchd's hands, gRPC's write quota and HTTP/2 windows
	// (up to 16 MiB with BDP probing on loopback), and the kernel's socket
	// buffers of both connections.
	const bound = 64 << 20
	t.Logf("with the caller not reading, the upstream wrote %.1f MiB of %d MiB", float64(n)/(1<<20), size>>20)
	if n > bound {
		t.Errorf("upstream wrote %d MiB with the caller not reading; want at most %d MiB", n>>20, bound>>20)
	}
	// Reading on lets it go on.
	for range 20 {
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	testctx.WaitFor(t, 10*time.Second, "the upstream to write more once the caller reads", func() bool { return up.Written() > n })
}

// TestChunkedCancel: a caller that cancels a 1 GiB download mid-body frees
// its pool slot and closes the upstream connection at once.
func TestChunkedCancel(t *testing.T) {
	up := testupstream.New(t)
	c, s := startServer(t, WithConcurrency(1))
	ctx, cancel := context.WithCancel(testctx.New(t))
	stream, err := c.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&fetchv1.FetchRequest{Url: patternURL(up, 1<<30, false), Timeout: dur(time.Minute),
		StreamOptions: &fetchv1.StreamOptions{ChunkBytes: 1 << 20}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r, err := stream.Recv(); err != nil || r.GetChunk() == nil {
			t.Fatalf("message = %v, %v; want a chunk", r, err)
		}
	}
	cancel()
	testctx.WaitFor(t, 10*time.Second, "the upstream connection closed", func() bool { return up.Cut() == 1 })
	testctx.WaitFor(t, 10*time.Second, "the pool slot free", func() bool {
		if s.pool.TryAcquire(1) {
			s.pool.Release(1)
			return true
		}
		return false
	})
	testctx.WaitFor(t, 10*time.Second, "the body and job memory given back", func() bool { return s.bodies.full() && s.jobs.full() })
}

// TestBodyMemory: inline bodies wait for the body memory budget rather
// than grow past it. A caller that reads nothing sends jobs with 1 MiB
// bodies of unknown length: with room for two bodies in the budget,
// fetchd holds a small fraction of what it holds with room for all of
// them (the baseline, in the same process). Reading the results then lets
// every job through, and every budget byte comes back.
//
// Not parallel: the heap figures need the package to themselves.
func TestBodyMemory(t *testing.T) {
	up := testupstream.New(t)
	const (
		maxBody = 1 << 20
		jobs    = 32
	)
	held := map[string]uint64{}
	for _, tt := range []struct {
		name   string
		budget int64
	}{
		{"room for all", 2 * jobs * maxBody},
		{"room for two", 2 * (maxBody + 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := New(WithAllowCIDRs(loopback), WithLogger(quiet), WithDedup(false),
				WithMaxBodyBytes(maxBody), WithBodyMemory(tt.budget), WithConcurrency(jobs))
			// A static HTTP/2 window on the caller's side (no BDP
			// growth): it holds 64 KiB of the stream however long it
			// does not read, and the heap figures are fetchd's.
			c := fetchv1.NewFetchServiceClient(serveConnWith(t, s, nil, []grpc.DialOption{grpc.WithInitialWindowSize(64 << 10), grpc.WithInitialConnWindowSize(64 << 10)}))
			ctx, cancel := context.WithCancel(testctx.New(t))
			defer cancel()
			stream, err := c.Fetch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			base := liveHeap()
			for range jobs {
				if err := stream.Send(&fetchv1.FetchRequest{Url: patternURL(up, maxBody, true)}); err != nil {
					t.Fatal(err)
				}
			}
			stream.CloseSend()
			// Until fetchd has read what it will read without a caller:
			// the live heap stops growing.
			live, last := base, uint64(0)
			for i := 0; i < 50 && (i < 3 || live > last+(256<<10)); i++ {
				time.Sleep(200 * time.Millisecond)
				last, live = live, liveHeap()
			}
			held[tt.name] = live - min(live, base)
			t.Logf("budget %d MiB, caller not reading: live heap +%.1f MiB", tt.budget>>20, testmem.MiB(held[tt.name]))
			got, err := collect(t, stream.Recv)
			if err != nil || len(got) != jobs {
				t.Fatalf("Fetch: %d results, %v; want %d", len(got), err, jobs)
			}
			for i, p := range got {
				if r := p.result; r.GetError() != nil || !bytes.Equal(r.GetBody(), testupstream.PatternBytes(maxBody)) {
					t.Errorf("job %d: error %v, %d body bytes; want the whole body", i, r.GetError(), len(r.GetBody()))
				}
			}
			if !s.bodies.full() || !s.jobs.full() {
				t.Errorf("body or job memory not all given back after every result was sent")
			}
		})
	}
	if base, small := held["room for all"], held["room for two"]; small*3 > base {
		t.Errorf("with room for 2 bodies fetchd held %.1f MiB, with room for all %.1f MiB; want under a third",
			testmem.MiB(small), testmem.MiB(base))
	}
}

// liveHeap returns the bytes of live heap objects, after a GC.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestChunkedTimeout: a job whose timeout passes while its caller reads
// slowly closes its upstream connection at once; its result, after the
// chunks already sent, says TIMEOUT and counts exactly the bytes the caller
// got.
func TestChunkedTimeout(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t)
	stream, err := c.Fetch(testctx.New(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&fetchv1.FetchRequest{Url: patternURL(up, 1<<30, false), Timeout: dur(500 * time.Millisecond),
		StreamOptions: &fetchv1.StreamOptions{ChunkBytes: 1 << 20}}); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	first, err := stream.Recv()
	if err != nil || first.GetChunk() == nil {
		t.Fatalf("first message = %v, %v; want a chunk", first, err)
	}
	// Read nothing more until the timeout has closed the upstream.
	testctx.WaitFor(t, 10*time.Second, "the upstream connection closed", func() bool { return up.Cut() == 1 })
	got, err := collect(t, func() (*fetchv1.FetchResponse, error) {
		if r := first; r != nil {
			first = nil
			return r, nil
		}
		return stream.Recv()
	})
	if err != nil {
		t.Fatal(err)
	}
	r := got[0].result
	received := uint64(len(got[0].body))
	if r.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_TIMEOUT || !r.GetStreamed() || r.GetBodyLength() != received {
		t.Errorf("result: error %v, streamed %v, body_length %d; want TIMEOUT, streamed, %d (the bytes sent)",
			r.GetError(), r.GetStreamed(), r.GetBodyLength(), received)
	}
}
