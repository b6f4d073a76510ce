package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	loopback = netip.MustParsePrefix("127.0.0.0/8")
	quiet    = slog.New(slog.DiscardHandler)
)

// startServer serves a Server with opts on a real TCP listener on loopback
// and returns a client connected to it. Loopback is allowed unless opts
// say otherwise later. Everything is stopped when tb ends.
func startServer(tb testing.TB, opts ...Option) (fetchv1.FetchServiceClient, *Server) {
	tb.Helper()
	// Most tests send identical jobs and count upstream requests: dedup
	// off unless a test turns it on.
	s := New(append([]Option{WithAllowCIDRs(loopback), WithLogger(quiet), WithDedup(false)}, opts...)...)
	return serveOn(tb, s), s
}

// serveOn serves s with gRPC server options opts on a real TCP listener on
// loopback and returns a client connected to it.
func serveOn(tb testing.TB, s *Server, opts ...grpc.ServerOption) fetchv1.FetchServiceClient {
	tb.Helper()
	return fetchv1.NewFetchServiceClient(serveConn(tb, s, opts...))
}

// serveConn serves s with gRPC server options opts on a real TCP listener
// on loopback and returns a connection to it.
func serveConn(tb testing.TB, s *Server, opts ...grpc.ServerOption) *grpc.ClientConn {
	tb.Helper()
	return serveConnWith(tb, s, opts, nil)
}

// serveConnWith is serveConn with the dial options dopts too.
func serveConnWith(tb testing.TB, s *Server, opts []grpc.ServerOption, dopts []grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	s.Register(gs)
	served := make(chan struct{})
	go func() {
		defer close(served)
		gs.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dopts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		conn.Close()
		gs.Stop()
		<-served
		s.Close()
	})
	return conn
}

// fetchAll sends jobs on one Fetch stream, half-closes, and returns the
// results in arrival order along with the stream's final error.
func fetchAll(ctx context.Context, tb testing.TB, c fetchv1.FetchServiceClient, jobs []*fetchv1.FetchRequest) ([]*fetchv1.FetchResponse, error) {
	tb.Helper()
	stream, err := c.Fetch(ctx)
	if err != nil {
		tb.Fatalf("Fetch: %v", err)
	}
	sendErr := make(chan error, 1)
	go func() {
		for _, j := range jobs {
			if err := stream.Send(j); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	var out []*fetchv1.FetchResponse
	for {
		r, err := stream.Recv()
		if err != nil {
			<-sendErr
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, r)
	}
}

func job(url string) *fetchv1.FetchRequest { return &fetchv1.FetchRequest{Url: url} }

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
