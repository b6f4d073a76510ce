package main

import (
	"log/slog"
	"net"
	"sync"
)

// capListener caps the connections open at once on the HTTP/JSON port, in
// all and per client IP (-max-connections, -max-connections-per-ip,
// counted apart from the gRPC port's): a connection over a cap is closed
// as soon as it is accepted, never left in the backlog. Unlike the gRPC
// port it evicts nothing: an HTTP connection holds no slot once idle for
// the server's idle timeout, or past its header timeout before a request.
type capListener struct {
	net.Listener
	max, perIP int // 0: no cap
	log        *slog.Logger

	mu    sync.Mutex // guards total and byIP
	total int
	byIP  map[string]int
}

func newCapListener(l net.Listener, max, perIP int, log *slog.Logger) net.Listener {
	if max == 0 && perIP == 0 {
		return l
	}
	return &capListener{Listener: l, max: max, perIP: perIP, log: log, byIP: map[string]int{}}
}

// Accept returns the next connection within the caps.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if l.take(ip) {
			return &cappedConn{Conn: c, release: sync.OnceFunc(func() { l.give(ip) })}, nil
		}
		l.log.Debug("http connection refused: too many open", "remote", c.RemoteAddr().String())
		c.Close()
	}
}

func (l *capListener) take(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if (l.max > 0 && l.total >= l.max) || (l.perIP > 0 && l.byIP[ip] >= l.perIP) {
		return false
	}
	l.total++
	l.byIP[ip]++
	return true
}

func (l *capListener) give(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[ip]--; l.byIP[ip] == 0 {
		delete(l.byIP, ip)
	}
}

// cappedConn gives its slot back when closed.
type cappedConn struct {
	net.Conn
	release func()
}

func (c *cappedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}
