package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/metadata"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

// fakeUpstream answers fetches in memory, inside a synctest bubble, by a
// script keyed by URL path; it records when each request came.
type fakeUpstream struct {
	mu     sync.Mutex // guards calls
	calls  map[string][]time.Time
	script func(path string, n int, resp *fetchv1.FetchResponse) // n: this path's request number, from 1
}

func (f *fakeUpstream) fetch(ctx context.Context, j *fetcher.Job, resp *fetchv1.FetchResponse) {
	f.mu.Lock()
	f.calls[j.URL.Path] = append(f.calls[j.URL.Path], time.Now())
	n := len(f.calls[j.URL.Path])
	f.mu.Unlock()
	resp.StatusCode = http.StatusOK
	f.script(j.URL.Path, n, resp)
}

func (f *fakeUpstream) times(path string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls[path]...)
}

// serveFake runs jobs through a Server's stream machinery (no gRPC, no
// network) with fetches answered by up, and returns the results by index.
func serveFake(t *testing.T, up *fakeUpstream, opts *fetchv1.StreamOptions, jobs []*fetchv1.FetchRequest, sopts ...Option) map[uint64]*fetchv1.FetchResponse {
	t.Helper()
	s := New(append([]Option{WithLogger(quiet), WithDedup(false)}, sopts...)...)
	defer s.Close()
	return serveFakeOn(t, s, up.fetch, opts, jobs)
}

// serveFakeOn is serveFake on the Server s, with fetches answered by fetch.
func serveFakeOn(t *testing.T, s *Server, fetch func(context.Context, *fetcher.Job, *fetchv1.FetchResponse), opts *fetchv1.StreamOptions, jobs []*fetchv1.FetchRequest) map[uint64]*fetchv1.FetchResponse {
	t.Helper()
	s.testHookFetch = fetch
	next := 0
	recv := func() (inbound, error) {
		if next == len(jobs) {
			return inbound{}, io.EOF
		}
		next++
		return inbound{req: jobs[next-1]}, nil
	}
	var mu sync.Mutex
	got := map[uint64]*fetchv1.FetchResponse{}
	send := func(r *fetchv1.FetchResponse) error {
		mu.Lock()
		defer mu.Unlock()
		if got[r.GetIndex()] != nil {
			t.Errorf("index %d answered twice", r.GetIndex())
		}
		got[r.GetIndex()] = r
		return nil
	}
	if opts == nil {
		opts = &fetchv1.StreamOptions{}
	}
	if err := s.serve(context.Background(), recv, send, func(metadata.MD) {}, opts, false); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if len(got) != len(jobs) {
		t.Fatalf("got %d results, want %d", len(got), len(jobs))
	}
	return got
}

func newFake(script func(path string, n int, resp *fetchv1.FetchResponse)) *fakeUpstream {
	return &fakeUpstream{calls: map[string][]time.Time{}, script: script}
}

func header(name, value string) []*fetchv1.Header {
	return []*fetchv1.Header{{Name: name, Value: value}}
}

