package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
)

// goodBody is what a well-behaved scripted fetchd streams for job: "body
// of " and its URL, in two chunks.
func goodBody(job *fetchv1.FetchRequest) string { return "body of " + job.GetUrl() }

// sendGood streams job i's body in two chunks and then its result.
func sendGood(i uint64, job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error {
	b := goodBody(job)
	return sendAll(send, chunkMsg(i, 0, b[:4]), chunkMsg(i, 4, b[4:]), streamedResult(i, job, uint64(len(b))))
}

// TestChunkProtocolErrors has a backend break the chunk protocol on its
// first stream, first job: the client drops that stream as broken, with
// an error that says what was wrong (seen when the retry budget is 1 and
// the backend is given up), and otherwise resubmits its jobs, whose bodies
// then arrive whole. No chunk is ever yielded as a result.
func TestChunkProtocolErrors(t *testing.T) {
	tests := []struct {
		name    string
		bad     func(job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error // job 0 of stream 0
		wantErr string
	}{
		{name: "gap", wantErr: "job 0: a chunk at offset 5, want 3",
			bad: func(job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error {
				return sendAll(send, chunkMsg(0, 0, "bod"), chunkMsg(0, 5, "of"))
			}},
		{name: "repeated offset", wantErr: "job 0: a chunk at offset 0, want 2",
			bad: func(job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error {
				return sendAll(send, chunkMsg(0, 0, "bo"), chunkMsg(0, 0, "bo"))
			}},
		{name: "job never sent", wantErr: "a chunk for job 7, which was never sent",
			bad: func(job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error {
				return send(chunkMsg(7, 0, "x"))
			}},
		{name: "after the result", wantErr: "a chunk for job 0 after its result",
			bad: func(job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error {
				if err := sendGood(0, job, send); err != nil {
					return err
				}
				return send(chunkMsg(0, uint64(len(goodBody(job))), "more"))
			}},
		{name: "result not streamed", wantErr: "job 0: a result not marked streamed after 2 body bytes in chunks",
			bad: func(job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error {
				return sendAll(send, chunkMsg(0, 0, "bo"),
					&fetchv1.FetchResponse{Index: 0, Url: job.GetUrl(), StatusCode: 200, Body: []byte("body"), BodyLength: 4})
			}},
		{name: "short body", wantErr: "job 0: a streamed result of body_length 10 after 4 bytes in chunks",
			bad: func(job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error {
				return sendAll(send, chunkMsg(0, 0, "body"), streamedResult(0, job, 10))
			}},
		{name: "streamed and inline", wantErr: "job 0: a streamed result with 4 body bytes inline",
			bad: func(job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error {
				r := streamedResult(0, job, 0)
				r.Body = []byte("body")
				return send(r)
			}},
	}
	jobs := []*client.Job{client.Get("http://127.0.0.1:1/a"), client.Get("http://127.0.0.1:1/b")}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scripted{answer: func(ctx context.Context, n int, i uint64, job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error {
				if n == 0 && i == 0 {
					if err := tt.bad(job, send); err != nil {
						return err
					}
					<-ctx.Done() // hold the stream open: the client must drop it
					return nil
				}
				return sendGood(i, job, send)
			}}
			addr := startScripted(t, s)

			c := newClient(t, addr, client.WithChunkBytes(4))
			for _, r := range collect(t, c.Fetch(testctx.New(t), slices.Values(jobs)), len(jobs)) {
				want := goodBody(jobs[r.GetIndex()])
				if r.GetChunk() != nil || string(r.GetBody()) != want || !r.GetStreamed() {
					t.Errorf("result %d = chunk %v, body %q, streamed %v; want no chunk, body %q, streamed",
						r.GetIndex(), r.GetChunk(), r.GetBody(), r.GetStreamed(), want)
				}
			}
			if s.opened() < 2 {
				t.Errorf("the backend saw %d streams, want the first dropped and another opened", s.opened())
			}

			once := newClient(t, startScripted(t, &scripted{answer: s.answer}), client.WithChunkBytes(4), client.WithRetryBudget(1))
			var callErr error
			for r, err := range once.Fetch(testctx.New(t), slices.Values(jobs)) {
				if err != nil {
					callErr = err
					continue
				}
				if r.GetChunk() != nil {
					t.Errorf("result %d is a chunk: %v", r.GetIndex(), r)
				}
			}
			if !errors.Is(callErr, client.ErrUnavailable) || !strings.Contains(callErr.Error(), "chunk protocol error: "+tt.wantErr) {
				t.Errorf("call with a retry budget of 1 ended with %v, want ErrUnavailable saying %q", callErr, tt.wantErr)
			}
		})
	}
}

// TestChunkedBreakScripted breaks the first stream after part of a body
// (on the wire, with no upstream involved): its writer is aborted, the
// job resubmitted to a new writer, and the file is whole; without a
// writer the partial body is dropped and the result has the whole body.
func TestChunkedBreakScripted(t *testing.T) {
	s := &scripted{answer: func(ctx context.Context, n int, i uint64, job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error {
		if n == 0 {
			if err := send(chunkMsg(i, 0, "body")); err != nil {
				return err
			}
			return status.Error(codes.Unavailable, "scripted: broken mid-body on purpose")
		}
		return sendGood(i, job, send)
	}}
	jobs := []*client.Job{client.Get("http://127.0.0.1:1/a")}
	want := goodBody(jobs[0])

	fw := newFileWriters(t)
	c := newClient(t, startScripted(t, s), client.WithBodyWriter(fw.open))
	r := collect(t, c.Fetch(testctx.New(t), slices.Values(jobs)), 1)[0]
	if r.GetBody() != nil || !r.GetStreamed() || r.GetError() != nil {
		t.Errorf("result = %v, want streamed, no body, no error", r)
	}
	if o, f, a := fw.counts(); o != 2 || f != 1 || a != 1 {
		t.Errorf("writers opened %d, finished %d, aborted %d; want 2, 1, 1", o, f, a)
	}
	if b, err := os.ReadFile(fw.file(0)); err != nil || string(b) != want {
		t.Errorf("file holds %q, %v; want %q", b, err, want)
	}

	s2 := &scripted{answer: s.answer}
	c2 := newClient(t, startScripted(t, s2), client.WithChunkBytes(4))
	r = collect(t, c2.Fetch(testctx.New(t), slices.Values(jobs)), 1)[0]
	if string(r.GetBody()) != want {
		t.Errorf("reassembled body = %q, want %q", r.GetBody(), want)
	}
}

// TestBodyWriterFailsScripted: an error from a writer's Write or Finish,
// or from open, ends the call with that error, and every writer opened
// was finished or aborted.
func TestBodyWriterFailsScripted(t *testing.T) {
	tests := []struct {
		name      string
		failWrite int
		failOpen  bool
	}{
		{name: "write", failWrite: 2},
		{name: "open", failOpen: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scripted{answer: func(ctx context.Context, n int, i uint64, job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error {
				return sendGood(i, job, send)
			}}
			fw := newFileWriters(t)
			fw.failWrite = tt.failWrite
			open := fw.open
			if tt.failOpen {
				open = func(uint64) (client.BodyWriter, error) { return nil, errDiskFull }
			}
			c := newClient(t, startScripted(t, s), client.WithBodyWriter(open))
			jobs := make([]*client.Job, 20)
			for i := range jobs {
				jobs[i] = client.Get(fmt.Sprintf("http://127.0.0.1:1/%d", i))
			}
			var callErr error
			for _, err := range c.Fetch(testctx.New(t), slices.Values(jobs)) {
				if err != nil {
					callErr = err
				}
			}
			if !errors.Is(callErr, client.ErrBodyWriter) || !errors.Is(callErr, errDiskFull) {
				t.Fatalf("call ended with %v, want ErrBodyWriter wrapping %v", callErr, errDiskFull)
			}
			if o, f, a := fw.counts(); o != f+a {
				t.Errorf("writers opened %d, finished %d, aborted %d; want each finished or aborted", o, f, a)
			}
			if left := fw.leftovers(t); len(left) > 0 {
				t.Errorf("temporary files left: %q", left)
			}
		})
	}
}
