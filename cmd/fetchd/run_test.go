package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testbuf"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// run, in process: the same code as the binary, without a signal.

// runner is a run call in its own goroutine, started by startRun.
type runner struct {
	addr   string
	cancel context.CancelFunc // stands in for SIGTERM
	log    testbuf.Buffer
	done   chan struct{} // closed when run has returned
	err    error         // what run returned; set before done closes
}

// startRun calls run on 127.0.0.1:0 with args and getenv, and returns
// once it listens. Its context is cancelled, and run waited for, when tb
// ends.
func startRun(tb testing.TB, getenv func(string) string, args ...string) *runner {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = run(ctx, append([]string{"-listen", "127.0.0.1:0"}, args...), getenv, io.Discard, &r.log)
	}()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
			tb.Errorf("run did not return within 15s of its context's end")
		}
		if tb.Failed() {
			tb.Logf("run log:\n%s", r.log.String())
		}
	})
	testctx.WaitFor(tb, 10*time.Second, "run to listen", func() bool {
		select {
		case <-r.done:
			tb.Fatalf("run returned %v before listening:\n%s", r.err, r.log.String())
		default:
		}
		var ok bool
		r.addr, ok = listenAddr(r.log.String())
		return ok
	})
	return r
}

// Stop cancels run's context and returns what run returns, waiting up to
// d.
func (r *runner) Stop(tb testing.TB, d time.Duration) error {
	tb.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(d):
		tb.Fatalf("run did not return within %v of its context's end", d)
		return nil
	}
}

