package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// Graceful drain of the real binary: on SIGTERM, health turns NOT_SERVING,
// streams stop taking jobs, finish the ones they started and end, and the
// process exits 0; after -drain-timeout whatever is left is cut off.

func TestDrain(t *testing.T) {
	tests := []struct {
		name      string
		halfClose bool // the caller half-closes before SIGTERM
		wantErr   error
		wantCode  codes.Code
	}{
		{name: "half-closed", halfClose: true, wantErr: io.EOF, wantCode: codes.OK},
		{name: "open", wantCode: codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := testupstream.New(t)
			p := startFetchd(t, "-allow-cidr", "127.0.0.0/8", "-drain-timeout", "10s")
			ctx := testctx.WithTimeout(t, 20*time.Second)
			conn := dial(t, p.addr)

			// A Watch stream opened before SIGTERM sees the drain, stays
			// open, and ends by itself once the fetch stream is done: it
			// must not hold the exit until -drain-timeout.
			watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatalf("Health.Watch: %v", err)
			}
			if s := recvHealth(t, watch); s != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health before SIGTERM = %v, want SERVING", s)
			}

			stream, err := fetchv1.NewFetchServiceClient(conn).Fetch(ctx)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			slow := up.URL + "/?delay=1s&tag=slow"
			if err := stream.Send(&fetchv1.FetchRequest{Url: slow, Id: "slow"}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			testctx.WaitFor(t, 10*time.Second, "the job to reach the upstream", func() bool { return up.InFlight() == 1 })
			if tt.halfClose {
				if err := stream.CloseSend(); err != nil {
					t.Fatalf("CloseSend: %v", err)
				}
			}

			p.Signal(t, syscall.SIGTERM)
			sigterm := time.Now()
			if s := recvHealth(t, watch); s != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Errorf("health after SIGTERM = %v, want NOT_SERVING", s)
			}

			if !tt.halfClose {
				// The server drains right after health turns NOT_SERVING;
				// give it a moment, then offer a job it must not start.
				time.Sleep(100 * time.Millisecond)
				stream.Send(&fetchv1.FetchRequest{Url: up.URL + "/?tag=late", Id: "late"}) // io.EOF if the stream already ended: fine
			}

			r, err := stream.Recv()
			if err != nil {
				t.Fatalf("Recv of the in-flight job's result: %v", err)
			}
			want := &fetchv1.FetchResponse{Id: "slow", Url: slow, FinalUrl: slow, StatusCode: 200, Body: []byte("ok\n"), BodyLength: 3}
			if n := normalize(r); !proto.Equal(n, want) {
				t.Errorf("Fetch(%q) during drain = %v, want %v", slow, n, want)
			}
			_, err = stream.Recv()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("stream end = %v, want %v", err, tt.wantErr)
				}
			} else if status.Code(err) != tt.wantCode {
				t.Errorf("stream end = %v, want code %v", err, tt.wantCode)
			}

			if code := p.Wait(t, 8*time.Second); code != 0 {
				t.Errorf("fetchd exit code = %d, want 0", code)
			}
			if d := time.Since(sigterm); d > 4*time.Second {
				t.Errorf("fetchd took %v to exit after SIGTERM with a health watcher open, want about the 1s the job had left", d)
			}
			if r, err := watch.Recv(); err == nil {
				t.Errorf("Health.Watch after fetchd exited = %v, want the stream ended", r)
			}
			log := p.Log()
			for _, want := range []string{"msg=draining", "msg=drained"} {
				if !strings.Contains(log, want) {
					t.Errorf("fetchd log lacks %s", want)
				}
			}
			if strings.Contains(log, "drain timeout") {
				t.Errorf("fetchd hit its drain timeout, want a clean drain")
			}
			if n := up.Tag("late"); n != 0 {
				t.Errorf("upstream saw %d jobs sent after SIGTERM, want 0", n)
			}
			checkGone(t, p.addr)
		})
	}
}

// TestDrainTimeout checks that a job that never finishes is cut off after
// -drain-timeout, and its upstream request cancelled.
func TestDrainTimeout(t *testing.T) {
	up := testupstream.New(t)
	p := startFetchd(t, "-allow-cidr", "127.0.0.0/8", "-drain-timeout", "200ms")
	ctx := testctx.WithTimeout(t, 20*time.Second)
	stream, err := fetchv1.NewFetchServiceClient(dial(t, p.addr)).Fetch(ctx)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	hang := up.URL + "/?hang=1"
	if err := stream.Send(&fetchv1.FetchRequest{Url: hang}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	testctx.WaitFor(t, 10*time.Second, "the job to reach the upstream", func() bool { return up.InFlight() == 1 })

	p.Signal(t, syscall.SIGTERM)
	sigterm := time.Now()
	if code := p.Wait(t, 5*time.Second); code != 0 {
		t.Errorf("fetchd exit code = %d, want 0", code)
	}
	if d := time.Since(sigterm); d > 2*time.Second {
		t.Errorf("fetchd took %v to exit after SIGTERM with -drain-timeout 200ms, want under 2s", d)
	}
	for {
		r, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("stream end = %v, want code Unavailable", err)
			}
			break
		}
		// The server could not send a result once it stopped, but if one
		// got through it must say the job was cancelled.
		if r.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_CANCELLED {
			t.Errorf("Fetch(%q) = %v, want no result or ERROR_CODE_CANCELLED", hang, r)
		}
	}
	testctx.WaitFor(t, 2*time.Second, "the upstream to see its request cancelled", func() bool { return up.Cancelled() == 1 })
	if !strings.Contains(p.Log(), "drain timeout") {
		t.Errorf("fetchd log lacks the drain timeout warning")
	}
	checkGone(t, p.addr)
}

// TestSignalIdle checks that an idle fetchd exits 0 promptly on SIGTERM and
// on SIGINT.
func TestSignalIdle(t *testing.T) {
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startFetchd(t)
			p.Signal(t, sig)
			if code := p.Wait(t, 5*time.Second); code != 0 {
				t.Errorf("fetchd exit code after %v = %d, want 0", sig, code)
			}
			if !strings.Contains(p.Log(), "msg=drained") {
				t.Errorf("fetchd log lacks msg=drained")
			}
		})
	}
}

// dial returns a client connection to addr, closed when tb ends.
func dial(tb testing.TB, addr string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient(%q): %v", addr, err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

func recvHealth(tb testing.TB, watch grpc.ServerStreamingClient[healthpb.HealthCheckResponse]) healthpb.HealthCheckResponse_ServingStatus {
	tb.Helper()
	r, err := watch.Recv()
	if err != nil {
		tb.Fatalf("Health.Watch: %v", err)
	}
	return r.GetStatus()
}

// checkGone checks that nothing serves on addr any more.
func checkGone(tb testing.TB, addr string) {
	tb.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		tb.Errorf("dial %s after fetchd exited succeeded, want an error", addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn := dial(tb, addr)
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable {
		tb.Errorf("Health.Check on a new connection after exit = %v, want code Unavailable", err)
	}
	conn.Close()
}
