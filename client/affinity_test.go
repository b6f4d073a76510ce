package client_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/fetchd/fetchd/client"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server"
)

// loopbackHosts returns n distinct loopback addresses from 127.0.0.first:
// n hosts, for upstreams that count their own peak in flight.
func loopbackHosts(first, n int) []string {
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("127.0.0.%d", first+i)
	}
	return hosts
}

// ownedHosts returns k loopback host addresses, from 127.0.0.from on,
// whose jobs a call over addrs sends to owner.
func ownedHosts(tb testing.TB, addrs []string, owner string, from, k int) []string {
	tb.Helper()
	var out []string
	for i := from; i < 255 && len(out) < k; i++ {
		if h := fmt.Sprintf("127.0.0.%d", i); client.Owner(addrs, h) == owner {
			out = append(out, h)
		}
	}
	if len(out) < k {
		tb.Fatalf("found %d hosts for %s from 127.0.0.%d, want %d", len(out), owner, from, k)
	}
	return out
}

// upstreamsAt starts an upstream on each of hosts.
func upstreamsAt(tb testing.TB, hosts []string) []*testupstream.Upstream {
	tb.Helper()
	var ups []*testupstream.Upstream
	for _, h := range hosts {
		ups = append(ups, testupstream.NewAt(tb, h+":0"))
	}
	return ups
}

// replicas starts n backends, each tagging its requests with User-Agent
// replica-i, and returns them with their comma-separated target.
func replicas(tb testing.TB, n int, opts ...server.Option) ([]*backend, string) {
	tb.Helper()
	var bs []*backend
	var addrs []string
	for i := range n {
		b := startBackend(tb, append(opts, server.WithUserAgent(fmt.Sprint("replica-", i)))...)
		bs = append(bs, b)
		addrs = append(addrs, b.addr)
	}
	return bs, strings.Join(addrs, ",")
}

// TestHostAffinityPoliteness is the politeness case: three
// replicas each capping a host at 4, one call of 300 jobs of 200 ms over
// 10 hosts. With affinity no host ever sees more than 4 in flight, and each
// host is fetched by one replica only; spread, the hosts see more.
func TestHostAffinityPoliteness(t *testing.T) {
	for _, tt := range []struct {
		name     string
		affinity bool
	}{{"affinity", true}, {"spread", false}} {
		t.Run(tt.name, func(t *testing.T) {
			ups := upstreamsAt(t, loopbackHosts(20, 10))
			_, target := replicas(t, 3, server.WithHostConcurrency(4), server.WithConcurrency(20))
			c := newClient(t, target, client.WithHostAffinity(tt.affinity))
			const n = 300
			jobs := make([]*client.Job, n)
			for i := range jobs {
				jobs[i] = client.Get(fmt.Sprintf("%s/?delay=200ms&i=%d", ups[i%len(ups)].URL, i))
			}
			for _, r := range collect(t, c.Fetch(testctx.New(t), slices.Values(jobs)), n) {
				if r.GetStatusCode() != http.StatusOK {
					t.Errorf("result %d: status %d error %v", r.GetIndex(), r.GetStatusCode(), r.GetError())
				}
			}
			var peaks []int64
			maxPeak, shared := int64(0), 0
			for _, up := range ups {
				peaks = append(peaks, up.Peak())
				maxPeak = max(maxPeak, up.Peak())
				by := 0
				for i := range 3 {
					if up.Agent(fmt.Sprint("replica-", i)) > 0 {
						by++
					}
				}
				if by > 1 {
					shared++
				}
			}
			t.Logf("peak in flight per host: %v; hosts fetched by more than one replica: %d", peaks, shared)
			if tt.affinity && (maxPeak > 4 || shared > 0) {
				t.Errorf("with affinity: a host saw %d in flight (cap 4 per replica), %d hosts were fetched by several replicas; want at most 4 and none", maxPeak, shared)
			}
			if !tt.affinity && maxPeak <= 4 {
				t.Errorf("spread: no host saw more than 4 in flight; the test cannot tell affinity from none")
			}
		})
	}
}

// TestAffinityFailover kills the replica that owns some hosts mid-call:
// every job is answered once, OK, and its hosts move to the others.
func TestAffinityFailover(t *testing.T) {
	bs, target := replicas(t, 3, server.WithHostConcurrency(4))
	c := newClient(t, target, client.WithWindow(120))
	addrs := strings.Split(target, ",")
	victim := bs[0]
	// Three hosts per replica, first come one of each in turn: an even
	// split, which the router's load bound leaves as it is.
	victimHosts := upstreamsAt(t, ownedHosts(t, addrs, victim.addr, 40, 3))
	others := [][]*testupstream.Upstream{
		upstreamsAt(t, ownedHosts(t, addrs, bs[1].addr, 40, 3)),
		upstreamsAt(t, ownedHosts(t, addrs, bs[2].addr, 40, 3)),
	}
	var ups []*testupstream.Upstream
	for i := range 3 {
		ups = append(ups, victimHosts[i], others[0][i], others[1][i])
	}
	const n = 600
	jobs := make([]*client.Job, n)
	for i := range jobs {
		jobs[i] = client.Get(fmt.Sprintf("%s/?delay=20ms&i=%d", ups[i%len(ups)].URL, i))
	}
	ctx := testctx.New(t)
	got := 0
	var once sync.Once
	for _, r := range collect(t, func(yield func(*client.Result, error) bool) {
		for r, err := range c.Fetch(ctx, slices.Values(jobs)) {
			if got++; got == n/4 {
				once.Do(victim.kill)
			}
			if !yield(r, err) {
				return
			}
		}
	}, n) {
		if r.GetStatusCode() != http.StatusOK {
			t.Errorf("result %d: status %d error %v", r.GetIndex(), r.GetStatusCode(), r.GetError())
		}
	}
	for _, up := range victimHosts {
		if moved := up.Agent("replica-1") + up.Agent("replica-2"); moved == 0 {
			t.Errorf("host %s of the killed replica: no request from the others after the kill", up.URL)
		}
	}
}

