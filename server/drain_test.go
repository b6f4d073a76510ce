package server

import (
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// TestDrainFinishesQueuedJobs checks the drain's promise: a stream stops
// reading jobs, and every job it has read, started or still queued behind
// the host cap, is fetched and answered. A stream whose caller had
// half-closed ends OK; one that may still have unread jobs ends UNAVAILABLE
// with the fetchd-unstarted trailer, and none of its unread jobs starts.
func TestDrainFinishesQueuedJobs(t *testing.T) {
	const queued = 4 // jobs for one host, with a host cap of 1: one runs, three wait
	tests := []struct {
		name      string
		halfClose bool // the caller half-closes before the drain
		wantCode  codes.Code
	}{
		{"half-closed", true, codes.OK},
		{"stream open", false, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := testupstream.New(t)
			c, s := startServer(t, WithConcurrency(8), WithHostConcurrency(1))
			stream, err := c.Fetch(testctx.New(t))
			if err != nil {
				t.Fatal(err)
			}
			for range queued {
				if err := stream.Send(job(up.URL + "/?delay=100ms&tag=queued")); err != nil {
					t.Fatal(err)
				}
			}
			// Jobs are read in order: once the answer to an invalid job
			// sent last is back, every job before it has been read.
			if err := stream.Send(job("ftp://example.com/")); err != nil {
				t.Fatal(err)
			}
			if r, err := stream.Recv(); err != nil || r.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST {
				t.Fatalf("Recv of the invalid job = %v, %v; want ERROR_CODE_INVALID_REQUEST", r, err)
			}
			testctx.WaitFor(t, 10*time.Second, "the first job in flight", func() bool { return up.InFlight() == 1 })
			if tt.halfClose {
				stream.CloseSend()
			}
			s.Drain()
			if !tt.halfClose {
				// Sent after the drain: never read, never started.
				stream.Send(job(up.URL + "/?tag=late"))
			}
			results, final := recvAll(stream)
			if len(results) != queued {
				t.Errorf("got %d results after the drain, want all %d jobs read (1 in flight, %d queued)", len(results), queued, queued-1)
			}
			for _, r := range results {
				if r.GetStatusCode() != http.StatusOK {
					t.Errorf("job %d: status %d, error %v; want 200", r.GetIndex(), r.GetStatusCode(), r.GetError())
				}
			}
			if got := status.Code(final); got != tt.wantCode {
				t.Errorf("stream ended with %v, want %v", final, tt.wantCode)
			}
			wantTrailer := tt.wantCode == codes.Unavailable
			if got := stream.Trailer().Get(TrailerUnstarted); (len(got) == 1 && got[0] == "true") != wantTrailer {
				t.Errorf("trailer %s = %q, want set: %v", TrailerUnstarted, got, wantTrailer)
			}
			if n := up.Tag("queued"); n != queued {
				t.Errorf("upstream saw %d of the queued jobs, want %d", n, queued)
			}
			if n := up.Tag("late"); n != 0 {
				t.Errorf("upstream saw %d jobs sent after the drain, want 0", n)
			}
		})
	}
}

// TestDrainBatchUnread checks a FetchBatch with more jobs than the stream
// queue holds: on drain the jobs read are answered, the rest never start,
// and the call ends UNAVAILABLE with the fetchd-unstarted trailer.
func TestDrainBatchUnread(t *testing.T) {
	const jobs, queue = 8, 3
	up := testupstream.New(t)
	c, s := startServer(t, WithConcurrency(8), WithHostConcurrency(1), WithStreamQueue(queue))
	// The first job is slow, so that the drain starts well before the
	// lane gets through the queue and frees slots for the unread jobs.
	req := fetchv1.FetchBatchRequest{Jobs: []*fetchv1.FetchRequest{job(up.URL + "/?delay=500ms")}}
	for range jobs - 1 {
		req.Jobs = append(req.Jobs, job(up.URL+"/?delay=10ms"))
	}
	stream, err := c.FetchBatch(testctx.New(t), &req)
	if err != nil {
		t.Fatal(err)
	}
	// One job runs, queue jobs wait: the receiver holds the next one back.
	testctx.WaitFor(t, 10*time.Second, "the first job in flight", func() bool { return up.InFlight() == 1 })
	s.Drain()
	var results []*fetchv1.FetchResponse
	for {
		r, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("batch ended with %v, want Unavailable", err)
			}
			break
		}
		results = append(results, r.GetResult())
	}
	if n := len(results); n == 0 || n >= jobs || int64(n) != up.Hits() {
		t.Errorf("got %d results, upstream hits %d; want every job read answered, some of the %d unread", n, up.Hits(), jobs)
	}
	for _, r := range results {
		if r.GetStatusCode() != http.StatusOK {
			t.Errorf("job %d: status %d, error %v; want 200", r.GetIndex(), r.GetStatusCode(), r.GetError())
		}
	}
	if got := stream.Trailer().Get(TrailerUnstarted); len(got) != 1 || got[0] != "true" {
		t.Errorf("trailer %s = %q, want \"true\"", TrailerUnstarted, got)
	}
}

// recvAll reads a Fetch stream to its end and returns its results and final
// error (nil for OK).
func recvAll(stream grpc.BidiStreamingClient[fetchv1.FetchRequest, fetchv1.FetchResponse]) ([]*fetchv1.FetchResponse, error) {
	var out []*fetchv1.FetchResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}
