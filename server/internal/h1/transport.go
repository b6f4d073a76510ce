package h1

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of a [Transport] field left zero.
const (
	DefaultMaxIdleConns           = 100
	DefaultMaxIdleConnsPerHost    = 2
	DefaultIdleConnTimeout        = 90 * time.Second
	DefaultMaxResponseHeaderBytes = 64 << 10
	DefaultDialTimeout            = 30 * time.Second
)

const (
	// freshFor is how long a pooled connection counts as alive for a
	// request that may not be sent twice: older ones are left for
	// replayable requests, which can be retried if the upstream closed it.
	freshFor = time.Second
	// peekAfter is how long a connection must have idled in the pool
	// before a replayable request checks it for an upstream that closed it
	// or sent bytes unasked. The check costs a system call (BenchmarkPeek:
	// about 1.6 µs on a small VM); a connection reused within a
	// millisecond, as under load, is spared it: a replayable request that
	// meets a closed one is retried anyway. Other requests always check.
	peekAfter = time.Millisecond
	// maxInformational is the most 1xx responses skipped before the final
	// one, as net/http allows.
	maxInformational = 5
)

// ErrUnsupported is returned, wrapped, for a request [Transport] does not
// carry; see [Supports].
var ErrUnsupported = errors.New("h1: request not supported")

// Transport is a lean HTTP/1.1 [http.RoundTripper] for http URLs. The zero
// value works: it dials with a [net.Dialer] and uses the defaults above. It
// is safe for concurrent use; its fields must not change once it is used.
type Transport struct {
	// DialContext dials new connections. Default: a [net.Dialer] with
	// DefaultDialTimeout.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdleConns caps idle connections across all hosts. Default
	// DefaultMaxIdleConns.
	MaxIdleConns int
	// MaxIdleConnsPerHost caps idle connections per host and port.
	// Default DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes a connection idle in the pool for this long.
	// Default DefaultIdleConnTimeout.
	IdleConnTimeout time.Duration
	// IdleReadTimeout fails a request whose upstream sends no byte for this
	// long while the request waits for the response head or reads the
	// body, with an error whose Timeout method reports true. Default 0:
	// only the request's context bounds it.
	IdleReadTimeout time.Duration
	// ResponseHeaderTimeout, when positive, bounds the wait for the
	// response head once the request is written. Default 0: none.
	ResponseHeaderTimeout time.Duration
	// MaxResponseHeaderBytes caps the response head. Default
	// DefaultMaxResponseHeaderBytes.
	MaxResponseHeaderBytes int64
	// DisableCompression stops the transport asking for gzip. Default
	// false: as net/http, it asks for gzip and decodes it.
	DisableCompression bool

	mu    sync.Mutex         // guards idle and nidle
	idle  map[string][]*conn // per host and port, least recently used first
	nidle int                // connections in idle
}

// Supports reports, with an error wrapping [ErrUnsupported], why t cannot
// carry req; nil if it can.
func Supports(req *http.Request) error {
	why := ""
	switch {
	case req.URL == nil || req.URL.Scheme != "http":
		why = "scheme is not http"
	case !isASCII(req.URL.Host) || !isASCII(req.Host):
		why = "host name is not ASCII"
	case req.Body != nil && req.Body != http.NoBody && req.ContentLength <= 0:
		why = "body of unknown length"
	case len(req.TransferEncoding) > 0 || len(req.Trailer) > 0:
		why = "transfer encoding or trailers"
	case req.Header.Get("Expect") != "" || req.Header.Get("Upgrade") != "":
		why = "Expect or Upgrade"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s", ErrUnsupported, why)
}

// RoundTrip implements [http.RoundTripper]. It returns once the response
// head is read; the connection stays the caller's until the body is read
// to its end, and then goes back to the pool, or is closed.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := Supports(req); err != nil {
		closeBody(req)
		return nil, err
	}
	if err := validateRequest(req); err != nil {
		closeBody(req)
		return nil, fmt.Errorf("write request: %w", err)
	}
	ctx := req.Context()
	key := hostPort(req)
	replayable := isReplayable(req)
	send := req
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			closeBody(req)
			return nil, err
		}
		maxIdle := t.idleConnTimeout()
		if !replayable {
			maxIdle = freshFor
		}
		var c *conn
		if attempt == 0 { // a retry goes on a new connection
			c = t.getLive(key, maxIdle, replayable)
		}
		reused := c != nil
		if c == nil {
			var err error
			if c, err = t.dial(ctx, key); err != nil {
				closeBody(req)
				return nil, err
			}
		}
		resp, err := c.roundTrip(ctx, send)
		if err == nil {
			resp.Request = req
			return resp, nil
		}
		// A pooled connection the upstream had closed fails before any
		// byte of response: a replayable request is sent again, once.
		if reused && replayable && attempt == 0 && c.r.n == 0 && ctx.Err() == nil && !IsTimeout(err) {
			if again, ok := rewind(req); ok {
				send = again
				continue
			}
		}
		closeBody(send)
		return nil, err
	}
}

