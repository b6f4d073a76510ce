package fetcher

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sync"
	"time"

	"github.com/fetchd/fetchd/server/internal/h1"
)

// idleConn is an upstream TCP connection, under TLS if any, whose reads fail
// after timeout without a byte while a job uses it: a read deadline is set
// before every Read, so it measures silence, not the length of the
// response. While no job uses the connection (idle in the pool, where the
// transport keeps a read pending to notice the upstream closing it) reads
// have no deadline, so pooled connections live out their idle timeout.
type idleConn struct {
	net.Conn
	timeout time.Duration

	mu    sync.Mutex // guards users and the read deadline
	users int        // jobs using the connection: one for HTTP/1, any number for HTTP/2
}

func (c *idleConn) Read(b []byte) (int, error) {
	c.rearm()
	n, err := c.Conn.Read(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		err = &h1.IdleReadError{Idle: c.timeout, Err: err} // the error the h1 engine returns too
	}
	return n, err
}

// rearm moves the read deadline to timeout from now, if a job uses the
// connection. It costs a lock and a timer update, no system call: about 4%
// of a 4 KiB read on loopback (BenchmarkIdleConn).
func (c *idleConn) rearm() {
	c.mu.Lock()
	if c.users > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	c.mu.Unlock()
}

// acquire marks the connection used by one more job and arms the deadline,
// for the read the transport may already have pending.
func (c *idleConn) acquire() {
	c.mu.Lock()
	c.users++
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	c.mu.Unlock()
}

// release undoes acquire; the last user clears the deadline, pending read
// included.
func (c *idleConn) release() {
	c.mu.Lock()
	c.users--
	if c.users == 0 {
		c.Conn.SetReadDeadline(time.Time{})
	}
	c.mu.Unlock()
}

// requestConns holds the connections one request uses (net/http may retry it on
// another), learnt from [httptrace.ClientTrace.GotConn], so that their
// idle-read deadlines apply exactly until its response body is closed.
type requestConns struct {
	mu    sync.Mutex // guards conns and done
	conns []*idleConn
	done  bool
}

// gotConn acquires the connection the request got; one it got before, on
// which it failed, is released.
func (j *requestConns) gotConn(info httptrace.GotConnInfo) {
	c := asIdleConn(info.Conn)
	if c == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done {
		return
	}
	c.acquire()
	for _, old := range j.conns {
		old.release()
	}
	j.conns = append(j.conns[:0], c)
}

// releaseAll releases every connection held, once the response is over.
func (j *requestConns) releaseAll() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.done = true
	for _, c := range j.conns {
		c.release()
	}
	j.conns = nil
}

// asIdleConn returns the idleConn under c, which the transport hands out
// as dialled or wrapped in TLS; nil if there is none.
func asIdleConn(c net.Conn) *idleConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	ic, _ := c.(*idleConn)
	return ic
}

// idleReadTransport is net/http's transport with the idle-read deadline of
// each request's connection armed from the moment the transport hands it
// over ([httptrace.ClientTrace.GotConn]) until the response body is closed.
type idleReadTransport struct{ rt http.RoundTripper }

func (t idleReadTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	conns := &requestConns{}
	traced := req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: conns.gotConn}))
	resp, err := t.rt.RoundTrip(traced)
	if err != nil {
		conns.releaseAll()
		return nil, err
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, conns: conns}
	return resp, nil
}

// releasingBody releases the connections of its request when closed.
type releasingBody struct {
	io.ReadCloser
	conns *requestConns
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.conns.releaseAll()
	return err
}

// replyWait is the longest a replyConn holds back a write error.
const replyWait = 250 * time.Millisecond

// replyConn is a connection of net/http's transport that holds back a write
// failing with a reset or a broken pipe until a read on it fails too, or it
// is closed, or replyWait passes. An upstream that answers before it has
// read the whole request body (a 401 or 413 to a large upload) and closes
// resets the connection under the rest of the body, but its answer came
// first: net/http's read loop reads it, yet its round trip returns
// whichever of the write error and the response reaches it first
// (golang/go#11745). Held back, the write error comes second. With no
// answer, the read loop's pending read fails at once on the reset
// connection and releases the write error.
type replyConn struct {
	net.Conn
	once sync.Once
	dead chan struct{} // closed when a read failed or Close was called
}

func newReplyConn(c net.Conn) *replyConn {
	return &replyConn{Conn: c, dead: make(chan struct{})}
}

func (c *replyConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.once.Do(func() { close(c.dead) })
	}
	return n, err
}

func (c *replyConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil && h1.IsReset(err) {
		t := time.NewTimer(replyWait)
		select {
		case <-c.dead:
		case <-t.C:
		}
		t.Stop()
	}
	return n, err
}

func (c *replyConn) Close() error {
	c.once.Do(func() { close(c.dead) })
	return c.Conn.Close()
}
