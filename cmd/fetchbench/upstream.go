package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// The upstream's endpoints:
//
//	/size/N    a body of N bytes (at most maxBodySize), at once
//	/stream/N  a body of N bytes (at most maxStreamSize) with its
//	           Content-Length, written as a repeated 64 KiB pattern, so
//	           that it is never held whole
//	/delay/MS  "ok\n" after MS milliseconds (at most maxDelay)
//
// A query string is ignored, so a caller may make URLs unique.
const (
	maxBodySize   = 1 << 20
	maxStreamSize = 1 << 30
	patternSize   = 64 << 10
	maxDelay      = time.Minute
)

// upstream is the benchmark's HTTP upstream, tuned to cost little per
// request: bodies are slices of one buffer, headers are preset slices,
// nothing is logged.
type upstream struct {
	body    []byte
	pattern []byte // what /stream/N repeats: byte i is i mod 251, so that no chunk is all zeros
}

var (
	contentType = []string{"application/octet-stream"}
	okBody      = []byte("ok\n")
	okLength    = []string{strconv.Itoa(len(okBody))}
)

func newUpstream() *upstream {
	u := &upstream{body: make([]byte, maxBodySize), pattern: make([]byte, patternSize)}
	for i := range u.pattern {
		u.pattern[i] = byte(i % 251)
	}
	return u
}

// stream writes n bytes of the pattern to w, stopping at the first error
// (the client has gone).
func (u *upstream) stream(w io.Writer, n int64) {
	for n > 0 {
		p := u.pattern[:min(n, int64(len(u.pattern)))]
		if _, err := w.Write(p); err != nil {
			return
		}
		n -= int64(len(p))
	}
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = contentType
	if s, ok := strings.CutPrefix(r.URL.Path, "/size/"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > len(u.body) {
			http.Error(w, "size: want 0 to "+strconv.Itoa(len(u.body)), http.StatusBadRequest)
			return
		}
		h["Content-Length"] = []string{strconv.Itoa(n)}
		w.Write(u.body[:n])
		return
	}
	if s, ok := strings.CutPrefix(r.URL.Path, "/stream/"); ok {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || n > maxStreamSize {
			http.Error(w, "stream: want 0 to "+strconv.Itoa(maxStreamSize), http.StatusBadRequest)
			return
		}
		h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
		u.stream(w, n)
		return
	}
	if s, ok := strings.CutPrefix(r.URL.Path, "/delay/"); ok {
		ms, err := strconv.Atoi(s)
		d := time.Duration(ms) * time.Millisecond
		if err != nil || d < 0 || d > maxDelay {
			http.Error(w, "delay: want 0 to "+strconv.Itoa(int(maxDelay.Milliseconds())), http.StatusBadRequest)
			return
		}
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		h["Content-Length"] = okLength
		w.Write(okBody)
		return
	}
	http.NotFound(w, r)
}

// upstreamListening is the line the upstream writes to stderr once it
// listens; [startProcess] reads the address from it.
const upstreamListening = "fetchbench upstream listening addr="

// runUpstream is the hidden subcommand "fetchbench upstream": it serves the
// upstream until ctx ends, its lifetime is over, or its standard input
// reaches EOF (the parent is gone).
func runUpstream(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("fetchbench upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "`address` to serve HTTP on")
	lifetime := fs.Duration("lifetime", 10*time.Minute, "exit after this long whatever happens")
	watchStdin := fs.Bool("watch-stdin", false, "exit when standard input reaches EOF")
	hosts := fs.Int("hosts", 1, "also serve on the port of -listen at 127.0.0.2, 127.0.0.3, ... up to this many loopback addresses in all: as many upstream hosts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *lifetime)
	defer cancel()
	if *watchStdin {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("upstream: listen: %w", err)
	}
	listeners := []net.Listener{lis}
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	for i := 2; i <= *hosts; i++ {
		l, err := net.Listen("tcp", net.JoinHostPort(loopbackHost(i), port))
		if err != nil {
			return fmt.Errorf("upstream: listen on host %d: %w", i, err)
		}
		listeners = append(listeners, l)
	}
	srv := &http.Server{
		Handler:           newUpstream(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	fmt.Fprintf(stderr, "%s%s\n", upstreamListening, lis.Addr())
	served := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { served <- srv.Serve(l) }()
	}
	select {
	case err := <-served:
		return fmt.Errorf("upstream: %w", err)
	case <-ctx.Done():
	}
	srv.Close()
	for range listeners {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("upstream: %w", err)
		}
	}
	return nil
}

// loopbackHost returns the i-th loopback address, from 1: 127.0.0.1,
// ..., 127.0.0.254, 127.0.1.1, ...
func loopbackHost(i int) string {
	i--
	return fmt.Sprintf("127.0.%d.%d", i/254, i%254+1)
}
