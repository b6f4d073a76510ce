package client_test

import (
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server"
)

// TestResubmitAfterSIGKILL kills a real fetchd process mid-run and starts
// it again on the same address: every index arrives exactly once, all
// fetched, and the caller sees no error.
func TestResubmitAfterSIGKILL(t *testing.T) {
	up := testupstream.New(t)
	p := startProcess(t, "127.0.0.1:0")
	addr := p.addr
	c := newClient(t, addr, client.WithConcurrency(16), client.WithWindow(64), client.WithRetryBudget(100))
	const n = 600
	jobs := make([]*client.Job, n)
	for i := range jobs {
		jobs[i] = &client.Job{Url: fmt.Sprintf("%s/?delay=10ms&i=%d", up.URL, i), Id: fmt.Sprint(i)}
	}
	var got atomic.Int64
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		testctx.WaitFor(t, 20*time.Second, "a third of the results", func() bool { return got.Load() >= n/3 })
		p.kill()
		time.Sleep(300 * time.Millisecond)
		startProcess(t, addr)
	}()
	seen := make([]bool, n)
	for r, err := range c.Fetch(testctx.New(t), slices.Values(jobs)) {
		if err != nil {
			t.Fatalf("call error after %d results: %v", got.Load(), err)
		}
		i := r.GetIndex()
		if seen[i] {
			t.Fatalf("index %d twice", i)
		}
		seen[i] = true
		if r.GetStatusCode() != http.StatusOK || r.GetId() != fmt.Sprint(i) {
			t.Errorf("result %d: status %d id %q error %v; want 200", i, r.GetStatusCode(), r.GetId(), r.GetError())
		}
		got.Add(1)
	}
	<-restarted
	if got.Load() != n {
		t.Fatalf("got %d results, want %d", got.Load(), n)
	}
	t.Logf("%d jobs, %d upstream requests (%d fetched again after the kill)", n, up.Hits(), up.Hits()-n)
}

// TestManyBackends spreads one call of one host's jobs over three backends
// (no host affinity), each tagging its upstream requests with its own
// User-Agent, and kills one mid-run.
func TestManyBackends(t *testing.T) {
	up := testupstream.New(t)
	var bs []*backend
	var addrs []string
	for i := range 3 {
		b := startBackend(t, server.WithConcurrency(8), server.WithUserAgent(fmt.Sprint("backend-", i)))
		bs = append(bs, b)
		addrs = append(addrs, b.addr)
	}
	target := addrs[0] + "," + addrs[1] + "," + addrs[2]
	c := newClient(t, target, client.WithWindow(96), client.WithHostAffinity(false))
	const n = 900
	jobs := make([]*client.Job, n)
	for i := range jobs {
		jobs[i] = client.Get(fmt.Sprintf("%s/?delay=5ms&i=%d", up.URL, i))
	}
	var got atomic.Int64
	go func() {
		testctx.WaitFor(t, 20*time.Second, "a third of the results", func() bool { return got.Load() >= n/3 })
		bs[1].kill()
	}()
	for _, r := range collect(t, func(yield func(*client.Result, error) bool) {
		for r, err := range c.Fetch(testctx.New(t), slices.Values(jobs)) {
			got.Add(1)
			if !yield(r, err) {
				return
			}
		}
	}, n) {
		if r.GetStatusCode() != http.StatusOK {
			t.Errorf("result %d: status %d error %v", r.GetIndex(), r.GetStatusCode(), r.GetError())
		}
	}
	var counts []int64
	for i := range 3 {
		k := up.Agent(fmt.Sprint("backend-", i))
		counts = append(counts, k)
		if k == 0 {
			t.Errorf("backend %d fetched nothing: jobs not spread", i)
		}
	}
	if counts[1] >= n/3+8 {
		t.Errorf("killed backend fetched %d of %d jobs; it should have stopped early", counts[1], n)
	}
	t.Logf("upstream requests per backend: %v", counts)
}

// TestNonIdempotent kills the backend while it fetches a POST and starts
// it again: the POST is answered OUTCOME_UNKNOWN, unless resubmission is
// allowed, and then it is fetched a second time.
func TestNonIdempotent(t *testing.T) {
	tests := []struct {
		name     string
		opts     []client.Option
		wantCode fetchv1.ErrorCode
		wantHits int64
	}{
		{"default", nil, fetchv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN, 1},
		{"resubmit allowed", []client.Option{client.WithResubmitNonIdempotent(true)}, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := testupstream.New(t)
			b := startBackend(t)
			c := newClient(t, b.addr, tt.opts...)
			jobs := []*client.Job{
				{Url: up.URL + "/?delay=300ms", Method: "POST", Body: []byte("a")},
				client.Get(up.URL + "/?delay=300ms"),
			}
			go func() {
				testctx.WaitFor(t, 20*time.Second, "both jobs upstream", func() bool { return up.InFlight() == 2 })
				b.kill()
				startBackendAt(t, b.addr)
			}()
			rs := collect(t, c.FetchOrdered(testctx.New(t), slices.Values(jobs)), 2)
			if got := rs[0].GetError().GetCode(); got != tt.wantCode {
				t.Errorf("POST result error = %v, want %v", rs[0].GetError(), tt.wantCode)
			}
			if rs[1].GetStatusCode() != http.StatusOK {
				t.Errorf("GET result = status %d error %v, want 200 (GET is always resubmitted)", rs[1].GetStatusCode(), rs[1].GetError())
			}
			if got := up.Hits(); got != tt.wantHits+2 {
				t.Errorf("upstream hits = %d, want %d (POST %d times, GET twice)", got, tt.wantHits+2, tt.wantHits)
			}
		})
	}
}

// TestDrainResubmitsUnstartedPosts drains one of two backends while it
// holds POSTs: the ones it has read (one in flight, one in its stream queue
// of 1) finish there, the others were never read, never started, and move
// to the other backend, although POST is not idempotent.
func TestDrainResubmitsUnstartedPosts(t *testing.T) {
	up := testupstream.New(t)
	draining := startBackend(t, server.WithConcurrency(1), server.WithStreamQueue(1), server.WithUserAgent("draining"))
	other := startBackend(t, server.WithConcurrency(1), server.WithUserAgent("other"))
	c := newClient(t, draining.addr+","+other.addr, client.WithWindow(32))
	jobs := make([]*client.Job, 20)
	for i := range jobs {
		jobs[i] = &client.Job{Url: fmt.Sprintf("%s/?delay=50ms&i=%d", up.URL, i), Method: "POST"}
	}
	go func() {
		testctx.WaitFor(t, 20*time.Second, "the draining backend to fetch", func() bool { return up.Agent("draining") == 1 })
		draining.srv.Drain()
	}()
	for _, r := range collect(t, c.Fetch(testctx.New(t), slices.Values(jobs)), len(jobs)) {
		if r.GetStatusCode() != http.StatusOK {
			t.Errorf("result %d: status %d error %v; want 200", r.GetIndex(), r.GetStatusCode(), r.GetError())
		}
	}
	if d, o := up.Agent("draining"), up.Agent("other"); d+o != int64(len(jobs)) || d > 2 {
		t.Errorf("fetched %d times by the draining backend and %d by the other, want %d in all and at most 2 by the draining one", d, o, len(jobs))
	}
}
