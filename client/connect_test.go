package client_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(tb testing.TB) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// silentAddr returns a loopback address that accepts TCP connections and
// never answers on them, as a fetchd behind a black hole would look.
func silentAddr(tb testing.TB) string {
	tb.Helper()
	return testupstream.StartRaw(tb, func(_ net.Conn, done <-chan struct{}) { <-done }).Addr
}

func TestNewBadTarget(t *testing.T) {
	tests := []struct {
		target string
		bad    bool
	}{
		{"localhost:50051", false},
		{"127.0.0.1:50051", false},
		{"[::1]:50051", false},
		{" 10.0.0.1:50051, 10.0.0.2:50051 ", false},
		{"dns:///fetchd-headless:50051", false},
		{"dns://8.8.8.8/fetchd:50051", false},
		{"unix:///run/fetchd.sock", false},
		{"passthrough:///fetchd:50051", false},
		{"http://localhost:50051", true},
		{"https://fetchd.example.com", true},
		{"grpc://localhost:50051", true},
		{"localhost", true},
		{"localhost:", true},
		{"localhost:http", true},
		{"localhost:70000", true},
		{"10.0.0.1:50051,http://10.0.0.2:50051", true},
		{"dns:///fetchd-headless", true},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			c, err := client.New(tt.target)
			if err == nil {
				c.Close()
			}
			if !tt.bad {
				if err != nil {
					t.Errorf("New(%q) = %v, want no error", tt.target, err)
				}
				return
			}
			if !errors.Is(err, client.ErrBadTarget) {
				t.Fatalf("New(%q) = %v, want ErrBadTarget", tt.target, err)
			}
			if !strings.Contains(err.Error(), "host:port") || !strings.Contains(err.Error(), "dns:///host:port") {
				t.Errorf("New(%q) = %q, want it to name the forms host:port and dns:///host:port", tt.target, err)
			}
		})
	}
}

// TestUnreachableFailsFast checks that a call none of whose backends can be
// reached on its first connection ends at once with ErrUnreachable, before
// taking any job, instead of retrying and answering jobs UNAVAILABLE.
func TestUnreachableFailsFast(t *testing.T) {
	closed1, closed2, silent := closedAddr(t), closedAddr(t), silentAddr(t)
	tests := []struct {
		name   string
		target string
		opts   []client.Option
		addrs  []string // named in the error
	}{
		{name: "connection refused", target: closed1, addrs: []string{closed1}},
		{name: "two refused", target: closed1 + "," + closed2, addrs: []string{closed1, closed2}},
		{name: "silent", target: silent, opts: []client.Option{client.WithConnectTimeout(200 * time.Millisecond)},
			addrs: []string{silent}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The default retry budget takes about 17s; the call must
			// end well before this deadline on its own.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			c := newClient(t, tt.target, tt.opts...)
			taken := 0
			jobs := func(yield func(*client.Job) bool) {
				for range 3 {
					taken++
					if !yield(client.Get("http://127.0.0.1:1/")) {
						return
					}
				}
			}
			var results []*client.Result
			var errs []error
			for r, err := range c.Fetch(ctx, jobs) {
				if err != nil {
					errs = append(errs, err)
					continue
				}
				results = append(results, r)
			}
			if len(errs) != 1 || !errors.Is(errs[0], client.ErrUnreachable) || !errors.Is(errs[0], client.ErrUnavailable) {
				t.Fatalf("Fetch(%s) errors = %v, want one ErrUnreachable (also ErrUnavailable)", tt.target, errs)
			}
			t.Logf("Fetch(%s) = %v", tt.target, errs[0])
			for _, a := range tt.addrs {
				if !strings.Contains(errs[0].Error(), "cannot reach fetchd at "+a+": ") {
					t.Errorf("Fetch(%s) error = %q, want it to say it cannot reach %s", tt.target, errs[0], a)
				}
			}
			if len(results) != 0 || taken != 0 {
				t.Errorf("Fetch(%s) took %d jobs and yielded %d results, want none", tt.target, taken, len(results))
			}
		})
	}
}

// TestOneBackendUnreachable checks that an unreachable backend among
// reachable ones costs nothing: the others take every job.
func TestOneBackendUnreachable(t *testing.T) {
	up := testupstream.New(t)
	b := startBackend(t)
	c := newClient(t, closedAddr(t)+","+b.addr)
	for _, r := range collect(t, c.FetchOrdered(testctx.New(t), slices.Values(jobsFor(up, 20, ""))), 20) {
		if r.GetError() != nil {
			t.Errorf("result %d: error %v, want none", r.GetIndex(), r.GetError())
		}
	}
}

// TestUnavailable checks the other way a call fails: its backend was
// reached, then died and stayed down; the job it held is answered
// ERROR_CODE_UNAVAILABLE once the retry budget is spent, then the call
// ends with ErrUnavailable (not ErrUnreachable).
func TestUnavailable(t *testing.T) {
	up := testupstream.New(t)
	b := startBackend(t)
	c := newClient(t, b.addr, client.WithRetryBudget(3), client.WithBackoff(time.Millisecond, 5*time.Millisecond))
	go func() {
		testctx.WaitFor(t, 20*time.Second, "the job upstream", func() bool { return up.InFlight() == 1 })
		b.kill()
	}()
	var results []*client.Result
	var callErr error
	for r, err := range c.FetchOrdered(testctx.New(t), slices.Values([]*client.Job{client.Get(up.URL + "/?hang=1")})) {
		if err != nil {
			callErr = err
			continue
		}
		results = append(results, r)
	}
	if !errors.Is(callErr, client.ErrUnavailable) || errors.Is(callErr, client.ErrUnreachable) {
		t.Errorf("call error = %v, want ErrUnavailable and not ErrUnreachable", callErr)
	}
	if len(results) != 1 || results[0].GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("results = %v, want one ERROR_CODE_UNAVAILABLE", results)
	}
}

// TestUnreachableThenBack checks that a call right after one that found
// its backend unreachable connects again, rather than failing at once on
// the connection's earlier failure, when the backend is back.
func TestUnreachableThenBack(t *testing.T) {
	up := testupstream.New(t)
	addr := closedAddr(t)
	c := newClient(t, addr, client.WithBackoff(time.Second, 5*time.Second))
	for _, err := range c.Fetch(testctx.New(t), slices.Values(jobsFor(up, 1, ""))) {
		if !errors.Is(err, client.ErrUnreachable) {
			t.Fatalf("first call: Fetch(%s) = %v, want ErrUnreachable", addr, err)
		}
	}
	startBackendAt(t, addr)
	collect(t, c.Fetch(testctx.New(t), slices.Values(jobsFor(up, 5, ""))), 5)
}
