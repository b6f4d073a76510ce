package fetcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"

	"golang.org/x/sync/semaphore"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
)

// collectSink is a [Sink] that keeps what it is sent and checks the
// chunks' offsets and sizes. With fail set, it fails the Send of that
// chunk (1 for the first), freeing its reservation as a Sink must.
type collectSink struct {
	t      *testing.T
	mem    Memory
	size   int // the chunk size
	body   []byte
	chunks int
	fail   int
}

func (s *collectSink) Send(_ context.Context, offset int64, data []byte, reserved int64) ([]byte, error) {
	s.chunks++
	if offset != int64(len(s.body)) || len(data) > s.size || len(data) == 0 {
		s.t.Errorf("chunk %d: %d bytes at offset %d after %d bytes; want 1 to %d bytes, no gap", s.chunks, len(data), offset, len(s.body), s.size)
	}
	if s.chunks == s.fail {
		if s.mem != nil {
			s.mem.Release(reserved)
		}
		return nil, errSinkGone
	}
	s.body = append(s.body, data...)
	return data[:cap(data)], nil
}

var errSinkGone = errors.New("the stream broke")

// TestFetchChunks: with Chunk set, a body longer than a chunk goes to the
// sink in order, framed by Content-Length, chunked or gzip, and one that
// fits comes whole; the streamed cap, the digest, a failure part way and a
// sink that fails hold; and every byte taken from the budget comes back.
func TestFetchChunks(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		const chunk = 32 << 10
		body := pattern(300<<10 + 17)
		tests := []struct {
			name       string
			framing    string // "length", "chunked", "gzip" or "cut" (the connection closes part way)
			size       int
			maxStream  int64
			sinkFails  int
			wantChunks int // 0: inline
			wantLength int
			wantTrunc  bool
			wantCode   fetchv1.ErrorCode
		}{
			{name: "fits: inline", framing: "length", size: chunk, wantLength: chunk},
			{name: "a byte over", framing: "length", size: chunk + 1, wantChunks: 2, wantLength: chunk + 1},
			{name: "many, length", framing: "length", size: len(body), wantChunks: 10, wantLength: len(body)},
			{name: "many, chunked", framing: "chunked", size: len(body), wantChunks: 10, wantLength: len(body)},
			{name: "many, gzip", framing: "gzip", size: len(body), wantChunks: 10, wantLength: len(body)},
			{name: "capped", framing: "length", size: len(body), maxStream: 100 << 10, wantChunks: 4, wantLength: 100 << 10, wantTrunc: true},
			{name: "capped at a chunk boundary", framing: "chunked", size: len(body), maxStream: 3 * chunk, wantChunks: 3, wantLength: 3 * chunk, wantTrunc: true},
			{name: "cut part way", framing: "cut", size: len(body), wantChunks: 4, wantLength: 100 << 10, wantCode: fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
			{name: "the sink fails", framing: "length", size: len(body), sinkFails: 2, wantChunks: 2, wantLength: 2 * chunk, wantCode: fetchv1.ErrorCode_ERROR_CODE_INTERNAL},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				want := body[:tt.size]
				var url string
				switch tt.framing {
				case "cut":
					url = rawURL(t, func(c net.Conn) {
						if respond(c, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", tt.size)) {
							c.Write(want[:tt.wantLength])
						}
					})
				default:
					srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
						switch tt.framing {
						case "length":
							w.Header().Set("Content-Length", fmt.Sprint(len(want)))
							w.Write(want)
						case "chunked":
							for off := 0; off < len(want); off += 10000 {
								w.Write(want[off:min(off+10000, len(want))])
								w.(http.Flusher).Flush()
							}
						case "gzip":
							w.Header().Set("Content-Encoding", "gzip")
							w.Write(gzipped(t, want))
						}
					})
					url = srv.URL
				}
				const budget = 1 << 20
				mem := semaphore.NewWeighted(budget)
				f := newFetcher(t, engine, Config{Policy: loopbackPolicy()})
				lim := testLimits
				lim.Digest, lim.ChunkBytes, lim.MaxStreamBytes = true, chunk, tt.maxStream
				job, err := Validate(&fetchv1.FetchRequest{Url: url}, lim)
				if err != nil {
					t.Fatal(err)
				}
				sink := &collectSink{t: t, mem: mem, size: chunk, fail: tt.sinkFails}
				job.Sink, job.Memory = sink, mem
				resp := &fetchv1.FetchResponse{}
				held := f.Fetch(testctx.New(t), job, resp)

				if got := resp.GetError().GetCode(); got != tt.wantCode {
					t.Errorf("error %v, want code %v", resp.GetError(), tt.wantCode)
				}
				got := sink.body
				if tt.wantChunks == 0 {
					got = resp.GetBody()
				} else if len(resp.GetBody()) > 0 || !resp.GetStreamed() {
					t.Errorf("streamed %v with %d inline bytes; want streamed, none inline", resp.GetStreamed(), len(resp.GetBody()))
				}
				if sink.chunks != tt.wantChunks || resp.GetBodyLength() != uint64(tt.wantLength) || resp.GetTruncated() != tt.wantTrunc {
					t.Errorf("%d chunks, body_length %d, truncated %v; want %d, %d, %v",
						sink.chunks, resp.GetBodyLength(), resp.GetTruncated(), tt.wantChunks, tt.wantLength, tt.wantTrunc)
				}
				if tt.sinkFails == 0 && !bytes.Equal(got, want[:tt.wantLength]) {
					t.Errorf("got %d body bytes, not the upstream's first %d", len(got), tt.wantLength)
				}
				if !bytes.Equal(resp.GetBodySha256(), sum(want[:tt.wantLength])) {
					t.Errorf("body_sha256 %x, want that of the first %d bytes", resp.GetBodySha256(), tt.wantLength)
				}
				// What the budget lent comes back: all of it once the
				// result's inline body, if any, is released.
				wantHeld := int64(0)
				if tt.wantChunks == 0 {
					wantHeld = max(int64(cap(resp.GetBody()))-FreeBodyBytes, 0)
				}
				if held != wantHeld {
					t.Errorf("Fetch holds %d bytes of the budget, want %d", held, wantHeld)
				}
				mem.Release(held)
				if !mem.TryAcquire(budget) {
					t.Errorf("the budget did not get all its bytes back")
				}
			})
		}
	})
}

