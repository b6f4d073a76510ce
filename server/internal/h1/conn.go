package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// conn is one upstream connection. It is used by one request at a time,
// from RoundTrip until its response body is read or closed, and by nobody
// while it is idle in the pool.
type conn struct {
	t   *Transport
	key string // host:port, its pool
	nc  net.Conn
	r   connReader
	br  *bufio.Reader // over r
	bw  *bufio.Writer // over nc
	pk  *peeker       // nil if the connection offers no raw access

	// Set by the pool, under Transport.mu.
	idleSince time.Time
	timer     *time.Timer // closes the connection when idle too long
}

func newConn(t *Transport, key string, nc net.Conn) *conn {
	c := &conn{t: t, key: key, nc: nc, pk: newPeeker(nc)}
	c.r.nc = nc
	c.r.limit = -1
	c.br = bufio.NewReaderSize(&c.r, 4<<10)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	return c
}

// connReader sits between a connection and its bufio.Reader: it moves the
// idle-read deadline, caps the response head and counts what the current
// request read.
type connReader struct {
	nc        net.Conn
	idle      time.Duration // idle-read timeout to rearm before each read; 0 none
	head      time.Time     // when the wait for the response head times out; zero none
	armed     bool          // a read deadline is set and must be cleared before pooling
	limit     int64         // bytes the response head may still use; negative: no cap
	n         int64         // bytes read for the current request
	err       error         // the last error of a read on nc for the current request
	aborted   atomic.Bool   // the request's context ended; set by its AfterFunc
	exceeded  bool          // the head cap was met
	capOfHead int64         // the cap, for the error

	// While the request body is written beside the read (upload.go):
	wdone     <-chan error  // the upload's result, until received; nil when none runs
	werr      error         // the upload's result, once received
	headAfter time.Duration // ResponseHeaderTimeout, to start when the upload ends
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.limit >= 0 {
		if r.limit == 0 {
			r.exceeded = true
			return 0, errHeaderTooLarge(r.capOfHead)
		}
		if int64(len(p)) > r.limit {
			p = p[:r.limit]
		}
	}
	if r.wdone != nil {
		n, ended, err := r.readUploading(p)
		if !ended {
			return r.count(n, err)
		}
		if err != nil {
			r.err = err
			return 0, err
		}
	}
	if r.idle > 0 || !r.head.IsZero() {
		var d time.Time
		if r.idle > 0 {
			d = time.Now().Add(r.idle)
		}
		if !r.head.IsZero() && (d.IsZero() || r.head.Before(d)) {
			d = r.head
		}
		r.armed = true
		r.nc.SetReadDeadline(d)
		// The abort sets a past deadline after it sets aborted: either it
		// sees this deadline and overrides it, or this sees aborted.
		if r.aborted.Load() {
			return 0, errAborted
		}
	}
	return r.count(r.nc.Read(p))
}

// count accounts for a read of n bytes on the connection, and tells its
// deadline errors apart.
func (r *connReader) count(n int, err error) (int, error) {
	if err != nil {
		r.err = err
	}
	r.n += int64(n)
	if r.limit >= 0 {
		r.limit -= int64(n)
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		switch {
		case r.aborted.Load():
			err = errAborted
		case !r.head.IsZero() && !time.Now().Before(r.head):
			err = errHeadTimeout
		case r.idle > 0:
			err = &IdleReadError{Idle: r.idle, Err: err}
		}
	}
	return n, err
}

