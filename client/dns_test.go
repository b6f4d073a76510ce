package client_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/fetchd/fetchd/client"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// TestResolutionClosesDroppedConns resolves a dns:/// target to one
// backend, then to another: the connection to the first is closed once no
// call uses it, not before (a call still running on it finishes), and not
// kept for good.
func TestResolutionClosesDroppedConns(t *testing.T) {
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gate" {
			entered <- struct{}{}
			<-gate
		}
	}))
	defer up.Close()
	a, b := startBackend(t), startBackend(t)

	r := manual.NewBuilderWithScheme("fetchdtest")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: a.addr}}})
	setAddrs := func(as ...string) {
		var st resolver.State
		for _, a := range as {
			st.Addresses = append(st.Addresses, resolver.Address{Addr: a})
		}
		r.UpdateState(st)
	}
	c := newClient(t, "fetchdtest:///fetchd.test:50051", client.WithResolver(r))
	wantConns := func(when string, want ...string) {
		t.Helper()
		slices.Sort(want)
		if got := client.OpenConns(c); !slices.Equal(got, want) {
			t.Errorf("%s: open connections %q, want %q", when, got, want)
		}
	}

	ctx := testctx.New(t)
	// A call to a that waits in the upstream until the gate opens.
	done := make(chan []*client.Result)
	go func() {
		done <- collectNoFatal(t, c.Fetch(ctx, slices.Values([]*client.Job{client.Get(up.URL + "/gate")})))
	}()
	<-entered
	wantConns("during a call to a", a.addr)

	setAddrs(b.addr)
	collect(t, c.Fetch(ctx, slices.Values([]*client.Job{client.Get(up.URL + "/")})), 1)
	wantConns("after a resolution without a, with a call to a running", a.addr, b.addr)

	close(gate)
	if rs := <-done; len(rs) != 1 || rs[0].GetStatusCode() != http.StatusOK {
		t.Fatalf("the call to a, dropped from the resolution while it ran: results %v, want one 200", rs)
	}
	wantConns("after the call to a ended", b.addr)

	collect(t, c.Fetch(ctx, slices.Values([]*client.Job{client.Get(up.URL + "/")})), 1)
	wantConns("after another call to b", b.addr)
}

// collectNoFatal drains a call from a goroutine other than the test's,
// reporting a call error with Errorf.
func collectNoFatal(tb testing.TB, seq func(func(*client.Result, error) bool)) []*client.Result {
	tb.Helper()
	var out []*client.Result
	for r, err := range seq {
		if err != nil {
			tb.Errorf("call failed after %d results: %v", len(out), err)
			break
		}
		out = append(out, r)
	}
	return out
}

// TestMembershipFollowed changes a running call's resolution: a backend
// that joins gets jobs of that call, and one that leaves gets none after
// its jobs in flight are answered, and its connection is closed; every job
// is answered once.
func TestMembershipFollowed(t *testing.T) {
	bs, _ := replicas(t, 2)
	a, b := bs[0], bs[1]
	ups := upstreamsAt(t, loopbackHosts(80, 16))
	r := manual.NewBuilderWithScheme("fetchdtest")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: a.addr}}})
	c := newClient(t, "fetchdtest:///fetchd.test:50051", client.WithResolver(r), client.WithWindow(64))

	const n = 1600
	in := make(chan *client.Job)
	go func() {
		defer close(in)
		for i := range n {
			in <- client.Get(fmt.Sprintf("%s/?delay=2ms&i=%d", ups[i%len(ups)].URL, i))
		}
	}()
	ctx := testctx.New(t)
	got := 0
	var afterLeave int64
	results := collect(t, func(yield func(*client.Result, error) bool) {
		for res, err := range c.Fetch(ctx, client.Chan(in)) {
			switch got++; got {
			case n / 4:
				r.UpdateState(resolver.State{Addresses: []resolver.Address{{Addr: a.addr}, {Addr: b.addr}}})
			case n / 2:
				r.UpdateState(resolver.State{Addresses: []resolver.Address{{Addr: b.addr}}})
				// a's jobs in flight may still be answered; after a
				// moment it must have fetched nothing more.
				testctx.WaitFor(t, 10*time.Second, "a's connection closed", func() bool {
					return !slices.Contains(client.OpenConns(c), a.addr)
				})
				afterLeave = agentHits(ups, "replica-0")
			}
			if !yield(res, err) {
				return
			}
		}
	}, n)
	for _, res := range results {
		if res.GetStatusCode() != http.StatusOK {
			t.Errorf("result %d: status %d error %v", res.GetIndex(), res.GetStatusCode(), res.GetError())
		}
	}
	if hits := agentHits(ups, "replica-1"); hits == 0 {
		t.Errorf("the backend that joined mid-call fetched nothing")
	}
	if hits := agentHits(ups, "replica-0"); hits != afterLeave {
		t.Errorf("the backend that left fetched %d jobs after its connection closed", hits-afterLeave)
	}
	if got := client.OpenConns(c); !slices.Equal(got, []string{b.addr}) {
		t.Errorf("open connections %q, want only %s", got, b.addr)
	}
}

// agentHits sums the requests of User-Agent ua over ups.
func agentHits(ups []*testupstream.Upstream, ua string) int64 {
	var n int64
	for _, up := range ups {
		n += up.Agent(ua)
	}
	return n
}
