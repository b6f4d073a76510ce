package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testbuf"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server"
)

// TestEmbeddedDefaultDeny: the zero Config is fetchd's egress policy,
// default-deny: a job to loopback is ERROR_CODE_BLOCKED and never reaches
// the upstream.
func TestEmbeddedDefaultDeny(t *testing.T) {
	up := testupstream.New(t)
	c, err := client.NewEmbedded(server.Config{})
	if err != nil {
		t.Fatalf("NewEmbedded(Config{}) = %v", err)
	}
	defer c.Close()
	r := collect(t, c.Fetch(testctx.New(t), slices.Values([]*client.Job{client.Get(up.URL)})), 1)[0]
	if r.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_BLOCKED {
		t.Errorf("Fetch(%q) = %v, want ERROR_CODE_BLOCKED", up.URL, r)
	}
	if up.Hits() != 0 {
		t.Errorf("upstream hits = %d, want 0", up.Hits())
	}
}

// TestEmbeddedConfigError: a Config field out of range is NewEmbedded's
// error, wrapping server.ErrConfig.
func TestEmbeddedConfigError(t *testing.T) {
	c, err := client.NewEmbedded(server.Config{Concurrency: -1})
	if !errors.Is(err, server.ErrConfig) {
		t.Errorf("NewEmbedded(Concurrency -1) = %v, %v; want an error wrapping server.ErrConfig", c, err)
	}
}

// TestEmbeddedCancel: ending a call's ctx cancels its jobs in the engine:
// the upstream sees every request cancelled, and the call yields the
// context's error.
func TestEmbeddedCancel(t *testing.T) {
	up := testupstream.New(t)
	c := newEmbedded(t, nil)
	const n = 5
	var jobs []*client.Job
	for i := range n {
		jobs = append(jobs, client.Get(fmt.Sprintf("%s/?hang=1&i=%d", up.URL, i)))
	}
	ctx, cancel := context.WithCancel(testctx.New(t))
	go func() {
		testctx.WaitFor(t, waitTimeout, "every job to reach the upstream", func() bool { return up.InFlight() == n })
		cancel()
	}()
	var results int
	var callErr error
	for _, err := range c.Fetch(ctx, slices.Values(jobs)) {
		if err != nil {
			callErr = err
			continue
		}
		results++
	}
	if !errors.Is(callErr, context.Canceled) {
		t.Errorf("call ended with %v after %d results, want context.Canceled", callErr, results)
	}
	testctx.WaitFor(t, waitTimeout, "the upstream to see every request cancelled", func() bool { return up.Cancelled() == n })
}

// TestEmbeddedCloseDrains: Close while a call is in progress stops the
// engine taking jobs, lets it fetch and answer the jobs it had taken (two
// fetching, two queued), answers the call's other jobs
// ERROR_CODE_UNAVAILABLE, ends the call with an error wrapping ErrClosed
// and ErrUnavailable, and returns once the engine's fetches are done; a
// job not taken from the input gets no result. A call after Close
// fails with ErrClosed.
func TestEmbeddedCloseDrains(t *testing.T) {
	up := testupstream.New(t)
	c := newEmbedded(t, []server.Option{server.WithConcurrency(2), server.WithStreamQueue(2)}, client.WithWindow(10))
	var jobs []*client.Job
	for i := range 10 {
		jobs = append(jobs, client.Get(fmt.Sprintf("%s/?delay=200ms&i=%d", up.URL, i)))
	}
	var taken atomic.Int64
	input := func(yield func(*client.Job) bool) {
		for _, j := range jobs {
			taken.Add(1)
			if !yield(j) {
				return
			}
		}
	}
	var (
		wg      sync.WaitGroup
		ok      int
		unavail int
		callErr error
	)
	wg.Go(func() {
		seen := map[uint64]bool{}
		for r, err := range c.Fetch(testctx.New(t), input) {
			if err != nil {
				callErr = err
				continue
			}
			if seen[r.GetIndex()] {
				t.Errorf("job %d answered twice", r.GetIndex())
			}
			seen[r.GetIndex()] = true
			switch {
			case r.GetStatusCode() == 200:
				ok++
			case r.GetError().GetCode() == fetchv1.ErrorCode_ERROR_CODE_UNAVAILABLE:
				unavail++
			default:
				t.Errorf("job %d: %v, want status 200 or ERROR_CODE_UNAVAILABLE", r.GetIndex(), r)
			}
		}
	})
	testctx.WaitFor(t, waitTimeout, "two jobs fetching", func() bool { return up.InFlight() == 2 })
	if err := c.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if hits, inFlight := up.Hits(), up.InFlight(); hits != 4 || inFlight != 0 {
		t.Errorf("after Close: %d upstream hits, %d in flight; want 4 (two fetching, two queued), 0", hits, inFlight)
	}
	wg.Wait()
	if n := int(taken.Load()); ok != 4 || unavail != n-4 {
		t.Errorf("call took %d jobs of %d and yielded %d OK and %d UNAVAILABLE results, want 4 and the rest of those taken",
			n, len(jobs), ok, unavail)
	}
	if !errors.Is(callErr, client.ErrClosed) || !errors.Is(callErr, client.ErrUnavailable) {
		t.Errorf("call ended with %v, want an error wrapping ErrClosed and ErrUnavailable", callErr)
	}
	for _, err := range c.Fetch(testctx.New(t), slices.Values(jobs)) {
		if !errors.Is(err, client.ErrClosed) {
			t.Errorf("call after Close yielded %v, want ErrClosed", err)
		}
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close() again = %v", err)
	}
}

// TestEmbeddedQuietByDefault: an engine without a Logger writes no line per
// call to the program's default logger.
func TestEmbeddedQuietByDefault(t *testing.T) {
	var buf testbuf.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(old)
	c, err := client.NewEmbedded(server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	collect(t, c.Fetch(testctx.New(t), slices.Values([]*client.Job{client.Get("http://127.0.0.1:1/")})), 1)
	c.Close()
	if s := buf.String(); s != "" {
		t.Errorf("the default logger got:\n%s\nwant nothing for a call without trouble", s)
	}
}
