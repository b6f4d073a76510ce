package recvlimit

import "net"

// conn is a server connection watched by a [Limiter].
type conn struct {
	net.Conn
	l *Limiter

	// p is touched only by the goroutine reading the connection (one at a
	// time: gRPC's handshake, then its reader).
	p parser

	held   int64 // guarded by l.mu: what l counts for this conn
	closed bool  // guarded by l.mu: closed, no longer counted
}

// Read reads from the connection and follows what it read.
func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		before := c.p.held
		c.p.feed(b[:n])
		if c.p.held != before || c.p.broken() || c.p.unfinished() > c.l.maxStreams {
			c.l.update(c, c.p.held, c.p.unfinished(), c.p.broken())
		}
	}
	return n, err
}

// Close stops counting the connection and closes it.
func (c *conn) Close() error {
	c.l.mu.Lock()
	c.l.removeLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// closeRaw closes the connection under TLS if there is one: a TLS Close
// would write an alert, and could wait on a peer that reads nothing. gRPC's
// reader then fails and gRPC drops the connection and its streams.
func (c *conn) closeRaw() {
	if nc, ok := c.Conn.(interface{ NetConn() net.Conn }); ok {
		nc.NetConn().Close()
		return
	}
	c.Conn.Close()
}
