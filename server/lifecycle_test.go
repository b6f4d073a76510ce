package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testbuf"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

func TestCancelReachesUpstream(t *testing.T) {
	up := testupstream.New(t)
	const limit = 5
	c, s := startServer(t, WithConcurrency(limit))
	ctx, cancel := context.WithCancel(testctx.New(t))
	stream, err := c.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range limit + 3 {
		if err := stream.Send(job(up.URL + "/?hang=1")); err != nil {
			t.Fatal(err)
		}
	}
	testctx.WaitFor(t, 10*time.Second, "every pool slot busy upstream", func() bool { return up.InFlight() == limit })
	cancel()
	testctx.WaitFor(t, 10*time.Second, "upstream to see its requests cancelled", func() bool { return up.Cancelled() == limit })
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv after cancel = %v, want Canceled", err)
	}
	// The stream's pool slots are free again: a new stream gets all of them.
	testctx.WaitFor(t, 10*time.Second, "pool slots released", func() bool {
		if s.pool.TryAcquire(limit) {
			s.pool.Release(limit)
			return true
		}
		return false
	})
	res, err := fetchAll(testctx.New(t), t, c, []*fetchv1.FetchRequest{job(up.URL)})
	if err != nil || len(res) != 1 || res[0].GetStatusCode() != http.StatusOK {
		t.Errorf("fetch after cancel: %v, %v; want one 200", res, err)
	}
	if h := up.Hits(); h != limit+1 {
		t.Errorf("upstream hits = %d, want %d (queued jobs of the cancelled stream must not start)", h, limit+1)
	}
}

// TestSlowReader checks backpressure: a caller that sends jobs as fast as
// it can and never reads results gets at most one window of jobs started
// (plus the few results that HTTP/2 flow control lets gRPC buffer on the
// way to the caller), and then flow control stops its sends.
func TestSlowReader(t *testing.T) {
	up := testupstream.New(t)
	const window = 16
	c, _ := startServer(t, WithConcurrency(4), WithStreamWindow(window), WithStreamQueue(window))
	ctx, cancel := context.WithCancel(testctx.New(t))
	defer cancel()
	stream, err := c.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each job carries 8 KiB of id, so that 64 MiB of jobs is far more
	// than HTTP/2 flow control windows can hold.
	pad := strings.Repeat("p", 8<<10)
	const maxJobs = 8192
	var sent atomic.Int64
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		for range maxJobs {
			if stream.Send(&fetchv1.FetchRequest{Url: up.URL + "/?size=65536", Id: pad}) != nil {
				return
			}
			sent.Add(1)
		}
	}()
	// Wait until sending stalls.
	var last int64 = -1
	for {
		time.Sleep(200 * time.Millisecond)
		n := sent.Load()
		if n == last || n == maxJobs {
			break
		}
		last = n
	}
	if n := sent.Load(); n == maxJobs {
		t.Errorf("caller sent all %d jobs (%d MiB) without reading: no backpressure", n, n*8>>10)
	}
	// 64 KiB results: gRPC's per-stream write quota and the caller's
	// initial flow control window hold about two of them.
	if h := up.Hits(); h > window+4 {
		t.Errorf("upstream hits = %d with no result read, want at most the window %d + 4 in transit", h, window)
	}
	t.Logf("sent %d jobs before flow control stopped the caller; %d fetched", sent.Load(), up.Hits())

	// Reading the results lets everything through.
	got := int64(0)
	for got < 200 {
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("Recv: %v", err)
		}
		got++
	}
	if sent.Load() <= last {
		t.Errorf("sends did not resume after reading results")
	}
	cancel()
	<-sendDone
}

