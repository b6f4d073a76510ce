package h1

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

// BenchmarkTransport does GETs of a 1 KiB body with 64 in flight, through
// net/http's Transport and through this package's, from the same upstream
// (an httptest server in this process, so its CPU is in both figures). The
// h1 run reports its time per request as a fraction of net/http's
// ("x-nethttp"); run both, in this order.
func BenchmarkTransport(b *testing.B) {
	body := bytes.Repeat([]byte{'x'}, 1024)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}))
	defer srv.Close()

	std := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}
	lean := &Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleReadTimeout: 30 * time.Second}
	var stdNs float64
	for _, tc := range []struct {
		name string
		rt   interface {
			http.RoundTripper
			CloseIdleConnections()
		}
	}{{"net/http", std}, {"h1", lean}} {
		b.Run(tc.name, func(b *testing.B) {
			defer tc.rt.CloseIdleConnections()
			hc := &http.Client{Transport: tc.rt}
			var g errgroup.Group
			g.SetLimit(64)
			b.ReportAllocs()
			for b.Loop() {
				g.Go(func() error { return get(hc, srv.URL) })
			}
			if err := g.Wait(); err != nil {
				b.Fatal(err)
			}
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if tc.name == "net/http" {
				stdNs = ns
			} else if stdNs > 0 {
				b.ReportMetric(ns/stdNs, "x-nethttp")
			}
		})
	}
}

// get does what fetchd's fetcher does per job: a context with a timeout, a
// request, the body read to its end.
func get(hc *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && n != 1024 {
		err = io.ErrUnexpectedEOF
	}
	return err
}