// roundTrip writes req and reads the response head. On error the
// connection is closed; on success the response body owns it.
func (c *conn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	c.r.n, c.r.err, c.r.werr = 0, nil, nil
	c.r.aborted.Store(false)
	c.r.idle = 0
	if d := c.t.IdleReadTimeout; d > 0 {
		// A deadline sooner than the idle-read timeout makes the
		// idle-read check moot: the context's own end comes first.
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > d {
			c.r.idle = d
		}
	}
	stop := context.AfterFunc(ctx, c.abort)
	compress := c.asksGzip(req)
	resp, err := c.exchange(req, compress)
	if err != nil {
		stop()
		c.nc.Close()
		return nil, c.wrapErr(ctx, err)
	}
	b := &body{c: c, req: req, stop: stop, raw: resp.Body, reusable: !resp.Close && !req.Close &&
		!httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close")}
	if compress && Gzipped(resp) {
		b.gzip = true
		MarkDecoded(resp)
	}
	resp.Body = b
	return resp, nil
}

// abort ends the current request at once: every pending or later read or
// write fails.
func (c *conn) abort() {
	c.r.aborted.Store(true)
	c.nc.SetDeadline(time.Unix(1, 0))
}

// wrapErr reports the context's error for a request it aborted, and says
// which stage failed otherwise.
func (c *conn) wrapErr(ctx context.Context, err error) error {
	if errors.Is(err, errAborted) || c.r.aborted.Load() {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
	}
	return err
}

// exchange writes req and reads the final response head, skipping 1xx. A
// request that fits in the write buffer goes out in one write before the
// read; a larger one is written by [conn.exchangeUploading] beside it.
//
// An upstream may answer before it has read the whole request body (a 401
// or 413 to a large upload) and close the connection: the rest of the body
// then meets a reset or a broken pipe. The answer came first and is in the
// socket's receive buffer, so after such a write error exchange reads it,
// as net/http does, whose read loop runs beside the write. The connection
// is dead: reading from it cannot block. If no answer is there, the write
// error is returned.
func (c *conn) exchange(req *http.Request, compress bool) (*http.Response, error) {
	writeHead(c.bw, req, compress)
	if hasBody(req) && req.ContentLength > int64(c.bw.Available()) {
		return c.exchangeUploading(req)
	}
	if err := writeBody(c.bw, req); err != nil {
		werr := fmt.Errorf("write request: %w", err)
		if c.r.aborted.Load() || !IsReset(err) {
			return nil, werr
		}
		resp, rerr := c.readHead(req)
		if rerr != nil {
			return nil, werr
		}
		resp.Close = true // the request was cut short: the connection carries no other
		return resp, nil
	}
	return c.readHead(req)
}

// readHead reads the final response head to req, skipping 1xx.
func (c *conn) readHead(req *http.Request) (*http.Response, error) {
	max := c.t.maxResponseHeaderBytes()
	c.r.capOfHead = max
	if d := c.t.ResponseHeaderTimeout; d > 0 {
		if c.r.wdone != nil {
			c.r.headAfter = d // from the upload's end: see connReader.uploaded
		} else {
			c.r.head = time.Now().Add(d)
		}
	}
	defer func() {
		c.r.limit = -1
		c.r.headAfter = 0
		if !c.r.head.IsZero() {
			c.r.head = time.Time{}
			if c.r.idle == 0 {
				c.r.clearDeadline()
			}
		}
	}()
	for i := 0; ; i++ {
		c.r.limit, c.r.exceeded = max, false
		resp, err := http.ReadResponse(c.br, req)
		switch {
		case err == nil:
		case c.r.exceeded:
			return nil, errHeaderTooLarge(max)
		case c.r.err == nil:
			// The connection read fine: the head does not parse.
			return nil, badResponse(err)
		default:
			return nil, err // unwrapped: net/http's callers ask it whether it is a timeout
		}
		switch code := resp.StatusCode; {
		case code == http.StatusSwitchingProtocols:
			// Supports refuses Upgrade: this 101 answers no request.
			return nil, fmt.Errorf("%w: unsolicited %s", ErrBadResponse, resp.Status)
		case code >= 100 && code < 200:
			if i >= maxInformational {
				return nil, fmt.Errorf("%w: too many 1xx informational responses", ErrBadResponse)
			}
			continue
		}
		return resp, nil
	}
}

// asksGzip reports whether the transport adds Accept-Encoding: gzip to
// req, by net/http's rule.
func (c *conn) asksGzip(req *http.Request) bool {
	return !c.t.DisableCompression && AsksGzip(req)
}

// Gzipped reports whether resp, to a request that asked for gzip, is gzip
// to decode: it has a body and exactly one Content-Encoding field, whose
// value is "gzip" in any case. Any other encoding, "gzip, gzip" or two
// fields included, is left as received, headers and all.
func Gzipped(resp *http.Response) bool {
	if resp.Body == http.NoBody {
		return false
	}
	ce := resp.Header["Content-Encoding"]
	return len(ce) == 1 && asciiEqualFold(ce[0], "gzip")
}

// release ends the request on c: back to the pool if the response was read
// to its end and the connection can carry another, else closed.
func (c *conn) release(reusable bool) {
	if reusable && c.br.Buffered() == 0 {
		if c.r.armed {
			c.r.armed = false
			if c.nc.SetReadDeadline(time.Time{}) != nil {
				c.nc.Close()
				return
			}
		}
		c.t.put(c)
		return
	}
	c.nc.Close()
}
