package testupstream

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Raw is a TCP upstream on loopback whose handler writes whatever bytes a
// test wants, to misbehave on purpose.
type Raw struct {
	Addr     string       // host:port
	URL      string       // http://Addr/
	Accepted atomic.Int64 // connections accepted
	Finished atomic.Int64 // handlers returned, their connection closed
}

// StartRaw serves every connection on 127.0.0.1 with handle, which owns it
// until it returns; the connection is closed after. When tb ends, done is
// closed, the listener and every open connection are closed, and the
// handlers are waited for.
func StartRaw(tb testing.TB, handle func(c net.Conn, done <-chan struct{})) *Raw {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &Raw{Addr: ln.Addr().String()}
	r.URL = "http://" + r.Addr + "/"
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex // guards conns and closed
		conns  = map[net.Conn]bool{}
		closed bool
		done   = make(chan struct{})
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = true
			mu.Unlock()
			r.Accepted.Add(1)
			wg.Go(func() {
				handle(c, done)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
				r.Finished.Add(1)
			})
		}
	})
	tb.Cleanup(func() {
		close(done)
		ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return r
}
