package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

func TestCompletionOrder(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t)
	res, err := fetchAll(testctx.New(t), t, c, []*fetchv1.FetchRequest{
		{Url: up.URL + "/?delay=300ms", Id: "slow"},
		{Url: up.URL + "/?delay=50ms", Id: "fast"},
	})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(res) != 2 {
		t.Fatalf("got %d results, want 2", len(res))
	}
	if res[0].GetIndex() != 1 || res[0].GetId() != "fast" || res[1].GetIndex() != 0 || res[1].GetId() != "slow" {
		t.Errorf("arrival order = [%d %q, %d %q], want the fast job (1) before the slow one (0)",
			res[0].GetIndex(), res[0].GetId(), res[1].GetIndex(), res[1].GetId())
	}
	for _, r := range res {
		if r.GetStatusCode() != http.StatusOK || r.GetError() != nil || string(r.GetBody()) != "ok\n" {
			t.Errorf("result %d = status %d, error %v, body %q; want 200, no error, \"ok\\n\"", r.GetIndex(), r.GetStatusCode(), r.GetError(), r.GetBody())
		}
		if r.GetDuration().AsDuration() <= 0 {
			t.Errorf("result %d duration = %v, want > 0", r.GetIndex(), r.GetDuration().AsDuration())
		}
	}
}

func TestExactlyOneResultPerJob(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t, WithConcurrency(64), WithStreamWindow(128))
	const n = 3000
	jobs := make([]*fetchv1.FetchRequest, n)
	want := make(map[uint64]fetchv1.ErrorCode, n)
	for i := range jobs {
		j := &fetchv1.FetchRequest{Id: fmt.Sprint("job-", i)}
		switch i % 5 {
		case 0, 1:
			j.Url = up.URL + "/?size=10"
		case 2:
			j.Url = up.URL + "/?status=404"
		case 3:
			j.Url = "ftp://example.com/x"
			want[uint64(i)] = fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST
		case 4:
			j.Url = "http://169.254.169.254/latest/meta-data/"
			want[uint64(i)] = fetchv1.ErrorCode_ERROR_CODE_BLOCKED
		}
		jobs[i] = j
	}
	res, err := fetchAll(testctx.New(t), t, c, jobs)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	seen := make([]bool, n)
	for _, r := range res {
		i := r.GetIndex()
		if i >= n {
			t.Fatalf("result index %d out of range [0,%d)", i, n)
		}
		if seen[i] {
			t.Fatalf("index %d answered twice", i)
		}
		seen[i] = true
		if r.GetId() != jobs[i].GetId() || r.GetUrl() != jobs[i].GetUrl() {
			t.Errorf("result %d id/url = %q %q, want %q %q", i, r.GetId(), r.GetUrl(), jobs[i].GetId(), jobs[i].GetUrl())
		}
		if got := r.GetError().GetCode(); got != want[i] {
			t.Errorf("result %d error = %v, want %v", i, r.GetError(), want[i])
		}
	}
	if len(res) != n {
		t.Errorf("got %d results, want %d", len(res), n)
	}
	if got, wantHits := up.Hits(), int64(n*3/5); got != wantHits {
		t.Errorf("upstream hits = %d, want %d (blocked and invalid jobs must not reach it)", got, wantHits)
	}
}

func TestGlobalCapAcrossStreams(t *testing.T) {
	up := testupstream.New(t)
	const limit = 8
	c, _ := startServer(t, WithConcurrency(limit))
	ctx := testctx.New(t)
	var wg sync.WaitGroup
	for s := range 5 {
		wg.Go(func() {
			jobs := make([]*fetchv1.FetchRequest, 40)
			for i := range jobs {
				jobs[i] = job(fmt.Sprintf("%s/?delay=10ms&tag=s%d", up.URL, s))
			}
			res, err := fetchAll(ctx, t, c, jobs)
			if err != nil || len(res) != len(jobs) {
				t.Errorf("stream %d: %d results, err %v; want %d, nil", s, len(res), err, len(jobs))
			}
		})
	}
	wg.Wait()
	if p := up.Peak(); p > limit || p < limit/2 {
		t.Errorf("upstream peak concurrency = %d, want at most %d (and near it)", p, limit)
	}
}

