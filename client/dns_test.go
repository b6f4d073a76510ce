package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/fetchd/fetchd/client"
	"github.com/fetchd/fetchd/internal/testctx"
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

	var mu sync.Mutex // guards addrs
	addrs := []string{a.addr}
	setAddrs := func(as ...string) {
		mu.Lock()
		defer mu.Unlock()
		addrs = as
	}
	c := newClient(t, "dns:///fetchd.test:50051")
	client.SetResolver(c, func(context.Context) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(addrs), nil
	})
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
