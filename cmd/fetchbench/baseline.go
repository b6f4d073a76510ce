package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// baseline fetches jobs in this process the way a caller would without
// fetchd: an [errgroup.Group] limited to conc goroutines sharing one tuned
// [http.Client], every body read in full. It is the yardstick of every
// workload.
type baseline struct {
	conc int
	tr   *http.Transport
	hc   *http.Client
}

func newBaseline(conc int) *baseline {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conc,
		MaxIdleConnsPerHost: conc,
		IdleConnTimeout:     90 * time.Second,
	}
	return &baseline{conc: conc, tr: tr, hc: &http.Client{Transport: tr, Timeout: time.Minute}}
}

// close closes the idle connections.
func (bl *baseline) close() { bl.tr.CloseIdleConnections() }

// run fetches l's jobs and measures the run.
func (bl *baseline) run(ctx context.Context, l load, obs *observer) (side, error) {
	var errs atomic.Int64
	get := func(url string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			errs.Add(1)
			return
		}
		resp, err := bl.hc.Do(req)
		if err != nil {
			errs.Add(1)
			return
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			errs.Add(1)
		}
	}

	m, err := startMeasure(nil, obs)
	if err != nil {
		return side{}, err
	}
	var g errgroup.Group
	g.SetLimit(bl.conc)
	for i := 0; i < l.n && ctx.Err() == nil; i++ {
		url := l.urlAt(i)
		g.Go(func() error {
			get(url)
			obs.done()
			return nil
		})
	}
	g.Wait()
	s, err := m.finish(obs)
	s.errors = int(errs.Load())
	if err == nil {
		err = ctx.Err()
	}
	return s, err
}
