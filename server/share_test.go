package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

// hostCounter is a fake upstream whose every fetch takes a second; it
// records, for each fetch, when it started and how many fetches of its
// host were in flight then, itself included.
type hostCounter struct {
	mu       sync.Mutex // guards inFlight and starts
	inFlight map[string]int
	starts   []hostStart
}

type hostStart struct {
	at       time.Time
	inFlight int
}

func newHostCounter() *hostCounter { return &hostCounter{inFlight: map[string]int{}} }

func (c *hostCounter) fetch(_ context.Context, j *fetcher.Job, resp *fetchv1.FetchResponse) {
	host := j.URL.Hostname()
	c.mu.Lock()
	c.inFlight[host]++
	c.starts = append(c.starts, hostStart{time.Now(), c.inFlight[host]})
	c.mu.Unlock()
	time.Sleep(time.Second)
	c.mu.Lock()
	c.inFlight[host]--
	c.mu.Unlock()
	resp.StatusCode = 200
}

// peak returns the most fetches of one host in flight at once seen by a
// fetch started at or after from.
func (c *hostCounter) peak(from time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := 0
	for _, s := range c.starts {
		if !s.at.Before(from) {
			p = max(p, s.inFlight)
		}
	}
	return p
}

// hostJobs returns n jobs for each of hosts.
func hostJobs(n int, hosts ...string) []*fetchv1.FetchRequest {
	var jobs []*fetchv1.FetchRequest
	for i := range n {
		for _, h := range hosts {
			jobs = append(jobs, &fetchv1.FetchRequest{Url: fmt.Sprintf("http://%s/p?i=%d", h, i)})
		}
	}
	return jobs
}

// TestHostShareSynctest: with a share of n, a host sees at most
// max(1, HostConcurrency/n) fetches in flight, and a stream's own lower cap
// still holds on top.
func TestHostShareSynctest(t *testing.T) {
	tests := []struct {
		name      string
		hostCap   int
		share     int
		streamCap uint32 // stream_options.host_concurrency; 0: none
		wantPeak  int
		wantTime  time.Duration // for 12 jobs of 1s for one host
	}{
		{name: "no share", hostCap: 4, share: 1, wantPeak: 4, wantTime: 3 * time.Second},
		{name: "share 3 of 4", hostCap: 4, share: 3, wantPeak: 1, wantTime: 12 * time.Second},
		{name: "share 2 of 4", hostCap: 4, share: 2, wantPeak: 2, wantTime: 6 * time.Second},
		{name: "share over the cap", hostCap: 4, share: 10, wantPeak: 1, wantTime: 12 * time.Second},
		{name: "stream cap under the share's", hostCap: 12, share: 2, streamCap: 3, wantPeak: 3, wantTime: 4 * time.Second},
		{name: "stream cap over the share's", hostCap: 12, share: 2, streamCap: 8, wantPeak: 6, wantTime: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := New(WithLogger(quiet), WithDedup(false), WithHostConcurrency(tt.hostCap), WithConcurrency(64))
				defer s.Close()
				s.SetHostShare(tt.share)
				c := newHostCounter()
				start := time.Now()
				serveFakeOn(t, s, c.fetch, &fetchv1.StreamOptions{HostConcurrency: tt.streamCap}, hostJobs(12, "h"))
				if got := c.peak(start); got != tt.wantPeak {
					t.Errorf("HostConcurrency %d, share %d, stream cap %d: peak %d in flight, want %d", tt.hostCap, tt.share, tt.streamCap, got, tt.wantPeak)
				}
				if got := time.Since(start); got != tt.wantTime {
					t.Errorf("12 jobs of 1s took %v, want %v", got, tt.wantTime)
				}
			})
		})
	}
}

// TestHostShareAtRuntimeSynctest: a share set while a stream runs applies
// to the fetches that start after it, for a host already in use; the
// fetches in flight go on. The share shows in fetchd_host_share.
func TestHostShareAtRuntimeSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		s := New(WithLogger(quiet), WithDedup(false), WithHostConcurrency(4), WithConcurrency(64), WithMetrics(reg))
		defer s.Close()
		if got := gaugeValue(t, reg, "fetchd_host_share"); got != 1 {
			t.Errorf("fetchd_host_share = %v before SetHostShare, want 1", got)
		}
		c := newHostCounter()
		start := time.Now()
		var changed time.Time
		var wg sync.WaitGroup
		wg.Go(func() {
			// Mid-way through the second round of 4 fetches (1s-2s).
			time.Sleep(1500 * time.Millisecond)
			s.SetHostShare(4) // cap 1
			changed = time.Now()
		})
		serveFakeOn(t, s, c.fetch, nil, hostJobs(16, "h"))
		wg.Wait()
		if got := c.peak(start); got != 4 {
			t.Errorf("peak before the share: %d in flight, want 4", got)
		}
		if got := c.peak(changed); got != 1 {
			t.Errorf("peak of the fetches started after SetHostShare(4): %d in flight, want 1", got)
		}
		// 8 jobs in 2s at 4 at once, then 8 one by one.
		if got := time.Since(start); got != 10*time.Second {
			t.Errorf("16 jobs took %v, want 10s", got)
		}
		if got := gaugeValue(t, reg, "fetchd_host_share"); got != 4 {
			t.Errorf("fetchd_host_share = %v, want 4", got)
		}
	})
}

// TestHostShareRateSynctest: a share of n divides the server's per-host
// rate.
func TestHostShareRateSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(WithLogger(quiet), WithDedup(false), WithHostRate(6))
		defer s.Close()
		s.SetHostShare(3) // 2/s, burst 2
		start := time.Now()
		up := newFake(func(string, int, *fetchv1.FetchResponse) {})
		serveFakeOn(t, s, up.fetch, nil, hostJobs(6, "h"))
		// A burst of 2, then one every 500ms: the last at 2s.
		if times := up.times("/p"); len(times) != 6 || times[5].Sub(start) != 2*time.Second {
			t.Errorf("6 requests at 6/s with share 3: last at %v, want 2s", times[len(times)-1].Sub(start))
		}
	})
}

// gaugeValue returns the value of the gauge name gathered from reg.
func gaugeValue(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	tb.Fatalf("no gauge %s", name)
	return 0
}
