package client_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// TestChunkedBodies fetches bodies through a real fetchd with chunked
// bodies on: one longer than the chunk comes in chunks and is reassembled
// byte-identical (or written whole to its writer), one that fits comes
// inline as before; no chunk is ever yielded.
func TestChunkedBodies(t *testing.T) {
	const big = 10 << 20
	tests := []struct {
		name         string
		writer       bool
		size         int64
		wantStreamed bool
	}{
		{name: "10 MiB reassembled", size: big, wantStreamed: true},
		{name: "10 MiB to a writer", writer: true, size: big, wantStreamed: true},
		{name: "small inline", size: 1000},
		{name: "small inline to a writer", writer: true, size: 1000},
		{name: "empty to a writer", writer: true, size: 0},
	}
	up := startBigUpstream(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachMode(t, func(t *testing.T, mode string) {
				fw := newFileWriters(t)
				opts := []client.Option{client.WithChunkBytes(1 << 20), client.WithDigest(true)}
				if tt.writer {
					opts = append(opts, client.WithBodyWriter(fw.open))
				}
				c := fetchdClient(t, mode, nil, opts...)
				jobs := []*client.Job{client.Get(fmt.Sprintf("%s/?size=%d", up.URL, tt.size))}
				r := collect(t, c.Fetch(testctx.New(t), slices.Values(jobs)), 1)[0]
				want := testupstream.PatternSum(tt.size)
				if r.GetChunk() != nil || r.GetStatusCode() != 200 || r.GetError() != nil {
					t.Fatalf("result = %v, want status 200 and no chunk", r)
				}
				if r.GetStreamed() != tt.wantStreamed || r.GetBodyLength() != uint64(tt.size) || r.GetTruncated() ||
					!slices.Equal(r.GetBodySha256(), want[:]) {
					t.Errorf("result streamed %v, body_length %d, truncated %v, sha256 %x; want streamed %v, %d bytes, sha256 %x",
						r.GetStreamed(), r.GetBodyLength(), r.GetTruncated(), r.GetBodySha256(), tt.wantStreamed, tt.size, want)
				}
				if !tt.writer {
					if got := patternSumOf(r.GetBody()); int64(len(r.GetBody())) != tt.size || got != want {
						t.Errorf("body of %d bytes with sha256 %x, want %d bytes with %x", len(r.GetBody()), got, tt.size, want)
					}
					return
				}
				if r.GetBody() != nil {
					t.Errorf("with a body writer, Result.Body holds %d bytes, want nil", len(r.GetBody()))
				}
				if n, got := fw.fileSum(t, 0); n != tt.size || got != want {
					t.Errorf("written body of %d bytes with sha256 %x, want %d bytes with %x", n, got, tt.size, want)
				}
				if o, f, a := fw.counts(); o != 1 || f != 1 || a != 0 {
					t.Errorf("writers opened %d, finished %d, aborted %d; want 1, 1, 0", o, f, a)
				}
			})
		})
	}
}

// TestOrderedBodiesNotHeld: in input order, with the head job slow, the
// bodies of the later jobs reach their writers, whole and finished, while
// the head is still being fetched; only their results wait.
func TestOrderedBodiesNotHeld(t *testing.T) {
	eachMode(t, func(t *testing.T, mode string) {
		up := startBigUpstream(t)
		fw := newFileWriters(t)
		c := fetchdClient(t, mode, nil, client.WithBodyWriter(fw.open), client.WithWindow(4))
		const size = 4 << 20
		jobs := []*client.Job{client.Get(up.URL + "/?size=100&wait=1")}
		for i := range 3 {
			jobs = append(jobs, client.Get(fmt.Sprintf("%s/?size=%d&i=%d", up.URL, size, i)))
		}
		go func() {
			testctx.WaitFor(t, waitTimeout, "the later bodies to be written", func() bool {
				return fw.finishedAt(1) && fw.finishedAt(2) && fw.finishedAt(3)
			})
			up.releaseAll()
		}()
		var order []uint64
		for r, err := range c.FetchOrdered(testctx.New(t), slices.Values(jobs)) {
			if err != nil {
				t.Fatalf("call failed: %v", err)
			}
			order = append(order, r.GetIndex())
			if r.GetIndex() == 0 {
				for i := uint64(1); i < 4; i++ {
					if !fw.finishedAt(i) {
						t.Errorf("job %d's body was not written when the head's result came", i)
					}
				}
			}
		}
		if !slices.Equal(order, []uint64{0, 1, 2, 3}) {
			t.Errorf("FetchOrdered yielded %v, want [0 1 2 3]", order)
		}
		want := testupstream.PatternSum(size)
		for i := uint64(1); i < 4; i++ {
			if n, got := fw.fileSum(t, i); n != size || got != want {
				t.Errorf("job %d: %d bytes with sha256 %x, want %d with %x", i, n, got, size, want)
			}
		}
	})
}

