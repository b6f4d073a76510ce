package fetcher

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
)

// TestFetchMemoryBounded runs 200 fetches at once, with a 64 KiB body cap,
// against three hostile upstreams: an endless body, an endless gzip bomb
// (1 MiB of zeros per KiB on the wire), and a drip that then stalls. The
// upstreams first send 48 KiB (decoded) and hold every fetch in flight at a
// gate, dripping to stay under the idle-read deadline; the live heap is
// measured there (after runtime.GC), and again, sampled, while the fetches
// finish: the endless ones truncated at the cap, the drips by the idle-read
// deadline. Heap growth must stay under 3 × concurrency × cap + 32 MiB, and
// every fetch must return within its timeout.
//
// Not parallel: the heap figures need the package to themselves.
func TestFetchMemoryBounded(t *testing.T) {
	forEachEngineInTurn(t, func(t *testing.T, engine Engine) {
		const (
			concurrency = 200
			maxBody     = 64 << 10
			before      = 48 << 10 // decoded bytes each upstream sends before the gate
			timeout     = 5 * time.Second
			idleRead    = 2 * time.Second // generous: 400 goroutines share the CPUs at the start
			bound       = concurrency*maxBody*3 + 32<<20
		)
		var (
			release     = make(chan struct{})
			releaseOnce sync.Once
			atGate      atomic.Int64
		)
		open := func() { releaseOnce.Do(func() { close(release) }) }
		t.Cleanup(open)
		// gate holds an upstream until release, writing keepAlive every 50ms;
		// it reports whether the client is still there.
		gate := func(c net.Conn, keepAlive []byte) bool {
			atGate.Add(1)
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-release:
					return true
				case <-tick.C:
					if _, err := c.Write(keepAlive); err != nil {
						return false
					}
				}
			}
		}
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		emptyMember := gzipped(t, nil)                  // a gzip member decoding to nothing
		smallMember := gzipped(t, make([]byte, 16<<10)) // 16 KiB of zeros
		bigMember := gzipped(t, make([]byte, 1<<20))    // 1 MiB of zeros in about 1 KiB
		bombChunk := bytes.Repeat(bigMember, 32)        // 32 MiB of zeros per write
		// The upstreams share two CPUs with the fetches: small socket buffers
		// make their endless writes block early instead of spinning.
		small := func(c net.Conn) { c.(*net.TCPConn).SetWriteBuffer(64 << 10) }

		endless := rawURL(t, func(c net.Conn) {
			small(c)
			if respond(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n") {
				if _, err := c.Write(bytes.Repeat([]byte("x"), before)); err == nil && gate(c, []byte("x")) {
					writeForever(c, chunk)
				}
			}
		})
		bomb := rawURL(t, func(c net.Conn) {
			small(c)
			if respond(c, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n") {
				if _, err := c.Write(bytes.Repeat(smallMember, before/(16<<10))); err == nil && gate(c, emptyMember) {
					writeForever(c, bombChunk)
				}
			}
		})
		dripping := rawURL(t, func(c net.Conn) {
			if respond(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n") && gate(c, []byte("x")) {
				silent(c) // and never another byte
			}
		})
		urls := []string{endless, bomb, dripping}
		f := newFetcher(t, engine, loopbackWith(Config{IdleReadTimeout: idleRead}))
		lim := Limits{DefaultTimeout: timeout, MaxTimeout: timeout, MaxBodyBytes: maxBody}

		var base runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&base)

		var (
			wg       sync.WaitGroup
			resps    = make([]*fetchv1.FetchResponse, concurrency)
			elapsed  = make([]time.Duration, concurrency)
			finished atomic.Int64
			early    atomic.Pointer[fetchv1.FetchResponse] // the first fetch that ended before the release
		)
		ctx := testctx.New(t)
		start := time.Now()
		for i := range concurrency {
			wg.Go(func() {
				defer finished.Add(1)
				job, err := Validate(&fetchv1.FetchRequest{Url: urls[i%len(urls)], Timeout: durationpb.New(timeout)}, lim)
				if err != nil {
					t.Errorf("Validate(%q) = %v", urls[i%len(urls)], err)
					return
				}
				resps[i] = &fetchv1.FetchResponse{}
				begin := time.Now()
				f.Fetch(ctx, job, resps[i])
				elapsed[i] = time.Since(begin)
				select {
				case <-release:
				default:
					early.CompareAndSwap(nil, resps[i])
				}
			})
		}
		for deadline := time.Now().Add(10 * time.Second); atGate.Load() < concurrency; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) || finished.Load() > 0 {
				open()
				wg.Wait()
				t.Fatalf("%d of %d upstreams reached the gate, %d fetches ended early (the first: %d bytes, error %v); want every fetch in flight",
					atGate.Load(), concurrency, finished.Load(), len(early.Load().GetBody()), early.Load().GetError())
			}
		}
		time.Sleep(100 * time.Millisecond) // let the clients read what was sent
		var atPeak runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&atPeak)
		gateHeap := atPeak.HeapInuse
		gateTime := time.Since(start)

		// Release, and sample the live heap while the fetches finish.
		open()
		done := make(chan struct{})
		var sampled uint64
		var samplers sync.WaitGroup
		samplers.Go(func() {
			var ms runtime.MemStats
			for {
				runtime.GC()
				runtime.ReadMemStats(&ms)
				sampled = max(sampled, ms.HeapInuse)
				select {
				case <-done:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
		wg.Wait()
		total := time.Since(start)
		close(done)
		samplers.Wait()

		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(resps)

		mib := func(n uint64) float64 { return float64(n) / (1 << 20) }
		growth := func(n uint64) uint64 { return n - min(n, base.HeapInuse) }
		peak := max(gateHeap, sampled)
		t.Logf("HeapInuse: base %.1f MiB; with %d fetches in flight at the gate +%.1f MiB (%.0f KiB per fetch) after %v; "+
			"peak while finishing +%.1f MiB; after, results held +%.1f MiB; bound %.1f MiB; all done in %v",
			mib(base.HeapInuse), concurrency, mib(growth(gateHeap)), float64(growth(gateHeap))/concurrency/1024,
			gateTime.Round(time.Millisecond), mib(growth(sampled)), mib(growth(after.HeapInuse)), mib(bound), total.Round(time.Millisecond))
		if g := growth(peak); g > bound {
			t.Errorf("HeapInuse grew by %.1f MiB under %d hostile fetches, want under %.1f MiB", mib(g), concurrency, mib(bound))
		}

		counts := map[string]int{}
		for i, resp := range resps {
			if resp == nil {
				continue
			}
			url := urls[i%len(urls)]
			if elapsed[i] > timeout {
				t.Errorf("Fetch(%q) returned after %v, want within its timeout %v", url, elapsed[i], timeout)
			}
			switch url {
			case dripping:
				if resp.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_TIMEOUT ||
					!strings.Contains(resp.GetError().GetMessage(), "upstream sent nothing") {
					t.Errorf("Fetch(%q) of a stalled drip = %v, want an idle-read TIMEOUT", url, resp.GetError())
				}
				counts["drip: idle-read timeout"]++
			default:
				if resp.GetError() != nil || !resp.GetTruncated() || len(resp.GetBody()) != maxBody {
					t.Errorf("Fetch(%q) = %d bytes, truncated %v, error %v; want %d bytes, truncated",
						url, len(resp.GetBody()), resp.GetTruncated(), resp.GetError(), maxBody)
				}
				if url == bomb && bytes.ContainsFunc(resp.GetBody(), func(r rune) bool { return r != 0 }) {
					t.Errorf("Fetch(%q) body is not the decoded zeros", url)
				}
				counts[map[bool]string{true: "gzip bomb: truncated", false: "endless body: truncated"}[url == bomb]]++
			}
		}
		t.Logf("outcomes: %v; slowest fetch %v", counts, slices.Max(elapsed).Round(time.Millisecond))
	})
}

// zeros is an endless reader of zeros that reads at most 1000 bytes at a
// time, like a slow network.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	n := min(len(p), 1000)
	clear(p[:n])
	return n, nil
}