// TestSlowBackendDoesNotStallOthers stops one replica from reading its
// stream: the jobs of the hosts the other replica owns are all answered
// meanwhile (no head-of-line blocking across backends).
func TestSlowBackendDoesNotStallOthers(t *testing.T) {
	gate := make(chan struct{})
	slow := startBackendWith(t, []grpc.ServerOption{grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(srv, &gatedStream{ServerStream: ss, gate: gate})
	})})
	fast := startBackend(t)
	addrs := []string{slow.addr, fast.addr}
	c := newClient(t, strings.Join(addrs, ","), client.WithWindow(64))
	// Two hosts per replica, an even split, which the router's load
	// bound leaves as it is.
	slowUps := upstreamsAt(t, ownedHosts(t, addrs, slow.addr, 60, 2))
	fastUps := upstreamsAt(t, ownedHosts(t, addrs, fast.addr, 60, 2))
	// One job in ten is the stalled replica's: 40 of them, inside the
	// window, interleaved with the fast replica's 360.
	const n, fastJobs = 400, 360
	jobs := make([]*client.Job, n)
	for i := range jobs {
		up := fastUps[i%2]
		if i%10 == 9 {
			up = slowUps[(i/10)%2]
		}
		jobs[i] = client.Get(fmt.Sprintf("%s/?i=%d", up.URL, i))
	}
	ctx := testctx.New(t)
	answered := 0
	for r, err := range c.Fetch(ctx, slices.Values(jobs)) {
		if err != nil {
			t.Fatal(err)
		}
		if i := r.GetIndex(); i%10 == 9 {
			t.Fatalf("a job of the stalled replica answered while it was stalled")
		}
		if answered++; answered == fastJobs {
			break
		}
	}
	close(gate)
}

// gatedStream is a server stream that reads nothing until gate closes.
type gatedStream struct {
	grpc.ServerStream
	gate chan struct{}
}

func (s *gatedStream) RecvMsg(m any) error {
	select {
	case <-s.gate:
	case <-s.Context().Done():
		return s.Context().Err()
	}
	return s.ServerStream.RecvMsg(m)
}

// TestHostAffinityAcrossCallers runs two clients at once over the same
// three replicas, their hosts in opposite orders: each host still goes to
// one replica, so it never sees more than the cap of 4.
func TestHostAffinityAcrossCallers(t *testing.T) {
	hosts := loopbackHosts(120, 10)
	ups := upstreamsAt(t, hosts)
	_, target := replicas(t, 3, server.WithHostConcurrency(4), server.WithConcurrency(20))
	const n = 300
	jobsIn := func(reverse bool) []*client.Job {
		jobs := make([]*client.Job, n)
		for i := range jobs {
			k := i % len(ups)
			if reverse {
				k = len(ups) - 1 - k
			}
			jobs[i] = client.Get(fmt.Sprintf("%s/?delay=200ms&i=%d&r=%v", ups[k].URL, i, reverse))
		}
		return jobs
	}
	ctx := testctx.New(t)
	var wg sync.WaitGroup
	for _, reverse := range []bool{false, true} {
		c := newClient(t, target)
		jobs := jobsIn(reverse)
		wg.Go(func() {
			for r, err := range c.Fetch(ctx, slices.Values(jobs)) {
				if err != nil {
					t.Errorf("call failed: %v", err)
					return
				}
				if r.GetStatusCode() != http.StatusOK {
					t.Errorf("result %d: status %d error %v", r.GetIndex(), r.GetStatusCode(), r.GetError())
				}
			}
		})
	}
	wg.Wait()
	var peaks []int64
	for _, up := range ups {
		peaks = append(peaks, up.Peak())
		if up.Peak() > 4 {
			t.Errorf("%s saw %d in flight from two callers; want at most 4, one replica's cap", up.URL, up.Peak())
		}
	}
	t.Logf("peak in flight per host: %v", peaks)
}

// TestSpreadCappedHost spreads one capped host's jobs over three replicas
// with their default pools: each takes only what it can start soon of the
// host (twice its cap), so that all three fetch, instead of the first
// stream to open taking the whole window.
func TestSpreadCappedHost(t *testing.T) {
	up := upstreamsAt(t, loopbackHosts(140, 1))[0]
	_, target := replicas(t, 3, server.WithHostConcurrency(4))
	c := newClient(t, target, client.WithHostAffinity(false))
	const n = 120
	jobs := make([]*client.Job, n)
	for i := range jobs {
		jobs[i] = client.Get(fmt.Sprintf("%s/?delay=50ms&i=%d", up.URL, i))
	}
	collect(t, c.Fetch(testctx.New(t), slices.Values(jobs)), n)
	var counts []int64
	for i := range 3 {
		counts = append(counts, up.Agent(fmt.Sprint("replica-", i)))
	}
	t.Logf("jobs per replica %v, peak in flight %d", counts, up.Peak())
	for i, k := range counts {
		if k < n/6 {
			t.Errorf("replica %d fetched %d of %d jobs; want at least a sixth, as each may hold only twice its host cap: %v", i, k, n, counts)
		}
	}
}
