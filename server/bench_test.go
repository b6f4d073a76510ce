package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

var benchBody = make([]byte, 1024)

// cannedFetch answers every job at once with a 1 KiB body, so that a
// benchmark measures fetchd's own cost per job, not HTTP's.
func cannedFetch(_ context.Context, _ *fetcher.Job, resp *fetchv1.FetchResponse) {
	resp.StatusCode = http.StatusOK
	resp.Body = benchBody
	resp.Headers = []*fetchv1.Header{{Name: "Content-Type", Value: "text/plain"}}
}

// BenchmarkEngine runs b.N jobs through one stream's machinery (lanes,
// slots, workers, the sender) with an in-memory fetch and no gRPC.
func BenchmarkEngine(b *testing.B) {
	for _, hosts := range []int{1, 64} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			s := New(WithLogger(quiet), WithDedup(false), WithConcurrency(64), WithHostConcurrency(0))
			defer s.Close()
			s.testHookFetch = cannedFetch
			reqs := make([]*fetchv1.FetchRequest, hosts)
			for i := range reqs {
				reqs[i] = &fetchv1.FetchRequest{Url: fmt.Sprintf("http://h%d.example/x", i)}
			}
			n := 0
			recv := func() (inbound, error) {
				if n == b.N {
					return inbound{}, io.EOF
				}
				n++
				return inbound{req: reqs[n%hosts]}, nil
			}
			got := 0
			send := func(*fetchv1.FetchResponse) error { got++; return nil }
			b.ReportAllocs()
			b.ResetTimer()
			if err := s.serve(context.Background(), recv, send, func(metadata.MD) {}, &fetchv1.StreamOptions{}, false); err != nil {
				b.Fatal(err)
			}
			if got != b.N {
				b.Fatalf("got %d results, want %d", got, b.N)
			}
		})
	}
}

// BenchmarkGRPC runs jobs over a real gRPC stream on loopback with an
// in-memory fetch: the engine plus the gRPC transport and encoding.
func BenchmarkGRPC(b *testing.B) {
	s := New(WithLogger(quiet), WithDedup(false), WithConcurrency(64), WithHostConcurrency(0))
	s.testHookFetch = cannedFetch
	c := serveOn(b, s)
	jobs := make([]*fetchv1.FetchRequest, b.N)
	for i := range jobs {
		jobs[i] = &fetchv1.FetchRequest{Url: "http://h.example/x"}
	}
	b.ReportAllocs()
	b.ResetTimer()
	res, err := fetchAll(context.Background(), b, c, jobs)
	if err != nil || len(res) != b.N {
		b.Fatalf("%d results, %v", len(res), err)
	}
}

// BenchmarkHTTP runs jobs through gRPC and real HTTP on loopback: the whole
// of fetchd's path, next to BenchmarkHTTPBaseline.
func BenchmarkHTTP(b *testing.B) {
	up := testupstream.New(b)
	c, _ := startServer(b, WithConcurrency(64), WithHostConcurrency(0), WithRetryAttempts(1, 1))
	u := up.URL + "/?size=1024"
	jobs := make([]*fetchv1.FetchRequest, b.N)
	for i := range jobs {
		jobs[i] = &fetchv1.FetchRequest{Url: u}
	}
	b.ReportAllocs()
	b.ResetTimer()
	res, err := fetchAll(context.Background(), b, c, jobs)
	if err != nil || len(res) != b.N {
		b.Fatalf("%d results, %v", len(res), err)
	}
	b.ReportMetric(float64(up.Peak()), "peak-conns")
}

// BenchmarkResultEncoding measures marshalling a typical result.
func BenchmarkResultEncoding(b *testing.B) {
	u, _ := url.Parse("http://example.com/some/path?q=1")
	r := &fetchv1.FetchResponse{
		Index: 123456, Url: u.String(), FinalUrl: u.String(), StatusCode: 200, Body: benchBody,
		Duration: durationpb.New(1234567),
		Headers: []*fetchv1.Header{
			{Name: "Content-Length", Value: "1024"}, {Name: "Content-Type", Value: "text/plain"},
			{Name: "Date", Value: "Tue, 24 Nov 2026 22:53:57 GMT"}, {Name: "Server", Value: "bench"},
		},
		Attempts: 1,
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := proto.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHTTPBaseline is the in-process limit BenchmarkHTTP is judged
// against: an errgroup of 64 and one tuned http.Client fetching the same
// URL from the same upstream.
func BenchmarkHTTPBaseline(b *testing.B) {
	up := testupstream.New(b)
	u := up.URL + "/?size=1024"
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var g errgroup.Group
	g.SetLimit(64)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		g.Go(func() error {
			resp, err := hc.Get(u)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(io.Discard, resp.Body)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}