func TestDrain(t *testing.T) {
	tests := []struct {
		name      string
		halfClose bool
		wantCode  codes.Code
	}{
		{"stream open", false, codes.Unavailable},
		{"half-closed", true, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := testupstream.New(t)
			c, s := startServer(t, WithConcurrency(2))
			stream, err := c.Fetch(testctx.New(t))
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := stream.Send(job(up.URL + "/?delay=300ms")); err != nil {
					t.Fatal(err)
				}
			}
			testctx.WaitFor(t, 10*time.Second, "jobs in flight", func() bool { return up.InFlight() == 2 })
			if tt.halfClose {
				stream.CloseSend()
			}
			s.Drain()
			if !tt.halfClose {
				// Sent after the drain: never started, never answered.
				stream.Send(job(up.URL + "/?late=1"))
			}
			var results int
			var final error
			for {
				r, err := stream.Recv()
				if err != nil {
					final = err
					break
				}
				results++
				if r.GetStatusCode() != http.StatusOK {
					t.Errorf("in-flight job %d: status %d, error %v; want 200", r.GetIndex(), r.GetStatusCode(), r.GetError())
				}
			}
			if results != 2 {
				t.Errorf("got %d results, want the 2 in-flight jobs", results)
			}
			if errors.Is(final, io.EOF) {
				final = nil
			}
			if got := status.Code(final); got != tt.wantCode {
				t.Errorf("stream ended with %v, want %v", final, tt.wantCode)
			}
			wantTrailer := tt.wantCode == codes.Unavailable
			if got := stream.Trailer().Get(TrailerUnstarted); (len(got) == 1 && got[0] == "true") != wantTrailer {
				t.Errorf("trailer %s = %q, want set: %v", TrailerUnstarted, got, wantTrailer)
			}
			if up.Hits() != 2 {
				t.Errorf("upstream hits = %d, want 2", up.Hits())
			}
			// New streams are turned away at once.
			st2, err := c.Fetch(testctx.New(t))
			if err != nil {
				t.Fatal(err)
			}
			st2.Send(job(up.URL))
			if _, err := st2.Recv(); status.Code(err) != codes.Unavailable {
				t.Errorf("new stream during drain: Recv = %v, want Unavailable", err)
			}
		})
	}
}

// TestLogUnanswered: the log line of a stream cut off by its caller counts
// the results it sent (none) and the jobs it had read and not answered.
func TestLogUnanswered(t *testing.T) {
	up := testupstream.New(t)
	var logs testbuf.Buffer
	c, _ := startServer(t, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx, cancel := context.WithCancel(testctx.New(t))
	stream, err := c.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := stream.Send(job(up.URL + "/?hang=1")); err != nil {
			t.Fatal(err)
		}
	}
	testctx.WaitFor(t, 10*time.Second, "3 requests upstream", func() bool { return up.InFlight() == 3 })
	cancel()
	testctx.WaitFor(t, 10*time.Second, "the stream's log line", func() bool { return strings.Contains(logs.String(), "stream finished") })
	if line := logs.String(); !strings.Contains(line, "jobs=0") || !strings.Contains(line, "unanswered=3") || !strings.Contains(line, "status=Canceled") {
		t.Errorf("log = %q, want jobs=0 unanswered=3 status=Canceled", line)
	}
}

// TestLogBatchDeadline: a FetchBatch cut off by its caller's deadline with
// jobs unanswered logs DeadlineExceeded, not OK: no receive or send of it
// failed, but the call ended.
func TestLogBatchDeadline(t *testing.T) {
	up := testupstream.New(t)
	var logs testbuf.Buffer
	c, _ := startServer(t, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))), WithConcurrency(1))
	// Another stream holds the only pool slot: the batch's jobs stay
	// queued, so none gets a result to send.
	hold, err := c.Fetch(testctx.New(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Send(job(up.URL + "/?hang=1&hold=1")); err != nil {
		t.Fatal(err)
	}
	testctx.WaitFor(t, 10*time.Second, "the pool slot taken", func() bool { return up.InFlight() == 1 })
	ctx, cancel := context.WithTimeout(testctx.New(t), 500*time.Millisecond)
	defer cancel()
	stream, err := c.FetchBatch(ctx, &fetchv1.FetchBatchRequest{Jobs: []*fetchv1.FetchRequest{
		job(up.URL + "/?hang=1&i=0"), job(up.URL + "/?hang=1&i=1")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Recv = %v, want DeadlineExceeded", err)
	}
	testctx.WaitFor(t, 10*time.Second, "the batch's log line", func() bool { return strings.Contains(logs.String(), "stream finished") })
	if line := logs.String(); !strings.Contains(line, "unanswered=2") || !strings.Contains(line, "status=DeadlineExceeded") {
		t.Errorf("log = %q, want unanswered=2 status=DeadlineExceeded", line)
	}
}
