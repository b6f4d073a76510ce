package engines

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"
)

const (
	conc     = 64
	bodySize = 1024
	maxBody  = 3 << 20
)

func upstream(tb testing.TB) *httptest.Server {
	tb.Helper()
	body := bytes.Repeat([]byte{'x'}, bodySize)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// run does n requests with conc in flight at once.
func run(b *testing.B, do func() error) {
	var g errgroup.Group
	g.SetLimit(conc)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		g.Go(do)
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkNetHTTP is net/http as fetchd's fetcher uses it: its own
// transport, a context with a timeout per request, the body read through a
// cap.
func BenchmarkNetHTTP(b *testing.B) {
	u := upstream(b).URL + "/x"
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:            dialer.DialContext,
		MaxIdleConns:           conc,
		MaxIdleConnsPerHost:    conc,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	run(b, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		if err != nil || len(body) != bodySize {
			return err
		}
		return nil
	})
}

// BenchmarkFastHTTP is fasthttp's client with the same limits.
func BenchmarkFastHTTP(b *testing.B) {
	u := upstream(b).URL + "/x"
	c := &fasthttp.Client{
		MaxConnsPerHost:     conc,
		ReadTimeout:         30 * time.Second,
		WriteTimeout:        30 * time.Second,
		MaxResponseBodySize: maxBody,
		ReadBufferSize:      64 << 10,
		Dial: func(addr string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 10 * time.Second}).Dial("tcp", addr)
		},
	}
	defer c.CloseIdleConnections()
	run(b, func() error {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(u)
		if err := c.DoTimeout(req, resp, 30*time.Second); err != nil {
			return err
		}
		if len(resp.Body()) != bodySize {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
}