// TestReadCappedMemory: the body buffer grows geometrically but never past
// the cap plus one byte (and its allocation size class), whatever the
// upstream sends or claims.
func TestReadCappedMemory(t *testing.T) {
	tests := []struct {
		name          string
		r             io.Reader
		contentLength int64
		max           int64
		wantLen       int
		wantTruncated bool
	}{
		{"endless, unknown length", zeros{}, -1, 64 << 10, 64 << 10, true},
		{"endless, claims 1 KiB", zeros{}, 1 << 10, 64 << 10, 64 << 10, true},
		{"endless, claims 1 TiB", zeros{}, 1 << 40, 64 << 10, 64 << 10, true},
		{"endless, tiny cap", zeros{}, -1, 10, 10, true},
		{"1 MiB, no cap", io.LimitReader(zeros{}, 1<<20), -1, 0, 1 << 20, false},
		{"exactly the cap", io.LimitReader(zeros{}, 64<<10), -1, 64 << 10, 64 << 10, false},
		{"one over the cap", io.LimitReader(zeros{}, 64<<10+1), 64<<10 + 1, 64 << 10, 64 << 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, truncated, err := (&body{}).readCapped(context.Background(), tt.r, tt.contentLength, tt.max)
			if err != nil || len(b) != tt.wantLen || truncated != tt.wantTruncated {
				t.Fatalf("readCapped(max %d) = %d bytes, truncated %v, %v; want %d, %v, <nil>",
					tt.max, len(b), truncated, err, tt.wantLen, tt.wantTruncated)
			}
			if tt.max > 0 {
				// The allocator rounds a size up by at most 1/8 above 32 KiB.
				if limit := (tt.max+1)*9/8 + 64; int64(cap(b)) > limit {
					t.Errorf("readCapped(max %d) holds a %d-byte buffer, want at most %d", tt.max, cap(b), limit)
				}
			}
		})
	}
}