func TestStreamConcurrencyOption(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t, WithConcurrency(32))
	jobs := make([]*fetchv1.FetchRequest, 30)
	for i := range jobs {
		jobs[i] = job(up.URL + "/?delay=10ms")
	}
	jobs[0].StreamOptions = &fetchv1.StreamOptions{Concurrency: 3}
	res, err := fetchAll(testctx.New(t), t, c, jobs)
	if err != nil || len(res) != len(jobs) {
		t.Fatalf("Fetch: %d results, err %v", len(res), err)
	}
	if p := up.Peak(); p != 3 {
		t.Errorf("upstream peak concurrency = %d, want 3 (the stream's own limit)", p)
	}
}

func TestStreamOptionsLimits(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t, WithMaxBodyBytes(1000))
	jobs := []*fetchv1.FetchRequest{
		{Url: up.URL + "/?size=100", StreamOptions: &fetchv1.StreamOptions{MaxBodyBytes: 10, Timeout: dur(100 * time.Millisecond)}},
		{Url: up.URL + "/?delay=5s"},
		{Url: up.URL + "/?size=5", StreamOptions: &fetchv1.StreamOptions{}},
	}
	res, err := fetchAll(testctx.New(t), t, c, jobs)
	if err != nil || len(res) != 3 {
		t.Fatalf("Fetch: %d results, err %v", len(res), err)
	}
	byIndex := map[uint64]*fetchv1.FetchResponse{}
	for _, r := range res {
		byIndex[r.GetIndex()] = r
	}
	if r := byIndex[0]; len(r.GetBody()) != 10 || !r.GetTruncated() {
		t.Errorf("job 0: body %d bytes, truncated %v; want 10, true", len(r.GetBody()), r.GetTruncated())
	}
	if r := byIndex[1]; r.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_TIMEOUT {
		t.Errorf("job 1: error %v, want ERROR_CODE_TIMEOUT from the stream's 100ms default timeout", r.GetError())
	}
	if r := byIndex[2]; r.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST ||
		!strings.Contains(r.GetError().GetMessage(), "first message") {
		t.Errorf("job 2: error %v, want ERROR_CODE_INVALID_REQUEST about stream_options", r.GetError())
	}
}

func TestInvalidJobs(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t, WithMaxTimeout(time.Second))
	bad := []*fetchv1.FetchRequest{
		{Url: ""},
		{Url: "::not a url"},
		{Url: "gopher://example.com/"},
		{Url: up.URL, Method: "TRACE"},
		{Url: up.URL, Headers: []*fetchv1.Header{{Name: "X-A", Value: "a\r\nInjected: 1"}}},
		{Url: up.URL, Headers: []*fetchv1.Header{{Name: "Host", Value: "internal"}}},
		{Url: up.URL, Timeout: dur(time.Hour)},
	}
	jobs := append(slices.Clone(bad), job(up.URL+"/?size=3"))
	res, err := fetchAll(testctx.New(t), t, c, jobs)
	if err != nil {
		t.Fatalf("Fetch: %v (bad jobs must not end the stream)", err)
	}
	if len(res) != len(jobs) {
		t.Fatalf("got %d results, want %d", len(res), len(jobs))
	}
	for _, r := range res {
		want := fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST
		if int(r.GetIndex()) == len(bad) {
			want = fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED
		}
		if got := r.GetError().GetCode(); got != want {
			t.Errorf("job %d (%q) error = %v, want %v", r.GetIndex(), jobs[r.GetIndex()].GetUrl(), r.GetError(), want)
		}
	}
	if up.Hits() != 1 {
		t.Errorf("upstream hits = %d, want 1", up.Hits())
	}
}

func TestFetchBatch(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t)
	req := &fetchv1.FetchBatchRequest{
		Options: &fetchv1.StreamOptions{Concurrency: 2},
	}
	for i := range 20 {
		req.Jobs = append(req.Jobs, &fetchv1.FetchRequest{Url: up.URL + "/?delay=5ms", Id: fmt.Sprint(i)})
	}
	req.Jobs = append(req.Jobs, &fetchv1.FetchRequest{Url: up.URL, StreamOptions: &fetchv1.StreamOptions{}})
	stream, err := c.FetchBatch(testctx.New(t), req)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for {
		r, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.OK && err.Error() != "EOF" {
				t.Fatalf("Recv: %v", err)
			}
			break
		}
		res := r.GetResult()
		if seen[res.GetIndex()] {
			t.Fatalf("index %d twice", res.GetIndex())
		}
		seen[res.GetIndex()] = true
		wantErr := res.GetIndex() == 20
		if (res.GetError() != nil) != wantErr {
			t.Errorf("job %d error = %v, want error: %v", res.GetIndex(), res.GetError(), wantErr)
		}
		if !wantErr && res.GetId() != fmt.Sprint(res.GetIndex()) {
			t.Errorf("job %d id = %q", res.GetIndex(), res.GetId())
		}
	}
	if len(seen) != 21 {
		t.Errorf("got %d results, want 21", len(seen))
	}
	if up.Peak() > 2 {
		t.Errorf("upstream peak = %d, want at most 2 (batch options)", up.Peak())
	}
}

