package server

import (
	"context"
	"fmt"
	"io"
	"testing"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

// fetchMany sends jobs over FetchMany in messages of the given sizes, in
// turn, half-closes, and returns every response message.
func fetchMany(ctx context.Context, tb testing.TB, c fetchv1.FetchServiceClient, jobs []*fetchv1.FetchRequest, sizes ...int) []*fetchv1.FetchManyResponse {
	tb.Helper()
	st, err := c.FetchMany(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		for i, k := 0, 0; i < len(jobs); k++ {
			n := min(sizes[k%len(sizes)], len(jobs)-i)
			if err := st.Send(&fetchv1.FetchManyRequest{Jobs: jobs[i : i+n]}); err != nil {
				sent <- err
				return
			}
			i += n
		}
		sent <- st.CloseSend()
	}()
	var msgs []*fetchv1.FetchManyResponse
	for {
		m, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatalf("FetchMany: Recv = %v after %d messages", err, len(msgs))
		}
		msgs = append(msgs, m)
	}
	if err := <-sent; err != nil {
		tb.Fatalf("FetchMany: Send = %v", err)
	}
	return msgs
}

// TestFetchMany: jobs sent several to a message are indexed by arrival
// across messages, every one gets exactly one result with its own URL, and
// results ready together share a message.
func TestFetchMany(t *testing.T) {
	s := New(WithLogger(quiet), WithDedup(false), WithConcurrency(64), WithHostConcurrency(0))
	s.testHookFetch = cannedFetch
	c := serveOn(t, s)
	const n = 3000
	jobs := make([]*fetchv1.FetchRequest, n)
	for i := range jobs {
		jobs[i] = &fetchv1.FetchRequest{Url: fmt.Sprintf("http://h.example/%d", i)}
	}
	msgs := fetchMany(testCtx(t), t, c, jobs, 1, 7, 100, 0, 250)
	seen := make([]int, n)
	most := 0
	for _, m := range msgs {
		if len(m.GetResults()) == 0 {
			t.Errorf("FetchMany sent a message with no results")
		}
		most = max(most, len(m.GetResults()))
		for _, r := range m.GetResults() {
			i := r.GetIndex()
			if i >= n {
				t.Fatalf("FetchMany result index %d, want < %d", i, n)
			}
			seen[i]++
			if want := fmt.Sprintf("http://h.example/%d", i); r.GetUrl() != want {
				t.Errorf("FetchMany result %d has URL %q, want %q", i, r.GetUrl(), want)
			}
		}
	}
	for i, k := range seen {
		if k != 1 {
			t.Errorf("FetchMany: index %d answered %d times, want 1", i, k)
		}
	}
	if most > maxBatch {
		t.Errorf("FetchMany sent %d results in one message, want at most %d", most, maxBatch)
	}
	if len(msgs) >= n {
		t.Errorf("FetchMany sent %d messages for %d results, want fewer: results ready together share one", len(msgs), n)
	}
	t.Logf("%d results in %d messages, at most %d in one", n, len(msgs), most)
}

// TestFetchManyBatchBytes: a message stops taking results once their
// bodies reach maxBatchBytes, so that batches stay under gRPC's default
// receive limit; a result over that alone still goes, on its own.
func TestFetchManyBatchBytes(t *testing.T) {
	tests := []struct {
		name    string
		body    int
		jobs    int
		wantMax int // results per message, at most
	}{
		{"400 KiB bodies, two to a message", 400 << 10, 20, 2},
		{"1.5 MiB bodies, one to a message", 1536 << 10, 6, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := make([]byte, tt.body)
			s := New(WithLogger(quiet), WithDedup(false), WithConcurrency(8), WithHostConcurrency(0))
			s.testHookFetch = func(_ context.Context, _ *fetcher.Job, resp *fetchv1.FetchResponse) {
				resp.StatusCode, resp.Body = 200, body
			}
			c := serveOn(t, s)
			jobs := make([]*fetchv1.FetchRequest, tt.jobs)
			for i := range jobs {
				jobs[i] = &fetchv1.FetchRequest{Url: "http://h.example/"}
			}
			total := 0
			for _, m := range fetchMany(testCtx(t), t, c, jobs, tt.jobs) {
				if got := len(m.GetResults()); got > tt.wantMax {
					t.Errorf("FetchMany sent %d results of %d bytes in one message, want at most %d", got, tt.body, tt.wantMax)
				}
				total += len(m.GetResults())
			}
			if total != tt.jobs {
				t.Errorf("FetchMany returned %d results, want %d", total, tt.jobs)
			}
		})
	}
}
