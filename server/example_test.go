package server_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server"
)

// ExampleServer shows a Server's lifecycle, in the order that matters: New,
// Register on a gRPC server, serve; on shutdown Drain first, then
// GracefulStop bounded by a deadline (Stop once it has passed), and Close
// last, once the gRPC server has stopped. A caller's stream that is still
// open when the drain starts gets the results of the jobs already read, then
// ends with codes.Unavailable and the [server.TrailerUnstarted] trailer.
func ExampleServer() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer upstream.Close()

	// New, then Register on a gRPC server and serve.
	fs := server.New(
		server.WithAllowCIDRs(netip.MustParsePrefix("127.0.0.0/8")), // the upstream is on loopback
		server.WithLogger(slog.New(slog.DiscardHandler)))
	gs := grpc.NewServer()
	fs.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()

	// A caller sends one job, reads its result, and keeps its stream open.
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := fetchv1.NewFetchServiceClient(conn).Fetch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := stream.Send(&fetchv1.FetchRequest{Url: upstream.URL}); err != nil {
		log.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.GetStatusCode(), string(res.GetBody()))

	// Shutdown. 1: Drain, so that every stream stops reading jobs, answers
	// those it has read, and ends; it does not wait.
	fs.Drain()
	// 2: GracefulStop, which refuses new streams and waits for the open
	// ones: bounded by a deadline, after which Stop cancels what is left.
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	select {
	case <-stopped:
	case <-deadline.C:
		gs.Stop()
		<-stopped
	}
	if err := <-served; err != nil {
		log.Fatal(err)
	}
	// 3: Close, once the gRPC server has stopped: it waits for the
	// streams' last goroutines and closes idle upstream connections.
	fs.Close()

	// What the caller saw: its stream ended, its unread jobs (none here)
	// never started, so safe to send elsewhere.
	_, err = stream.Recv()
	fmt.Println(status.Code(err), stream.Trailer().Get(server.TrailerUnstarted))
	// Output:
	// 200 hello
	// Unavailable [true]
}