func TestRetrySynctest(t *testing.T) {
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) // synctest's clock start
	tests := []struct {
		name         string
		job          *fetchv1.FetchRequest
		opts         []Option
		fail         int // leading failures
		status       int32
		retryAfter   string
		wantAttempts uint32
		wantStatus   int32
		wantGaps     []time.Duration // exact gaps between attempts; nil: see minGap
		minGap       time.Duration
		maxGap       time.Duration
	}{
		{name: "429 Retry-After seconds", job: &fetchv1.FetchRequest{Url: "http://h/a"}, fail: 1, status: 429, retryAfter: "5",
			wantAttempts: 2, wantStatus: 200, wantGaps: []time.Duration{5 * time.Second}},
		{name: "503 Retry-After HTTP date", job: &fetchv1.FetchRequest{Url: "http://h/a"}, fail: 1, status: 503,
			retryAfter: epoch.Add(7 * time.Second).Format(http.TimeFormat), wantAttempts: 2, wantStatus: 200, wantGaps: []time.Duration{7 * time.Second}},
		{name: "Retry-After capped by the server maximum", job: &fetchv1.FetchRequest{Url: "http://h/a"}, opts: []Option{WithMaxRetryAfter(2 * time.Second)},
			fail: 1, status: 429, retryAfter: "60", wantAttempts: 2, wantStatus: 200, wantGaps: []time.Duration{2 * time.Second}},
		{name: "Retry-After past the deadline: no retry", job: &fetchv1.FetchRequest{Url: "http://h/a", Timeout: dur(3 * time.Second)},
			fail: 1, status: 429, retryAfter: "10", wantAttempts: 1, wantStatus: 429},
		{name: "exponential backoff with jitter", job: &fetchv1.FetchRequest{Url: "http://h/a"}, opts: []Option{WithRetryBackoff(time.Second, time.Minute)},
			fail: 2, status: 502, wantAttempts: 3, wantStatus: 200, minGap: 500 * time.Millisecond, maxGap: 2 * time.Second},
		{name: "attempts exhausted", job: &fetchv1.FetchRequest{Url: "http://h/a"}, fail: 5, status: 504, wantAttempts: 3, wantStatus: 504,
			minGap: 125 * time.Millisecond, maxGap: 500 * time.Millisecond},
		{name: "404 is not retried", job: &fetchv1.FetchRequest{Url: "http://h/a"}, fail: 1, status: 404, wantAttempts: 1, wantStatus: 404},
		{name: "POST not retried by default", job: &fetchv1.FetchRequest{Url: "http://h/a", Method: "POST"}, fail: 1, status: 503,
			wantAttempts: 1, wantStatus: 503},
		{name: "POST retried when the job opts in", job: &fetchv1.FetchRequest{Url: "http://h/a", Method: "POST", Retry: &fetchv1.RetryPolicy{RetryNonIdempotent: true}},
			fail: 1, status: 503, wantAttempts: 2, wantStatus: 200, minGap: 125 * time.Millisecond, maxGap: 250 * time.Millisecond},
		{name: "retries turned off by the job", job: &fetchv1.FetchRequest{Url: "http://h/a", Retry: &fetchv1.RetryPolicy{MaxAttempts: 1}},
			fail: 1, status: 503, wantAttempts: 1, wantStatus: 503},
		{name: "a job cannot ask for more than the server maximum", job: &fetchv1.FetchRequest{Url: "http://h/a", Retry: &fetchv1.RetryPolicy{MaxAttempts: 50}},
			opts: []Option{WithRetryAttempts(3, 4)}, fail: 10, status: 503, wantAttempts: 4, wantStatus: 503, minGap: 0, maxGap: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				up := newFake(func(_ string, n int, resp *fetchv1.FetchResponse) {
					if n <= tt.fail {
						resp.StatusCode = tt.status
						if tt.retryAfter != "" {
							resp.Headers = header("Retry-After", tt.retryAfter)
						}
					}
				})
				got := serveFake(t, up, nil, []*fetchv1.FetchRequest{tt.job}, tt.opts...)[0]
				if got.GetAttempts() != tt.wantAttempts || got.GetStatusCode() != tt.wantStatus {
					t.Errorf("result: attempts %d status %d, want %d and %d", got.GetAttempts(), got.GetStatusCode(), tt.wantAttempts, tt.wantStatus)
				}
				times := up.times("/a")
				for i := 1; i < len(times); i++ {
					gap := times[i].Sub(times[i-1])
					switch {
					case tt.wantGaps != nil:
						if gap != tt.wantGaps[i-1] {
							t.Errorf("gap %d = %v, want %v", i, gap, tt.wantGaps[i-1])
						}
					case gap < tt.minGap || gap > tt.maxGap:
						t.Errorf("gap %d = %v, want in [%v, %v]", i, gap, tt.minGap, tt.maxGap)
					}
				}
			})
		})
	}
}

// TestBackoffHoldsNoSlot: with a pool of one, a job backing off for 10s
// leaves the slot to another host's job, which finishes meanwhile.
func TestBackoffHoldsNoSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		up := newFake(func(path string, n int, resp *fetchv1.FetchResponse) {
			if path == "/slow" && n == 1 {
				resp.StatusCode = 503
				resp.Headers = header("Retry-After", "10")
			}
		})
		got := serveFake(t, up, nil, []*fetchv1.FetchRequest{
			{Url: "http://a/slow"}, {Url: "http://b/fast"},
		}, WithConcurrency(1))
		if got[0].GetAttempts() != 2 || got[0].GetStatusCode() != 200 {
			t.Errorf("backing-off job: attempts %d status %d, want 2, 200", got[0].GetAttempts(), got[0].GetStatusCode())
		}
		if fast := up.times("/fast"); len(fast) != 1 || fast[0].Sub(start) >= 10*time.Second {
			t.Errorf("the other host's job ran at %v, want during the 10s backoff", fast)
		}
	})
}

