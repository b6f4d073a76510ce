package fetcher

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"golang.org/x/sync/errgroup"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// BenchmarkFetch runs Fetcher.Fetch for a 1 KiB body with 64 in flight,
// with each engine, from one upstream in this process (its CPU is in the
// figures). The lean run reports its time per job as a fraction of
// net/http's ("x-nethttp"); run both, in this order.
func BenchmarkFetch(b *testing.B) {
	body := bytes.Repeat([]byte{'x'}, 1024)
	srv, _ := startHTTP(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	job, err := Validate(&fetchv1.FetchRequest{Url: srv.URL + "/x"}, testLimits)
	if err != nil {
		b.Fatal(err)
	}
	var stdNs float64
	for _, engine := range []Engine{EngineNetHTTP, EngineLean} {
		b.Run(engine.String(), func(b *testing.B) {
			f := New(Config{Policy: loopbackPolicy(), Conns: 64, Engine: engine})
			defer f.Close()
			var g errgroup.Group
			g.SetLimit(64)
			b.ReportAllocs()
			for b.Loop() {
				g.Go(func() error {
					j := *job
					j.Header = http.Header{}
					resp := &fetchv1.FetchResponse{}
					f.Fetch(context.Background(), &j, resp)
					if resp.Error != nil || len(resp.Body) != len(body) {
						b.Errorf("Fetch = %v, %d bytes", resp.Error, len(resp.Body))
					}
					return nil
				})
			}
			g.Wait()
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if engine == EngineNetHTTP {
				stdNs = ns
			} else if stdNs > 0 {
				b.ReportMetric(ns/stdNs, "x-nethttp")
			}
		})
	}
}