// TestReadCappedBudget: a body that grows past FreeBodyBytes takes what it
// may need from the budget before it grows, and keeps only what its buffer
// holds; a body that fits in FreeBodyBytes takes nothing; a budget that
// cannot be had fails the read with the context's error.
func TestReadCappedBudget(t *testing.T) {
	tests := []struct {
		name          string
		size          int
		contentLength int64
		wantHeldMax   int64
	}{
		{"small: nothing", 10 << 10, -1, 0},
		{"exactly free: the byte that meets EOF", FreeBodyBytes, FreeBodyBytes, 1},
		{"known length: exactly what it needs", 200 << 10, 200 << 10, 200<<10 + 1 - FreeBodyBytes},
		{"unknown length: its buffer", 200 << 10, -1, 256<<10 - FreeBodyBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := semaphore.NewWeighted(1 << 20)
			b := &body{mem: mem}
			buf, more, err := b.readCapped(context.Background(), bytes.NewReader(pattern(tt.size)), tt.contentLength, 512<<10)
			if err != nil || more || len(buf) != tt.size {
				t.Fatalf("readCapped = %d bytes, more %v, %v; want %d, false, nil", len(buf), more, err, tt.size)
			}
			if b.held != max(int64(cap(buf))-FreeBodyBytes, 0) || b.held > tt.wantHeldMax {
				t.Errorf("holds %d of the budget for a %d-byte buffer; want its size beyond %d, at most %d", b.held, cap(buf), FreeBodyBytes, tt.wantHeldMax)
			}
		})
	}
	t.Run("budget short", func(t *testing.T) {
		mem := semaphore.NewWeighted(1 << 20)
		mem.Acquire(context.Background(), 1<<20) // all lent out
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		b := &body{mem: mem}
		_, _, err := b.readCapped(ctx, bytes.NewReader(pattern(200<<10)), -1, 512<<10)
		if !errors.Is(err, context.Canceled) || b.held != 0 {
			t.Errorf("readCapped with the budget lent out = %v, holding %d; want context.Canceled, 0", err, b.held)
		}
	})
}