// TestBodyWriterAfterBreak kills the backend while a body streams and
// starts it again: the writer of the broken attempt is aborted, a GET is
// resubmitted to a new writer and its file is whole; a POST is answered
// OUTCOME_UNKNOWN and leaves no file.
func TestBodyWriterAfterBreak(t *testing.T) {
	tests := []struct {
		method   string
		wantCode fetchv1.ErrorCode
		wantOpen int
	}{
		{method: "GET", wantOpen: 2},
		{method: "POST", wantCode: fetchv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN, wantOpen: 1},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			b := startBackend(t)
			up := startBigUpstream(t)
			fw := newFileWriters(t)
			c := newClient(t, b.addr, client.WithBodyWriter(fw.open), client.WithChunkBytes(64<<10))
			const size, hold = 4 << 20, 1 << 20
			jobs := []*client.Job{{Url: fmt.Sprintf("%s/?size=%d&hold=%d", up.URL, size, hold), Method: tt.method}}
			go func() {
				testctx.WaitFor(t, waitTimeout, "part of the body", func() bool { return fw.bytesWritten(0) > 0 })
				b.kill()
				startBackendAt(t, b.addr)
			}()
			r := collect(t, c.Fetch(testctx.New(t), slices.Values(jobs)), 1)[0]
			if got := r.GetError().GetCode(); got != tt.wantCode {
				t.Fatalf("result error = %v, want %v", r.GetError(), tt.wantCode)
			}
			o, f, a := fw.counts()
			if o != tt.wantOpen || a != 1 || f != tt.wantOpen-1 {
				t.Errorf("writers opened %d, finished %d, aborted %d; want %d, %d, 1", o, f, a, tt.wantOpen, tt.wantOpen-1)
			}
			if left := fw.leftovers(t); len(left) > 0 {
				t.Errorf("temporary files left: %q", left)
			}
			if tt.wantCode != 0 {
				return
			}
			want := testupstream.PatternSum(size)
			if n, got := fw.fileSum(t, 0); n != size || got != want {
				t.Errorf("body after the break: %d bytes with sha256 %x, want %d with %x", n, got, size, want)
			}
		})
	}
}

// TestBodyWriterFails: a writer whose Write fails fails the call with its
// error, after which every writer opened was finished or aborted (and
// goleak, in TestMain, sees no goroutine left).
func TestBodyWriterFails(t *testing.T) {
	eachMode(t, func(t *testing.T, mode string) {
		up := startBigUpstream(t)
		fw := newFileWriters(t)
		fw.failWrite = 2
		c := fetchdClient(t, mode, nil, client.WithBodyWriter(fw.open), client.WithChunkBytes(64<<10))
		var jobs []*client.Job
		for i := range 8 {
			jobs = append(jobs, client.Get(fmt.Sprintf("%s/?size=%d&i=%d", up.URL, 2<<20, i)))
		}
		var callErr error
		results := 0
		for r, err := range c.Fetch(testctx.New(t), slices.Values(jobs)) {
			if err != nil {
				callErr = err
				continue
			}
			results++
			if r.GetChunk() != nil {
				t.Errorf("result %d is a chunk", r.GetIndex())
			}
		}
		if !errors.Is(callErr, client.ErrBodyWriter) || !errors.Is(callErr, errDiskFull) {
			t.Fatalf("call ended with %v, want an error wrapping ErrBodyWriter and the writer's", callErr)
		}
		o, f, a := fw.counts()
		if o == 0 || o != f+a {
			t.Errorf("writers opened %d, finished %d, aborted %d; want every one opened finished or aborted", o, f, a)
		}
		if left := fw.leftovers(t); len(left) > 0 {
			t.Errorf("temporary files left: %q", left)
		}
		t.Logf("%d results before the error; writers opened %d, finished %d, aborted %d", results, o, f, a)
	})
}
