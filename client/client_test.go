package client_test

import (
	"fmt"
	"iter"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

func newClient(tb testing.TB, target string, opts ...client.Option) *client.Client {
	tb.Helper()
	opts = append([]client.Option{client.WithBackoff(10*time.Millisecond, 200*time.Millisecond)}, opts...)
	c, err := client.New(target, opts...)
	if err != nil {
		tb.Fatalf("New(%q): %v", target, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// collect drains a call, failing tb on a call error, and checks that
// every index in [0,n) arrived exactly once.
func collect(tb testing.TB, seq iter.Seq2[*client.Result, error], n int) []*client.Result {
	tb.Helper()
	var out []*client.Result
	seen := make([]bool, n)
	for r, err := range seq {
		if err != nil {
			tb.Fatalf("call failed after %d results: %v", len(out), err)
		}
		i := r.GetIndex()
		if i >= uint64(n) {
			tb.Fatalf("result index %d out of range [0,%d)", i, n)
		}
		if seen[i] {
			tb.Fatalf("index %d yielded twice", i)
		}
		seen[i] = true
		out = append(out, r)
	}
	if len(out) != n {
		tb.Fatalf("got %d results, want %d", len(out), n)
	}
	return out
}

// jobsFor returns n jobs against up with varied delays and statuses.
func jobsFor(up *testupstream.Upstream, n int, query string) []*client.Job {
	jobs := make([]*client.Job, n)
	for i := range jobs {
		status := 200
		if i%7 == 3 {
			status = 404
		}
		jobs[i] = &client.Job{
			Url: fmt.Sprintf("%s/?delay=%dms&status=%d&size=%d%s", up.URL, (i*37)%40, status, i%50, query),
			Id:  fmt.Sprint("job-", i),
		}
	}
	return jobs
}

func TestCompletionAndInputOrderAgree(t *testing.T) {
	eachMode(t, func(t *testing.T, mode string) {
		up := testupstream.New(t)
		c := fetchdClient(t, mode, nil, client.WithWindow(64))
		jobs := jobsFor(up, 300, "")

		unordered := collect(t, c.Fetch(testctx.New(t), slices.Values(jobs)), len(jobs))
		ordered := collect(t, c.FetchOrdered(testctx.New(t), slices.Values(jobs)), len(jobs))

		inOrder := true
		for i, r := range unordered {
			if r.GetIndex() != uint64(i) {
				inOrder = false
			}
		}
		if inOrder {
			t.Error("completion order equals input order for jobs with varied delays; expected some overtaking")
		}
		byIndex := make(map[uint64]*client.Result)
		for _, r := range unordered {
			byIndex[r.GetIndex()] = r
		}
		for i, r := range ordered {
			if r.GetIndex() != uint64(i) {
				t.Fatalf("ordered result %d has index %d, want strictly increasing indexes", i, r.GetIndex())
			}
			u := byIndex[r.GetIndex()]
			if r.GetId() != jobs[i].GetId() || u.GetId() != jobs[i].GetId() {
				t.Errorf("result %d ids = %q, %q, want %q", i, r.GetId(), u.GetId(), jobs[i].GetId())
			}
			want := int32(http.StatusOK)
			if i%7 == 3 {
				want = http.StatusNotFound
			}
			if r.GetStatusCode() != want || u.GetStatusCode() != want || len(r.GetBody()) != i%50 || string(r.GetBody()) != string(u.GetBody()) {
				t.Errorf("result %d: status %d/%d body %d/%d bytes, want %d and %d bytes",
					i, r.GetStatusCode(), u.GetStatusCode(), len(r.GetBody()), len(u.GetBody()), want, i%50)
			}
		}
	})
}

func TestLazyInputAndEarlyStop(t *testing.T) {
	eachMode(t, func(t *testing.T, mode string) {
		up := testupstream.New(t)
		c := fetchdClient(t, mode, nil, client.WithWindow(8))
		var pulled atomic.Int64
		endless := func(yield func(*client.Job) bool) {
			for {
				pulled.Add(1)
				if !yield(client.Get(up.URL + "/?delay=5ms")) {
					return
				}
			}
		}
		n := 0
		for r, err := range c.Fetch(testctx.New(t), endless) {
			if err != nil {
				t.Fatal(err)
			}
			if r.GetStatusCode() != http.StatusOK {
				t.Fatalf("result %d: %v", r.GetIndex(), r)
			}
			if n++; n == 50 {
				break
			}
		}
		if p := pulled.Load(); p > 50+8+1 {
			t.Errorf("pulled %d jobs from an endless input for 50 results with window 8; want at most 59", p)
		}
	})
}

func TestInputOrderSlowHeadBoundsMemory(t *testing.T) {
	eachMode(t, func(t *testing.T, mode string) {
		up := testupstream.New(t)
		const window = 16
		c := fetchdClient(t, mode, nil, client.WithWindow(window))
		var pulled atomic.Int64
		jobs := func(yield func(*client.Job) bool) {
			// The head hangs until its 2s timeout; the tail is instant.
			pulled.Add(1)
			if !yield(&client.Job{Url: up.URL + "/?hang=1&tag=head", Timeout: durationpb.New(2 * time.Second)}) {
				return
			}
			for i := range 1000 {
				pulled.Add(1)
				if !yield(client.Get(fmt.Sprintf("%s/?tag=tail&i=%d", up.URL, i))) {
					return
				}
			}
		}
		done := make(chan error, 1)
		var head *client.Result
		go func() {
			n := 0
			for r, err := range c.FetchOrdered(testctx.New(t), jobs) {
				if err != nil {
					done <- err
					return
				}
				if r.GetIndex() != uint64(n) {
					done <- fmt.Errorf("result %d has index %d, want input order", n, r.GetIndex())
					return
				}
				if n == 0 {
					head = r
				}
				n++
			}
			if n != 1001 {
				done <- fmt.Errorf("got %d results, want 1001", n)
				return
			}
			done <- nil
		}()
		testctx.WaitFor(t, 20*time.Second, "the window to fill behind the slow head", func() bool { return up.Tag("tail") == window-1 })
		time.Sleep(300 * time.Millisecond) // the client must stay stopped
		if got := up.Tag("tail"); got != window-1 {
			t.Errorf("fetched %d tail jobs while the head was pending, want %d (window %d)", got, window-1, window)
		}
		if p := pulled.Load(); p > window+1 {
			t.Errorf("pulled %d jobs from the input while the head was pending, want at most %d", p, window+1)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if head.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_TIMEOUT {
			t.Errorf("head result error = %v, want ERROR_CODE_TIMEOUT", head.GetError())
		}
		if got := up.Tag("tail"); got != 1000 {
			t.Errorf("tail fetched %d times, want 1000", got)
		}
	})
}