// CloseIdleConnections closes the connections idle in the pool. Those in
// use are not affected.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.nidle = nil, 0
	t.mu.Unlock()
	for _, cs := range idle {
		for _, c := range cs {
			c.timer.Stop()
			c.nc.Close()
		}
	}
}

func (t *Transport) dial(ctx context.Context, key string) (*conn, error) {
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: DefaultDialTimeout}).DialContext
	}
	nc, err := dial(ctx, "tcp", key)
	if err != nil {
		return nil, err
	}
	return newConn(t, key, nc), nil
}

// getLive takes a pooled connection that looks fit for a request: one the
// upstream has neither closed nor sent anything on, checked unless the
// request is replayable and the connection idled for less than peekAfter.
// Those that fail the check are closed.
func (t *Transport) getLive(key string, maxIdle time.Duration, replayable bool) *conn {
	for {
		c := t.getIdle(key, maxIdle)
		if c == nil || (replayable && time.Since(c.idleSince) < peekAfter) || c.pk.idle() {
			return c
		}
		c.nc.Close()
	}
}

// getIdle takes the most recently used connection to key from the pool,
// if it has been idle for less than maxIdle; nil if there is none.
func (t *Transport) getIdle(key string, maxIdle time.Duration) *conn {
	t.mu.Lock()
	cs := t.idle[key]
	if len(cs) == 0 || time.Since(cs[len(cs)-1].idleSince) >= maxIdle {
		t.mu.Unlock()
		return nil
	}
	c := cs[len(cs)-1]
	cs[len(cs)-1] = nil
	if cs = cs[:len(cs)-1]; len(cs) == 0 {
		delete(t.idle, key)
	} else {
		t.idle[key] = cs
	}
	t.nidle--
	t.mu.Unlock()
	// Taking c out of the pool under the lock is what counts: an expiry
	// that fires now finds it gone and leaves it alone.
	c.timer.Stop()
	return c
}

// put returns c to the pool, or closes it if the pool is full.
func (t *Transport) put(c *conn) {
	timeout := t.idleConnTimeout()
	t.mu.Lock()
	cs := t.idle[c.key]
	if len(cs) >= t.maxIdleConnsPerHost() || t.nidle >= t.maxIdleConns() {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	if t.idle == nil {
		t.idle = make(map[string][]*conn)
	}
	c.idleSince = time.Now()
	t.idle[c.key] = append(cs, c)
	t.nidle++
	if c.timer == nil {
		c.timer = time.AfterFunc(timeout, func() { t.expire(c) })
	} else {
		c.timer.Reset(timeout)
	}
	t.mu.Unlock()
}

// expire closes c if it is still in the pool and has been idle for
// IdleConnTimeout: a timer that fires late, after c was taken and put back,
// finds it fresh and leaves it.
func (t *Transport) expire(c *conn) {
	t.mu.Lock()
	cs := t.idle[c.key]
	i := -1
	for j, x := range cs {
		if x == c {
			i = j
			break
		}
	}
	if i < 0 || time.Since(c.idleSince) < t.idleConnTimeout() {
		t.mu.Unlock()
		return
	}
	if cs = append(cs[:i], cs[i+1:]...); len(cs) == 0 {
		delete(t.idle, c.key)
	} else {
		cs[len(cs):cap(cs)][0] = nil
		t.idle[c.key] = cs
	}
	t.nidle--
	t.mu.Unlock()
	c.nc.Close()
}

func (t *Transport) idleConnTimeout() time.Duration {
	if t.IdleConnTimeout > 0 {
		return t.IdleConnTimeout
	}
	return DefaultIdleConnTimeout
}

func (t *Transport) maxIdleConns() int {
	if t.MaxIdleConns > 0 {
		return t.MaxIdleConns
	}
	return DefaultMaxIdleConns
}

func (t *Transport) maxIdleConnsPerHost() int {
	if t.MaxIdleConnsPerHost > 0 {
		return t.MaxIdleConnsPerHost
	}
	return DefaultMaxIdleConnsPerHost
}

func (t *Transport) maxResponseHeaderBytes() int64 {
	if t.MaxResponseHeaderBytes > 0 {
		return t.MaxResponseHeaderBytes
	}
	return DefaultMaxResponseHeaderBytes
}

// hostPort is the address req is sent to: its URL's host, with port 80 if
// it names none.
func hostPort(req *http.Request) string {
	host, port := req.URL.Hostname(), req.URL.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(host, port)
}

// isReplayable reports whether req may be sent twice, by net/http's rule.
func isReplayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, ok := req.Header["Idempotency-Key"]
	if !ok {
		_, ok = req.Header["X-Idempotency-Key"]
	}
	return ok
}

// rewind returns req ready to be sent again, with a fresh body if it has
// one; false if it cannot be sent again.
func rewind(req *http.Request) (*http.Request, bool) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	b, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	again := *req
	again.Body = b
	return &again, true
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
