package server

import (
	"context"
	"testing"
	"time"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// BenchmarkOneStreamUsesPool measures whether one stream can use the whole
// pool with the default stream window: 10,000 jobs of 100 ms on one stream
// with WithConcurrency(1000) and nothing else about streams set, against
// the same with an explicit window of 4000 (large enough not to bind), in
// the same run. The per-host cap is off (WithHostConcurrency(0)): the
// upstream is one host. It reports x-pool-bound, each side's wall time over
// the time the pool allows (ceil(jobs/concurrency) x 100 ms), and
// derived/explicit, their ratio: about 2 with a fixed window of 512, about
// 1 when the window follows the concurrency.
//
//	go test -run NONE -bench OneStreamUsesPool -benchtime 3x ./server
func BenchmarkOneStreamUsesPool(b *testing.B) {
	const (
		jobs        = 10_000
		concurrency = 1000
		delay       = 100 * time.Millisecond
	)
	up := testupstream.New(b)
	u := up.URL + "/?delay=" + delay.String()
	batch := make([]*fetchv1.FetchRequest, jobs)
	for i := range batch {
		batch[i] = &fetchv1.FetchRequest{Url: u}
	}
	common := []Option{WithConcurrency(concurrency), WithHostConcurrency(0), WithRetryAttempts(1, 1)}
	derived, _ := startServer(b, common...)
	explicit, _ := startServer(b, append(common, WithStreamWindow(4*concurrency), WithStreamQueue(16*4*concurrency))...)
	run := func(c fetchv1.FetchServiceClient) time.Duration {
		b.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		res, err := fetchAll(ctx, b, c, batch)
		if err != nil || len(res) != jobs {
			b.Fatalf("fetchAll: %d results for %d jobs, %v", len(res), jobs, err)
		}
		return time.Since(start)
	}
	// Warm both servers' connection pools, so that neither side pays for
	// a thousand connects in the measured runs.
	run(derived)
	run(explicit)
	b.ResetTimer()
	var dSum, eSum time.Duration
	for range b.N {
		dSum += run(derived)
		eSum += run(explicit)
	}
	bound := time.Duration((jobs+concurrency-1)/concurrency) * delay
	b.ReportMetric(float64(dSum)/float64(b.N)/float64(bound), "x-pool-bound(derived)")
	b.ReportMetric(float64(eSum)/float64(b.N)/float64(bound), "x-pool-bound(explicit)")
	b.ReportMetric(float64(dSum)/float64(eSum), "derived/explicit")
}