// TestHostPause: a 429 with Retry-After pauses the whole host, not only
// the job that got it; other hosts go on.
func TestHostPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		up := newFake(func(path string, n int, resp *fetchv1.FetchResponse) {
			if path == "/first" && n == 1 {
				resp.StatusCode = 429
				resp.Headers = header("Retry-After", "30")
			}
			time.Sleep(time.Second) // each fetch takes a second
		})
		got := serveFake(t, up, &fetchv1.StreamOptions{HostConcurrency: 1, Timeout: dur(2 * time.Minute)}, []*fetchv1.FetchRequest{
			{Url: "http://h/first"}, {Url: "http://h/second"}, {Url: "http://other/x"},
		})
		if got[0].GetAttempts() != 2 {
			t.Errorf("first job attempts = %d, want 2", got[0].GetAttempts())
		}
		// first: 0s-1s, then the host pauses until 31s.
		if second := up.times("/second"); len(second) != 1 || second[0].Sub(start) < 31*time.Second {
			t.Errorf("same host's second job ran at %v after start, want after the 30s pause", second[0].Sub(start))
		}
		if x := up.times("/x"); len(x) != 1 || x[0].Sub(start) > time.Second {
			t.Errorf("other host's job ran at %v after start, want at once", x[0].Sub(start))
		}
	})
}

// TestHostRateSynctest: a stream's per-host rate spaces its requests.
func TestHostRateSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		up := newFake(func(string, int, *fetchv1.FetchResponse) {})
		var jobs []*fetchv1.FetchRequest
		for i := range 6 {
			jobs = append(jobs, &fetchv1.FetchRequest{Url: fmt.Sprintf("http://h/r?i=%d", i)})
		}
		serveFake(t, up, &fetchv1.StreamOptions{HostRate: 2}, jobs)
		times := up.times("/r")
		// A burst of 2, then one every 500ms: the last at 2s.
		if len(times) != 6 || times[5].Sub(start) != 2*time.Second {
			t.Errorf("6 requests at 2/s: last at %v, want 2s", times[len(times)-1].Sub(start))
		}
	})
}

// TestServerHostRateSynctest: the server's per-host rate gives each host
// its own bucket: two hosts at 1/s each take 3s for 4 requests each, not
// 7s for 8.
func TestServerHostRateSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		up := newFake(func(string, int, *fetchv1.FetchResponse) {})
		var jobs []*fetchv1.FetchRequest
		for i := range 4 {
			jobs = append(jobs, &fetchv1.FetchRequest{Url: fmt.Sprintf("http://one/r?i=%d", i)},
				&fetchv1.FetchRequest{Url: fmt.Sprintf("http://two/f?i=%d", i)})
		}
		serveFake(t, up, nil, jobs, WithHostRate(1))
		for _, path := range []string{"/r", "/f"} {
			times := up.times(path)
			for i, at := range times {
				if want := time.Duration(i) * time.Second; at.Sub(start) != want {
					t.Errorf("%s request %d at %v, want %v", path, i, at.Sub(start), want)
				}
			}
		}
	})
}

// TestHeadOfLine: one stream with jobs for a slow host (capped at 2)
// queued before jobs for a fast host: the fast ones do not wait.
func TestHeadOfLine(t *testing.T) {
	slow := testupstream.NewAt(t, "127.0.0.2:0")
	fast := testupstream.NewAt(t, "127.0.0.3:0")
	c, _ := startServer(t, WithHostConcurrency(2))
	var jobs []*fetchv1.FetchRequest
	for i := range 20 {
		jobs = append(jobs, &fetchv1.FetchRequest{Url: fmt.Sprintf("%s/?delay=300ms&i=%d", slow.URL, i), Id: "slow"})
	}
	for i := range 20 {
		jobs = append(jobs, &fetchv1.FetchRequest{Url: fmt.Sprintf("%s/?i=%d", fast.URL, i), Id: "fast"})
	}
	res, err := fetchAll(testctx.New(t), t, c, jobs)
	if err != nil || len(res) != len(jobs) {
		t.Fatalf("Fetch: %d results, %v", len(res), err)
	}
	// Order of arrival: every fast result before the first slow one.
	firstSlow, lastFast := -1, -1
	for i, r := range res {
		if r.GetId() == "slow" && firstSlow < 0 {
			firstSlow = i
		}
		if r.GetId() == "fast" {
			lastFast = i
		}
	}
	if lastFast > firstSlow {
		t.Errorf("last fast result arrived at position %d, after the first slow one at %d: head-of-line blocking", lastFast, firstSlow)
	}
	if p := slow.Peak(); p != 2 {
		t.Errorf("slow host peak concurrency = %d, want its cap 2", p)
	}
}

