package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// serveLocal runs jobs on one ServeLocal stream. Each message sent is
// handed to another goroutine, as the in-process client does, which
// scribbles over it at once (a caller owns what it is handed) after
// keeping what the test checks: the results by index, and the streamed
// bodies reassembled from their chunks' data, kept as sent.
func serveLocal(ctx context.Context, tb testing.TB, s *Server, jobs []*fetchv1.FetchRequest) (map[uint64]*fetchv1.FetchResponse, map[uint64][]byte, error) {
	tb.Helper()
	next := 0
	recv := func() (*fetchv1.FetchRequest, error) {
		if next == len(jobs) {
			return nil, io.EOF
		}
		next++
		return jobs[next-1], nil
	}
	msgs := make(chan *fetchv1.FetchResponse)
	results := map[uint64]*fetchv1.FetchResponse{}
	chunks := map[uint64][][]byte{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for r := range msgs {
			if c := r.GetChunk(); c != nil {
				chunks[r.GetIndex()] = append(chunks[r.GetIndex()], c.GetData())
				r.Chunk = nil
				continue
			}
			keep := proto.CloneOf(r)
			results[keep.GetIndex()] = keep
			r.Index, r.Body, r.Error, r.Headers, r.StatusCode = 1<<40, nil, nil, nil, 0
		}
	})
	send := func(r *fetchv1.FetchResponse) error {
		msgs <- r
		return nil
	}
	err := s.ServeLocal(ctx, recv, send, func(metadata.MD) {})
	close(msgs)
	wg.Wait()
	bodies := map[uint64][]byte{}
	for idx, cs := range chunks {
		bodies[idx] = bytes.Join(cs, nil)
	}
	return results, bodies, err
}

// TestServeLocalHandsOver: a local stream's results and chunks are the
// caller's once sent. The caller overwrites each at once, under -race; the
// chunks it kept still hold the body as sent (their buffer is not the one
// the fetch reads the next chunk into), identical jobs share a fetch
// without the followers reading the leader's result after it was handed
// over, and the requests are left as they were.
func TestServeLocalHandsOver(t *testing.T) {
	u := testupstream.New(t)
	s := New(WithAllowCIDRs(loopback), WithLogger(quiet), WithDedup(true))
	defer s.Close()
	const size = 3*MinChunkBytes + 100
	var identical, chunked []*fetchv1.FetchRequest
	for range 4 {
		identical = append(identical, job(u.URL+"/?delay=50ms&size=300"))
	}
	for i := range 3 {
		chunked = append(chunked, job(fmt.Sprintf("%s/?pattern=%d&n=%d", u.URL, size, i)))
	}
	chunked[0].StreamOptions = &fetchv1.StreamOptions{ChunkBytes: MinChunkBytes} // no dedup

	for _, jobs := range [][]*fetchv1.FetchRequest{identical, chunked} {
		before := make([]*fetchv1.FetchRequest, len(jobs))
		for i, j := range jobs {
			before[i] = proto.CloneOf(j)
		}
		results, bodies, err := serveLocal(t.Context(), t, s, jobs)
		if err != nil {
			t.Fatalf("ServeLocal = %v, want nil", err)
		}
		if len(results) != len(jobs) {
			t.Fatalf("ServeLocal gave %d results, want %d", len(results), len(jobs))
		}
		for i := range jobs {
			r := results[uint64(i)]
			if r.GetError() != nil || r.GetStatusCode() != 200 {
				t.Errorf("job %d: result %v, want status 200", i, r)
			}
			if !proto.Equal(jobs[i], before[i]) {
				t.Errorf("job %d = %v after the stream, want it unchanged: %v", i, jobs[i], before[i])
			}
		}
		if jobs[0].GetStreamOptions() == nil {
			continue
		}
		for i := range jobs {
			if got, want := bodies[uint64(i)], testupstream.PatternBytes(size); !bytes.Equal(got, want) {
				t.Errorf("job %d: body from its chunks differs from the upstream's (%d bytes, want %d)", i, len(got), len(want))
			}
		}
	}
	if want := int64(1 + len(chunked)); u.Hits() != want {
		t.Errorf("%d upstream hits, want %d: the identical jobs share one fetch", u.Hits(), want)
	}
}

// TestServeLocalInvalidUTF8: a job handed over with a string that is not
// UTF-8 gets its own ERROR_CODE_INVALID_REQUEST result, naming the fields,
// with valid strings echoed, as a job that arrives encoded does; the
// stream goes on.
func TestServeLocalInvalidUTF8(t *testing.T) {
	u := testupstream.New(t)
	s := New(WithAllowCIDRs(loopback), WithLogger(quiet))
	defer s.Close()
	bad := &fetchv1.FetchRequest{Url: u.URL + "/\xff", Id: "a\xffb",
		Headers: []*fetchv1.Header{{Name: "X-A", Value: "ok"}, {Name: "X-B", Value: "\xfe"}}}
	results, _, err := serveLocal(t.Context(), t, s, []*fetchv1.FetchRequest{bad, job(u.URL)})
	if err != nil {
		t.Fatalf("ServeLocal = %v, want nil", err)
	}
	r := results[0]
	wantMsg := "fields url, headers[1].value and id are not valid UTF-8"
	if r.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST || !strings.Contains(r.GetError().GetMessage(), wantMsg) {
		t.Errorf("ServeLocal(bad job) = %v, want INVALID_REQUEST %q", r.GetError(), wantMsg)
	}
	if r.GetId() != "a\uFFFDb" {
		t.Errorf("ServeLocal(bad job).Id = %q, want %q", r.GetId(), "a\uFFFDb")
	}
	if bad.GetId() != "a\xffb" {
		t.Errorf("the bad job's Id became %q: the request was modified", bad.GetId())
	}
	if got := results[1]; got.GetStatusCode() != 200 {
		t.Errorf("ServeLocal(good job after the bad) = %v, want status 200", got)
	}
}