func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func TestRunDrainsOnCancel(t *testing.T) {
	up := testupstream.New(t)
	r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-drain-timeout", "10s")
	ctx := testctx.WithTimeout(t, 20*time.Second)
	stream, err := fetchv1.NewFetchServiceClient(dial(t, r.addr)).Fetch(ctx)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	slow := up.URL + "/?delay=300ms"
	if err := stream.Send(&fetchv1.FetchRequest{Url: slow}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	testctx.WaitFor(t, 10*time.Second, "the job to reach the upstream", func() bool { return up.InFlight() == 1 })

	r.cancel() // as SIGTERM does in main
	res, err := stream.Recv()
	if err != nil {
		t.Fatalf("Recv of the in-flight job's result: %v", err)
	}
	if res.GetStatusCode() != 200 || res.GetError() != nil {
		t.Errorf("Fetch(%q) during drain = %v, want status 200", slow, res)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("stream end = %v, want code Unavailable", err)
	}
	if err := r.Stop(t, 10*time.Second); err != nil {
		t.Errorf("run = %v, want nil after a drain", err)
	}
	if !strings.Contains(r.log.String(), "msg=drained") {
		t.Errorf("run log lacks msg=drained")
	}
	checkGone(t, r.addr)
}

func TestRunConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want error  // errors.Is, when set
		text string // in the error, when set
	}{
		{name: "help", args: []string{"-h"}, want: flag.ErrHelp},
		{name: "zero concurrency", args: []string{"-concurrency", "0"}, text: "-concurrency 0: must be at least 1"},
		{name: "env not a number", env: map[string]string{"FETCHD_CONCURRENCY": "abc"}, text: `FETCHD_CONCURRENCY="abc"`},
		{name: "env bad CIDR", env: map[string]string{"FETCHD_ALLOW_CIDR": "nope"}, text: `FETCHD_ALLOW_CIDR="nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testctx.WithTimeout(t, 10*time.Second)
			var stderr testbuf.Buffer
			err := run(ctx, append([]string{"-listen", "127.0.0.1:0"}, tt.args...), env(tt.env), io.Discard, &stderr)
			if err == nil {
				t.Fatalf("run(%q) with env %v = nil, want an error", tt.args, tt.env)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("run(%q) = %v, want %v", tt.args, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("run(%q) with env %v = %v, want it to contain %q", tt.args, tt.env, err, tt.text)
			}
			if strings.Contains(stderr.String(), "fetchd listening") {
				t.Errorf("run(%q) started serving", tt.args)
			}
		})
	}
}

// TestRunAllowCIDR checks -allow-cidr and its fallback FETCHD_ALLOW_CIDR:
// the flag, when given, replaces the variable.
func TestRunAllowCIDR(t *testing.T) {
	up := testupstream.New(t)
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		wantCIDRs string // as logged at startup
		wantCode  fetchv1.ErrorCode
	}{
		{name: "default", wantCIDRs: `""`, wantCode: fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{name: "env", env: map[string]string{"FETCHD_ALLOW_CIDR": "127.0.0.0/8"}, wantCIDRs: "127.0.0.0/8"},
		{name: "env list", env: map[string]string{"FETCHD_ALLOW_CIDR": "10.0.0.0/8,127.0.0.1/32"}, wantCIDRs: "10.0.0.0/8,127.0.0.1/32"},
		{name: "env other range", env: map[string]string{"FETCHD_ALLOW_CIDR": "10.0.0.0/8"}, wantCIDRs: "10.0.0.0/8", wantCode: fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{name: "flag", args: []string{"-allow-cidr", "127.0.0.0/8"}, wantCIDRs: "127.0.0.0/8"},
		{name: "env and flag", env: map[string]string{"FETCHD_ALLOW_CIDR": "127.0.0.0/8"}, args: []string{"-allow-cidr", "10.0.0.0/8"},
			wantCIDRs: "10.0.0.0/8", wantCode: fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{name: "flag and env", env: map[string]string{"FETCHD_ALLOW_CIDR": "10.0.0.0/8"}, args: []string{"-allow-cidr", "127.0.0.0/8"},
			wantCIDRs: "127.0.0.0/8"},
		{name: "unrelated env", env: map[string]string{"ALLOW_CIDR": "127.0.0.0/8", "FETCHD_ALLOW_CIDRS": "127.0.0.0/8"},
			wantCIDRs: `""`, wantCode: fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRun(t, env(tt.env), tt.args...)
			if log := r.log.String(); !strings.Contains(log, "allow_cidr="+tt.wantCIDRs+"\n") {
				t.Errorf("run log = %q, want allow_cidr=%s", log, tt.wantCIDRs)
			}
			tag := strings.ReplaceAll(tt.name, " ", "-")
			u := up.URL + "/?tag=" + tag
			res := fetchOne(t, r.addr, u)
			wantStatus, wantHits := int32(200), int64(1)
			if tt.wantCode != 0 {
				wantStatus, wantHits = 0, 0
			}
			if res.GetStatusCode() != wantStatus || res.GetError().GetCode() != tt.wantCode {
				t.Errorf("Fetch(%q) = %v, want status %d, error code %v", u, res, wantStatus, tt.wantCode)
			}
			if n := up.Tag(tag); n != wantHits {
				t.Errorf("upstream saw %d requests, want %d", n, wantHits)
			}
			if err := r.Stop(t, 10*time.Second); err != nil {
				t.Errorf("run = %v, want nil", err)
			}
		})
	}
}

// fetchOne fetches u through the fetchd at addr on a new connection, and
// returns its one result.
func fetchOne(tb testing.TB, addr, u string) *fetchv1.FetchResponse {
	tb.Helper()
	ctx := testctx.WithTimeout(tb, 20*time.Second)
	conn := dial(tb, addr)
	defer conn.Close()
	stream, err := fetchv1.NewFetchServiceClient(conn).Fetch(ctx)
	if err != nil {
		tb.Fatalf("Fetch: %v", err)
	}
	if err := stream.Send(&fetchv1.FetchRequest{Url: u}); err != nil {
		tb.Fatalf("Send: %v", err)
	}
	if err := stream.CloseSend(); err != nil {
		tb.Fatalf("CloseSend: %v", err)
	}
	res, err := stream.Recv()
	if err != nil {
		tb.Fatalf("Fetch(%q): %v", u, err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		tb.Fatalf("Fetch(%q) stream end = %v, want io.EOF", u, err)
	}
	return res
}