// TestHostCapAcrossStreams: the per-host cap holds across streams; each
// host counts its own peak.
func TestHostCapAcrossStreams(t *testing.T) {
	ups := []*testupstream.Upstream{testupstream.NewAt(t, "127.0.0.2:0"), testupstream.NewAt(t, "127.0.0.3:0"), testupstream.NewAt(t, "127.0.0.4:0")}
	c, _ := startServer(t, WithHostConcurrency(3), WithConcurrency(64))
	ctx := testctx.New(t)
	var wg sync.WaitGroup
	for s := range 4 {
		wg.Go(func() {
			var jobs []*fetchv1.FetchRequest
			for i := range 15 {
				for _, up := range ups {
					jobs = append(jobs, job(fmt.Sprintf("%s/?delay=20ms&s=%d&i=%d", up.URL, s, i)))
				}
			}
			res, err := fetchAll(ctx, t, c, jobs)
			if err != nil || len(res) != len(jobs) {
				t.Errorf("stream %d: %d results, %v", s, len(res), err)
			}
		})
	}
	wg.Wait()
	for i, up := range ups {
		if p := up.Peak(); p != 3 {
			t.Errorf("host %d peak concurrency = %d, want exactly the cap 3", i, p)
		}
	}
}

// TestDedup: 100 identical GETs in flight at once reach the upstream once
// and give 100 results with 100 indexes.
func TestDedup(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t, WithDedup(true))
	jobs := make([]*fetchv1.FetchRequest, 100)
	for i := range jobs {
		jobs[i] = &fetchv1.FetchRequest{Url: up.URL + "/?delay=300ms&size=7", Id: fmt.Sprint(i)}
	}
	res, err := fetchAll(testctx.New(t), t, c, jobs)
	if err != nil || len(res) != 100 {
		t.Fatalf("Fetch: %d results, %v", len(res), err)
	}
	seen := map[uint64]bool{}
	shared := 0
	for _, r := range res {
		if seen[r.GetIndex()] || r.GetId() != fmt.Sprint(r.GetIndex()) {
			t.Errorf("result index %d id %q: duplicate or wrong id", r.GetIndex(), r.GetId())
		}
		seen[r.GetIndex()] = true
		if r.GetStatusCode() != 200 || len(r.GetBody()) != 7 {
			t.Errorf("result %d: status %d body %d bytes", r.GetIndex(), r.GetStatusCode(), len(r.GetBody()))
		}
		if r.GetShared() {
			shared++
		}
	}
	if up.Hits() != 1 || shared != 99 {
		t.Errorf("upstream hits = %d, shared results = %d; want 1 and 99", up.Hits(), shared)
	}
	// Turned off by the stream: every job fetches.
	jobs[0].StreamOptions = &fetchv1.StreamOptions{DisableDedup: true}
	if _, err := fetchAll(testctx.New(t), t, c, jobs[:10]); err != nil {
		t.Fatal(err)
	}
	if up.Hits() != 11 {
		t.Errorf("with disable_dedup: upstream hits = %d, want 1 + 10", up.Hits())
	}
}

// TestRetryRealUpstream: an upstream that answers 429 with Retry-After
// and then 200; the job succeeds on its second attempt after the delay.
func TestRetryRealUpstream(t *testing.T) {
	up := testupstream.New(t)
	c, _ := startServer(t)
	res, err := fetchAll(testctx.New(t), t, c, []*fetchv1.FetchRequest{
		job(up.URL + "/?fail=1&failstatus=429&retryafter=1"),
		{Url: up.URL + "/?fail=1&failstatus=503&k=post", Method: "POST"},
	})
	if err != nil || len(res) != 2 {
		t.Fatalf("Fetch: %d results, %v", len(res), err)
	}
	for _, r := range res {
		switch r.GetIndex() {
		case 0:
			if r.GetStatusCode() != 200 || r.GetAttempts() != 2 || r.GetDuration().AsDuration() < 900*time.Millisecond {
				t.Errorf("GET: status %d attempts %d duration %v; want 200 after 2 attempts and the 1s Retry-After",
					r.GetStatusCode(), r.GetAttempts(), r.GetDuration().AsDuration())
			}
		case 1:
			if r.GetStatusCode() != 503 || r.GetAttempts() != 1 {
				t.Errorf("POST: status %d attempts %d; want 503 after 1 attempt", r.GetStatusCode(), r.GetAttempts())
			}
		}
	}
}
