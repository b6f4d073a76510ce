package main

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// TestHealthListen: -health-listen serves grpc.health.v1 alone, in
// plaintext and without auth, for probes that cannot speak TLS.
func TestHealthListen(t *testing.T) {
	r := startRun(t, env(nil), "-health-listen", "127.0.0.1:0")
	var addr string
	testctx.WaitFor(t, 5*time.Second, "the health listener", func() bool {
		m := healthListening.FindStringSubmatch(r.log.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Check on the health port = %v, %v; want SERVING", resp, err)
	}
	st, err := fetchv1.NewFetchServiceClient(conn).Fetch(ctx)
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Fetch on the health port = %v, want Unimplemented: only health is served there", err)
	}
}

// healthListening matches the log line of the -health-listen server.
var healthListening = regexp.MustCompile(`msg="health listening" addr=(\S+)`)

// TestDrainEndsHealthWatch: open grpc.health.v1.Health/Watch streams, on the
// main port and on -health-listen, see NOT_SERVING when the drain starts and
// end once the fetch streams are done, so that they do not hold the drain
// until -drain-timeout; so does a reflection stream left open (grpcurl's).
func TestDrainEndsHealthWatch(t *testing.T) {
	up := testupstream.New(t)
	r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-drain-timeout", "1m", "-health-listen", "127.0.0.1:0")
	m := healthListening.FindStringSubmatch(r.log.String())
	if m == nil {
		t.Fatalf("run log lacks the health address:\n%s", r.log.String())
	}
	ctx := testctx.WithTimeout(t, 30*time.Second)
	conn := dial(t, r.addr)
	watchers := map[string]grpc.ServerStreamingClient[healthpb.HealthCheckResponse]{}
	for name, c := range map[string]*grpc.ClientConn{"main port": conn, "health port": dial(t, m[1])} {
		w, err := healthpb.NewHealthClient(c).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("Health.Watch on the %s: %v", name, err)
		}
		if s := recvHealth(t, w); s != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Watch on the %s before the drain = %v, want SERVING", name, s)
		}
		watchers[name] = w
	}
	// grpcurl keeps a reflection stream open beside the call it makes.
	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatalf("ServerReflectionInfo: %v", err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatalf("reflection Send: %v", err)
	}
	if _, err := refl.Recv(); err != nil {
		t.Fatalf("reflection Recv: %v", err)
	}
	stream, err := fetchv1.NewFetchServiceClient(conn).Fetch(ctx)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	slow := up.URL + "/?delay=300ms"
	if err := stream.Send(&fetchv1.FetchRequest{Url: slow}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	testctx.WaitFor(t, 10*time.Second, "the job to reach the upstream", func() bool { return up.InFlight() == 1 })

	r.cancel() // as SIGTERM does in main
	for name, w := range watchers {
		if s := recvHealth(t, w); s != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("Watch on the %s after the drain started = %v, want NOT_SERVING", name, s)
		}
	}
	if res, err := stream.Recv(); err != nil || res.GetStatusCode() != 200 {
		t.Errorf("Fetch(%q) during the drain = %v, %v; want status 200", slow, res, err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Errorf("half-closed stream end = %v, want io.EOF (OK)", err)
	}
	// Far less than the 1m -drain-timeout: the watchers must not hold the
	// drain.
	if err := r.Stop(t, 20*time.Second); err != nil {
		t.Errorf("run = %v, want nil", err)
	}
	for name, w := range watchers {
		if r, err := w.Recv(); err == nil {
			t.Errorf("Watch on the %s after fetchd exited = %v, want the stream ended", name, r)
		}
	}
	if _, err := refl.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("reflection stream after fetchd exited: %v, want UNAVAILABLE", err)
	}
	log := r.log.String()
	if !strings.Contains(log, "msg=drained") || strings.Contains(log, "drain timeout") {
		t.Errorf("run log lacks msg=drained or hit the drain timeout:\n%s", log)
	}
}

// TestDrainPorts checks what each port answers while fetchd drains: the
// main port has closed its listener and sent GOAWAY, so a health check
// there, on a new connection or on one opened before, fails UNAVAILABLE;
// only -health-listen answers, NOT_SERVING, until fetchd exits. The stream
// in flight still gets its result.
func TestDrainPorts(t *testing.T) {
	up := testupstream.New(t)
	r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-drain-timeout", "1m", "-health-listen", "127.0.0.1:0")
	m := healthListening.FindStringSubmatch(r.log.String())
	if m == nil {
		t.Fatalf("run log lacks the health address:\n%s", r.log.String())
	}
	ctx := testctx.WithTimeout(t, 30*time.Second)
	conn := dial(t, r.addr)
	stream, err := fetchv1.NewFetchServiceClient(conn).Fetch(ctx)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	slow := up.URL + "/?delay=4s" // outlasts the checks below, even on a loaded machine
	if err := stream.Send(&fetchv1.FetchRequest{Url: slow}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	stream.CloseSend()
	testctx.WaitFor(t, 10*time.Second, "the job to reach the upstream", func() bool { return up.InFlight() == 1 })

	r.cancel() // as SIGTERM does in main
	testctx.WaitFor(t, 5*time.Second, "the drain to start", func() bool { return strings.Contains(r.log.String(), "msg=draining") })
	check := func(c *grpc.ClientConn) (healthpb.HealthCheckResponse_ServingStatus, error) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(c).Check(cctx, &healthpb.HealthCheckRequest{})
		return resp.GetStatus(), err
	}
	testctx.WaitFor(t, 5*time.Second, "the health port to say NOT_SERVING", func() bool {
		s, err := check(dial(t, m[1]))
		return err == nil && s == healthpb.HealthCheckResponse_NOT_SERVING
	})
	for name, c := range map[string]*grpc.ClientConn{"a new connection": dial(t, r.addr), "the open connection": conn} {
		if s, err := check(c); status.Code(err) != codes.Unavailable {
			t.Errorf("Check on the main port, %s, during the drain = %v, %v; want code Unavailable", name, s, err)
		}
	}
	if up.InFlight() != 1 {
		t.Fatalf("the job is no longer in flight: the checks above did not run during the drain")
	}
	if res, err := stream.Recv(); err != nil || res.GetStatusCode() != 200 {
		t.Errorf("Fetch(%q) during the drain = %v, %v; want status 200", slow, res, err)
	}
	if err := r.Stop(t, 20*time.Second); err != nil {
		t.Errorf("run = %v, want nil", err)
	}
}
