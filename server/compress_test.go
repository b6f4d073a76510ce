package server

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/stats"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// payloads records the sizes of the messages a client sent and received.
type payloads struct {
	mu  sync.Mutex // guards in and out
	in  []*stats.InPayload
	out []*stats.OutPayload
}

func (p *payloads) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (p *payloads) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (p *payloads) HandleConn(context.Context, stats.ConnStats)                       {}
func (p *payloads) HandleRPC(_ context.Context, s stats.RPCStats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch s := s.(type) {
	case *stats.InPayload:
		p.in = append(p.in, s)
	case *stats.OutPayload:
		p.out = append(p.out, s)
	}
}

// TestGzip: fetchd takes a gzip-compressed job and answers in gzip. The
// codec is registered by the server package itself: this test imports no
// gzip package.
func TestGzip(t *testing.T) {
	if encoding.GetCompressor("gzip") == nil {
		t.Fatal(`no "gzip" compressor registered by package server`)
	}
	up := testupstream.New(t)
	s := New(WithAllowCIDRs(loopback), WithLogger(quiet))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	s.Register(gs)
	served := make(chan struct{})
	go func() { defer close(served); gs.Serve(lis) }()
	defer func() { gs.Stop(); <-served; s.Close() }()

	var p payloads
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(&p), grpc.WithDefaultCallOptions(grpc.UseCompressor("gzip")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	job := &fetchv1.FetchRequest{Url: up.URL + "/?size=20000", Id: strings.Repeat("a", 20000)}
	res, err := fetchAll(testctx.New(t), t, fetchv1.NewFetchServiceClient(conn), []*fetchv1.FetchRequest{job})
	if err != nil || len(res) != 1 || res[0].GetStatusCode() != 200 || len(res[0].GetBody()) != 20000 {
		t.Fatalf("compressed Fetch: %d results, %v; want one 200 with a 20000-byte body", len(res), err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.out) != 1 || p.out[0].CompressedLength >= p.out[0].Length/2 {
		t.Errorf("request not compressed: %+v", p.out)
	}
	if len(p.in) != 1 || p.in[0].CompressedLength >= p.in[0].Length/2 {
		t.Errorf("response not compressed: %+v", p.in)
	}
}