func TestWorkerPanic(t *testing.T) {
	up := testupstream.New(t)
	s := New(WithAllowCIDRs(loopback), WithLogger(quiet), WithDedup(false))
	s.testHookFetch = func(ctx context.Context, j *fetcher.Job, resp *fetchv1.FetchResponse) {
		if strings.Contains(j.URL.RawQuery, "panic") {
			panic("boom")
		}
		s.fetcher.Fetch(ctx, j, resp)
	}
	c := serveOn(t, s)
	res, err := fetchAll(testctx.New(t), t, c, []*fetchv1.FetchRequest{
		job(up.URL + "/?panic=1"), job(up.URL + "/"), job(up.URL + "/?panic=2"),
	})
	if err != nil || len(res) != 3 {
		t.Fatalf("Fetch: %d results, err %v; want 3, nil", len(res), err)
	}
	for _, r := range res {
		wantPanic := r.GetIndex() != 1
		if got := r.GetError().GetCode() == fetchv1.ErrorCode_ERROR_CODE_INTERNAL; got != wantPanic {
			t.Errorf("job %d error = %v, want internal error: %v", r.GetIndex(), r.GetError(), wantPanic)
		}
	}
	// The pool slots of the panicking jobs were released.
	if !s.pool.TryAcquire(int64(s.Concurrency())) {
		t.Error("pool slots leaked by panicking workers")
	} else {
		s.pool.Release(int64(s.Concurrency()))
	}
}

// TestBodyFitsDefaultReceiveLimit: with the default body cap, a body larger
// than a grpc-go client's default 4 MiB receive limit comes back truncated
// and the stream goes on.
func TestBodyFitsDefaultReceiveLimit(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t) // default -max-body-bytes
	res, err := fetchAll(testctx.New(t), t, c, []*fetchv1.FetchRequest{
		job(up.URL + "/?size=6000000"), job(up.URL + "/?size=3"),
	})
	if err != nil || len(res) != 2 {
		t.Fatalf("Fetch: %d results, %v; want 2 and no stream error", len(res), err)
	}
	for _, r := range res {
		if r.GetIndex() == 0 && (len(r.GetBody()) != DefaultMaxBodyBytes || !r.GetTruncated()) {
			t.Errorf("big body: %d bytes, truncated %v; want %d, true", len(r.GetBody()), r.GetTruncated(), DefaultMaxBodyBytes)
		}
	}
}

func TestCloseTwice(t *testing.T) {
	s := New(WithLogger(quiet))
	s.Close()
	s.Close()
}

// TestPanicClearsResult: a worker that panics after an attempt wrote its
// outcome leaves none of it in the INTERNAL result.
func TestPanicClearsResult(t *testing.T) {
	s := New(WithAllowCIDRs(loopback), WithLogger(quiet), WithDedup(false))
	s.testHookFetch = func(_ context.Context, _ *fetcher.Job, resp *fetchv1.FetchResponse) {
		resp.StatusCode, resp.Body, resp.BodyLength, resp.BodySha256, resp.FinalUrl = 200, []byte("x"), 1, []byte{1}, "http://x/"
		panic("after the body")
	}
	c := serveOn(t, s)
	res, err := fetchAll(testctx.New(t), t, c, []*fetchv1.FetchRequest{{Url: "http://example.com/", Id: "a"}})
	if err != nil || len(res) != 1 {
		t.Fatalf("Fetch: %d results, %v; want 1", len(res), err)
	}
	r := res[0]
	if r.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_INTERNAL || r.GetStatusCode() != 0 || len(r.GetBody()) != 0 ||
		r.GetBodyLength() != 0 || len(r.GetBodySha256()) != 0 || r.GetFinalUrl() != "" || r.GetId() != "a" {
		t.Errorf("result after a panic = %v, want only INTERNAL, the id and the url", r)
	}
}
