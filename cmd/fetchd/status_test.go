package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// How streams end: the status a caller gets is the one fetchd logs and
// counts. A message over -max-recv-msg-bytes ends the stream with gRPC's own
// RESOURCE_EXHAUSTED status, which gRPC sends before fetchd's handler or
// interceptors see the error, so its message is gRPC's and names the limit.

// statusLine matches the status of a "stream finished" log line.
var statusLine = regexp.MustCompile(`msg="stream finished" .*status=(\w+)`)

func TestStreamEndStatus(t *testing.T) {
	up := testupstream.New(t)
	const limit = 1000
	r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-metrics-listen", "127.0.0.1:0",
		"-max-recv-msg-bytes", fmt.Sprint(limit))
	m := metricsListening.FindStringSubmatch(r.log.String())
	if m == nil {
		t.Fatalf("run log lacks the metrics address:\n%s", r.log.String())
	}
	maddr := m[1]
	conn := dial(t, r.addr)
	c := fetchv1.NewFetchServiceClient(conn)
	big := up.URL + "/?pad=" + strings.Repeat("x", 5000)
	// overLimit is what a caller reads for a message of about 5000 bytes:
	// its size and the limit, in gRPC's words.
	overLimit := regexp.MustCompile(`^grpc: received message larger than max \(50\d\d vs\. 1000\)$`)

	tests := []struct {
		name     string
		method   string // Fetch or FetchBatch
		call     func(ctx context.Context) error
		wantCode codes.Code
		wantMsg  *regexp.Regexp // when set, the status message
		noLine   bool           // no handler ran, so no "stream finished" line
	}{
		{
			name: "fetch job over the message limit", method: "Fetch", wantCode: codes.ResourceExhausted, wantMsg: overLimit,
			call: func(ctx context.Context) error {
				st, err := c.Fetch(ctx)
				if err != nil {
					return err
				}
				if err := st.Send(&fetchv1.FetchRequest{Url: up.URL + "/?small=1"}); err != nil {
					return err
				}
				if _, err := st.Recv(); err != nil {
					return fmt.Errorf("first job: %w", err)
				}
				st.Send(&fetchv1.FetchRequest{Url: big}) // the stream may end before Send returns
				for {
					if _, err := st.Recv(); err != nil {
						return err
					}
				}
			},
		},
		{
			name: "batch over the message limit", method: "FetchBatch", wantCode: codes.ResourceExhausted, wantMsg: overLimit, noLine: true,
			call: func(ctx context.Context) error {
				st, err := c.FetchBatch(ctx, &fetchv1.FetchBatchRequest{Jobs: []*fetchv1.FetchRequest{{Url: big}}})
				if err != nil {
					return err
				}
				for {
					if _, err := st.Recv(); err != nil {
						return err
					}
				}
			},
		},
		{
			name: "call deadline expires", method: "Fetch", wantCode: codes.DeadlineExceeded,
			call: func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				st, err := c.Fetch(ctx)
				if err != nil {
					return err
				}
				if err := st.Send(&fetchv1.FetchRequest{Url: up.URL + "/?hang=1"}); err != nil {
					return err
				}
				for {
					if _, err := st.Recv(); err != nil {
						return err
					}
				}
			},
		},
	}
	ctx := testctx.WithTimeout(t, 30*time.Second)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(statusLine.FindAllStringSubmatch(r.log.String(), -1))
			counted, _ := metricValue(scrapeMetrics(ctx, t, maddr), "grpc_server_handled_total",
				"grpc_method", tt.method, "grpc_code", tt.wantCode.String())

			err := tt.call(ctx)
			got := status.Convert(err)
			if got.Code() != tt.wantCode {
				t.Fatalf("%s: caller got %v, want code %v", tt.name, err, tt.wantCode)
			}
			if tt.wantMsg != nil && !tt.wantMsg.MatchString(got.Message()) {
				t.Errorf("%s: status message %q, want it to match %q", tt.name, got.Message(), tt.wantMsg)
			}

			if !tt.noLine {
				checkStatusLine(t, r, before, tt.wantCode)
			}
			waitMetrics(ctx, t, maddr, []metricCheck{{name: "grpc_server_handled_total",
				labels: []string{"grpc_method", tt.method, "grpc_code", tt.wantCode.String()}, op: "==", want: counted + 1}})
		})
	}
}

// checkStatusLine waits for the stream finished line after the first
// before ones and checks its status.
func checkStatusLine(tb testing.TB, r *runner, before int, want codes.Code) {
	tb.Helper()
	var lines [][]string
	testctx.WaitFor(tb, 5*time.Second, "the stream's log line", func() bool {
		lines = statusLine.FindAllStringSubmatch(r.log.String(), -1)
		return len(lines) > before
	})
	if s := lines[before][1]; s != want.String() {
		tb.Errorf("stream finished line status=%s, want the caller's %v", s, want)
	}
}
