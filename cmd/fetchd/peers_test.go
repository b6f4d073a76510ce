package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server"
)

// startReplica serves a fetchd server with a per-host cap of hostCap on
// loopback, its host share from watchPeers with lookup when lookup is set,
// and returns a client connected to it.
func startReplica(t *testing.T, hostCap int, lookup func(context.Context, string) ([]string, error)) fetchv1.FetchServiceClient {
	t.Helper()
	quietLog := slog.New(slog.DiscardHandler)
	fs := server.New(server.WithAllowCIDRs(netip.MustParsePrefix("127.0.0.0/8")), server.WithHostConcurrency(hostCap),
		server.WithDedup(false), server.WithLogger(quietLog))
	if lookup != nil {
		stop := watchPeers(context.Background(), "fetchd-headless", time.Hour, lookup, fs, quietLog)
		t.Cleanup(stop)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	fs.Register(gs)
	served := make(chan struct{})
	go func() {
		defer close(served)
		gs.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		<-served
		fs.Close()
	})
	return fetchv1.NewFetchServiceClient(conn)
}

// fetchSpread sends jobs round-robin over one plain Fetch stream per
// replica, as a caller without the Go client would, and returns how many
// results came back for each job, by its Id.
func fetchSpread(ctx context.Context, t *testing.T, replicas []fetchv1.FetchServiceClient, jobs []*fetchv1.FetchRequest) map[string]int {
	t.Helper()
	var mu sync.Mutex // guards got
	got := map[string]int{}
	var wg sync.WaitGroup
	for r, c := range replicas {
		var mine []*fetchv1.FetchRequest
		for i := r; i < len(jobs); i += len(replicas) {
			mine = append(mine, jobs[i])
		}
		wg.Go(func() {
			stream, err := c.Fetch(ctx)
			if err != nil {
				t.Errorf("replica %d: Fetch: %v", r, err)
				return
			}
			var send sync.WaitGroup
			send.Go(func() {
				for _, j := range mine {
					if stream.Send(j) != nil {
						return
					}
				}
				stream.CloseSend()
			})
			defer send.Wait()
			for {
				res, err := stream.Recv()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Errorf("replica %d: Recv: %v", r, err)
					return
				}
				if res.GetStatusCode() != 200 {
					t.Errorf("replica %d: job %s: status %d, error %v", r, res.GetId(), res.GetStatusCode(), res.GetError())
				}
				mu.Lock()
				got[res.GetId()]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return got
}

// TestPeersKeepHostCap: three replicas, each with -host-concurrency 4, and
// a caller that spreads 300 jobs of 200ms over 10 loopback hosts
// round-robin over the three with plain gRPC streams (not the Go client).
// With -peers naming the three, no host ever sees more than 4 in flight
// (each replica allows max(1, 4/3) = 1); without, a host sees up to 12.
// Each job is answered once either way. All jobs on one replica show the
// cost of the share: a host gets 1 in flight.
func TestPeersKeepHostCap(t *testing.T) {
	if testing.Short() {
		t.Skip("three replicas and 300 jobs of 200ms")
	}
	const (
		replicas = 3
		hostCap  = 4
		hosts    = 10
		jobs     = 300
	)
	three := func(context.Context, string) ([]string, error) {
		return []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, nil
	}
	tests := []struct {
		name     string
		lookup   func(context.Context, string) ([]string, error) // nil: no -peers
		spread   int                                             // replicas the caller uses
		wantPeak func(p int64) bool
		want     string
	}{
		{"with -peers", three, replicas, func(p int64) bool { return p <= hostCap }, fmt.Sprintf("at most %d", hostCap)},
		{"without -peers", nil, replicas, func(p int64) bool { return p > hostCap }, fmt.Sprintf("over %d (the bug this guards against)", hostCap)},
		{"with -peers, all on one replica", three, 1, func(p int64) bool { return p <= 1 }, "at most 1 (4/3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testctx.WithTimeout(t, time.Minute)
			ups := make([]*testupstream.Upstream, hosts)
			for i := range ups {
				ups[i] = testupstream.NewAt(t, fmt.Sprintf("127.0.0.%d:0", i+2))
			}
			var cs []fetchv1.FetchServiceClient
			for range replicas {
				cs = append(cs, startReplica(t, hostCap, tt.lookup))
			}
			var js []*fetchv1.FetchRequest
			for i := range jobs {
				js = append(js, &fetchv1.FetchRequest{Id: strconv.Itoa(i), Url: fmt.Sprintf("%s/?delay=200ms&i=%d", ups[i%hosts].URL, i)})
			}
			start := time.Now()
			got := fetchSpread(ctx, t, cs[:tt.spread], js)
			elapsed := time.Since(start)
			for i := range jobs {
				if n := got[strconv.Itoa(i)]; n != 1 {
					t.Errorf("job %d answered %d times, want once", i, n)
				}
			}
			var peaks []int64
			for i, up := range ups {
				peaks = append(peaks, up.Peak())
				if !tt.wantPeak(up.Peak()) {
					t.Errorf("host %d (%s): peak %d in flight, want %s", i, up.Listener.Addr(), up.Peak(), tt.want)
				}
			}
			t.Logf("%d jobs over %d replicas: %v, %.0f results/s; peak in flight per host %v", jobs, tt.spread, elapsed.Round(time.Millisecond), jobs/elapsed.Seconds(), peaks)
		})
	}
}
