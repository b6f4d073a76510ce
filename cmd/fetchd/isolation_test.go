package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// Isolation between callers, over real gRPC against run: dedup per caller
// (bearer token), each job with its own deadline, and -hide-addresses.

// startJob sends the one job j on a new Fetch stream of conn as the caller
// of token, half-closes, and returns a channel that gets its result.
func startJob(ctx context.Context, tb testing.TB, addr, token string, j *fetchv1.FetchRequest) <-chan *fetchv1.FetchResponse {
	tb.Helper()
	conn := dial(tb, addr)
	ctx = metadata.AppendToOutgoingContext(ctx, bearer(token)...)
	stream, err := fetchv1.NewFetchServiceClient(conn).Fetch(ctx)
	if err != nil {
		tb.Fatalf("Fetch as %s: %v", token, err)
	}
	if err := stream.Send(j); err != nil {
		tb.Fatalf("Send as %s: %v", token, err)
	}
	if err := stream.CloseSend(); err != nil {
		tb.Fatalf("CloseSend as %s: %v", token, err)
	}
	out := make(chan *fetchv1.FetchResponse, 1)
	go func() {
		defer close(out)
		res, err := stream.Recv()
		if err != nil {
			tb.Errorf("Fetch(%q) as %s: %v", j.GetUrl(), token, err)
			return
		}
		if _, err := stream.Recv(); err != io.EOF {
			tb.Errorf("Fetch(%q) as %s: stream end = %v, want io.EOF", j.GetUrl(), token, err)
		}
		out <- res
	}()
	return out
}

// TestDedupAcrossTokens: two callers with different bearer tokens send the
// same job to an upstream that takes 3s, the first with a 20s timeout, the
// second, once the first is in flight, with 1s. Each gets the outcome of
// its own deadline: 200 for the first, TIMEOUT for the second. By default
// their jobs share no fetch (the upstream sees 2 requests, no result is
// shared); with -dedup-across-callers the second follows the first (1
// request) and still times out at its own deadline.
func TestDedupAcrossTokens(t *testing.T) {
	up := testupstream.New(t)
	tokens := writeTokens(t)
	tests := []struct {
		name     string
		args     []string
		wantHits int64
	}{
		{"per caller by default", nil, 2},
		{"across callers", []string{"-dedup-across-callers"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRun(t, env(nil), append([]string{"-allow-cidr", "127.0.0.0/8", "-auth-token-file", tokens}, tt.args...)...)
			tag := strings.ReplaceAll(tt.name, " ", "-")
			u := fmt.Sprintf("%s/?delay=3s&tag=%s", up.URL, tag)
			ctx := testctx.WithTimeout(t, 30*time.Second)
			long := startJob(ctx, t, r.addr, tokenAlpha, &fetchv1.FetchRequest{Url: u, Timeout: durationpb.New(20 * time.Second)})
			testctx.WaitFor(t, 10*time.Second, "the first job to reach the upstream", func() bool { return up.Tag(tag) == 1 })
			short := startJob(ctx, t, r.addr, tokenBeta, &fetchv1.FetchRequest{Url: u, Timeout: durationpb.New(time.Second)})

			s := <-short
			if s.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_TIMEOUT || s.GetShared() {
				t.Errorf("Fetch(%q) with 1s as beta = status %d, error %v, shared %v; want its own ERROR_CODE_TIMEOUT, not shared",
					u, s.GetStatusCode(), s.GetError(), s.GetShared())
			}
			l := <-long
			if l.GetStatusCode() != 200 || l.GetError() != nil || l.GetShared() {
				t.Errorf("Fetch(%q) with 20s as alpha = status %d, error %v, shared %v; want 200, not shared",
					u, l.GetStatusCode(), l.GetError(), l.GetShared())
			}
			if n := up.Tag(tag); n != tt.wantHits {
				t.Errorf("upstream saw %d requests, want %d", n, tt.wantHits)
			}
		})
	}
}

// TestHideAddresses: with -hide-addresses a refused job's message names no
// address and no range, and the debug log has them; without it the message
// names both.
func TestHideAddresses(t *testing.T) {
	const (
		url      = "http://10.1.2.3/"
		detail   = "10.1.2.3 is blocked by policy: 10.0.0.0/8 (private)"
		hiddenTo = "egress: destination refused: blocked by policy, or its host name does not resolve"
	)
	tests := []struct {
		name    string
		args    []string
		wantMsg string // in the message
		wantLog bool   // detail in the log
	}{
		{"default", nil, detail, false},
		{"hidden", []string{"-hide-addresses", "-log-level", "debug"}, hiddenTo, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRun(t, env(nil), tt.args...)
			res := fetchOne(t, r.addr, url)
			msg := res.GetError().GetMessage()
			if res.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_BLOCKED || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("Fetch(%q) = %v, want ERROR_CODE_BLOCKED with a message containing %q", url, res.GetError(), tt.wantMsg)
			}
			if tt.wantLog && (strings.Contains(msg, "10.") || !strings.Contains(r.log.String(), detail)) {
				t.Errorf("Fetch(%q) message %q, log:\n%s\nwant no address in the message, %q in the log", url, msg, r.log.String(), detail)
			}
		})
	}
}
