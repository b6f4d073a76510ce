package client_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
)

// recorder is a tiny fetchd on a real gRPC server: it records every job of
// every stream and answers each with a canned result that carries
// body_length and body_sha256 (the SHA-256 of the job's URL). With
// breakFirst, the first stream ends with UNAVAILABLE after its first job,
// unanswered, so that the client opens another.
type recorder struct {
	fetchv1.UnimplementedFetchServiceServer
	breakFirst bool

	mu      sync.Mutex                // guards streams
	streams [][]*fetchv1.FetchRequest // the jobs of each stream, in arrival order
}

// startRecorder serves r on loopback and returns its address; it stops
// when tb ends.
func startRecorder(tb testing.TB, r *recorder) string {
	tb.Helper()
	return serveFetchService(tb, r)
}

// serveFetchService serves srv, a FetchService of a test's own, on
// loopback and returns its address; it stops when tb ends.
func serveFetchService(tb testing.TB, srv fetchv1.FetchServiceServer) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer()
	fetchv1.RegisterFetchServiceServer(gs, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gs.Serve(lis)
	}()
	tb.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return lis.Addr().String()
}

// Fetch records and answers the jobs of one stream.
func (r *recorder) Fetch(st fetchv1.FetchService_FetchServer) error {
	r.mu.Lock()
	n := len(r.streams)
	r.streams = append(r.streams, nil)
	r.mu.Unlock()
	for i := uint64(0); ; i++ {
		job, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.streams[n] = append(r.streams[n], job)
		r.mu.Unlock()
		if r.breakFirst && n == 0 {
			return status.Error(codes.Unavailable, "recorder: first stream broken on purpose")
		}
		sum := sha256.Sum256([]byte(job.GetUrl()))
		if err := st.Send(&fetchv1.FetchResponse{
			Index: i, Id: job.GetId(), Url: job.GetUrl(), StatusCode: 200,
			BodyLength: uint64(len(job.GetUrl())), BodySha256: sum[:],
		}); err != nil {
			return err
		}
	}
}

// recorded returns the jobs of each stream so far.
func (r *recorder) recorded() [][]*fetchv1.FetchRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]*fetchv1.FetchRequest, len(r.streams))
	for i, s := range r.streams {
		out[i] = slices.Clone(s)
	}
	return out
}

// TestStreamOptions checks the StreamOptions the client puts on the first
// message of each stream it opens, and on no other message, for each
// option; and that results carry body_length and body_sha256 through.
func TestStreamOptions(t *testing.T) {
	tests := []struct {
		name       string
		opts       []client.Option
		breakFirst bool
		want       *fetchv1.StreamOptions // nil: none sent
	}{
		{name: "none"},
		{name: "digest", opts: []client.Option{client.WithDigest(true)}, want: &fetchv1.StreamOptions{Digest: true}},
		{name: "discard", opts: []client.Option{client.WithDiscardBody(true)}, want: &fetchv1.StreamOptions{DiscardBody: true}},
		{name: "digest off", opts: []client.Option{client.WithDigest(true), client.WithDigest(false)}},
		{name: "all",
			opts: []client.Option{client.WithDigest(true), client.WithDiscardBody(true), client.WithConcurrency(3),
				client.WithTimeout(2 * time.Second), client.WithMaxBodyBytes(100)},
			want: &fetchv1.StreamOptions{Digest: true, DiscardBody: true, Concurrency: 3,
				Timeout: durationpb.New(2 * time.Second), MaxBodyBytes: 100}},
		{name: "chunks", opts: []client.Option{client.WithChunkBytes(64 << 10)}, want: &fetchv1.StreamOptions{ChunkBytes: 64 << 10}},
		{name: "body writer", opts: []client.Option{client.WithBodyWriter(func(uint64) (client.BodyWriter, error) { return nil, errors.New("unused") }),
			client.WithDiscardBody(true)},
			want: &fetchv1.StreamOptions{ChunkBytes: client.DefaultChunkBytes, DiscardBody: true}},
		{name: "reopened stream", breakFirst: true,
			opts: []client.Option{client.WithDigest(true), client.WithDiscardBody(true)},
			want: &fetchv1.StreamOptions{Digest: true, DiscardBody: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{breakFirst: tt.breakFirst}
			addr := startRecorder(t, rec)
			c := newClient(t, addr, tt.opts...)
			const n = 5
			jobs := make([]*client.Job, n)
			for i := range jobs {
				jobs[i] = &client.Job{Url: fmt.Sprintf("http://127.0.0.1:1/%d", i), Id: fmt.Sprint(i)}
			}
			for _, r := range collect(t, c.FetchOrdered(testctx.New(t), slices.Values(jobs)), n) {
				sum := sha256.Sum256([]byte(jobs[r.GetIndex()].GetUrl()))
				if r.GetBodyLength() != uint64(len(r.GetUrl())) || !slices.Equal(r.GetBodySha256(), sum[:]) {
					t.Errorf("result %d: body_length %d, body_sha256 %x; want %d, %x",
						r.GetIndex(), r.GetBodyLength(), r.GetBodySha256(), len(r.GetUrl()), sum)
				}
			}
			for i, j := range jobs {
				if j.StreamOptions != nil {
					t.Errorf("job %d given to Fetch was modified: stream_options %v", i, j.StreamOptions)
				}
			}
			streams := rec.recorded()
			if wantStreams := map[bool]int{false: 1, true: 2}[tt.breakFirst]; len(streams) != wantStreams {
				t.Fatalf("fetchd saw %d streams, want %d", len(streams), wantStreams)
			}
			for s, st := range streams {
				for i, job := range st {
					want := tt.want
					if i > 0 {
						want = nil
					}
					if got := job.GetStreamOptions(); !proto.Equal(got, want) {
						t.Errorf("stream %d message %d: stream_options = %v, want %v", s, i, got, want)
					}
				}
			}
		})
	}
}
