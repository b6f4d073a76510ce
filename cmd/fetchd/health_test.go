package main

import (
	"context"
	"regexp"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// TestHealthListen: -health-listen serves grpc.health.v1 alone, in
// plaintext and without auth, for probes that cannot speak TLS.
func TestHealthListen(t *testing.T) {
	r := startRun(t, env(nil), "-health-listen", "127.0.0.1:0")
	var addr string
	waitFor(t, 5*time.Second, "the health listener", func() bool {
		m := regexp.MustCompile(`msg="health listening" addr=(\S+)`).FindStringSubmatch(r.log.String())
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
