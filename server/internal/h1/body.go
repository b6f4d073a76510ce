package h1

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// body is a response body: it hands the connection back when read to its
// end, and closes it when closed early. Close may run while a Read is in
// flight, as net/http allows: it then closes the connection under the Read.
type body struct {
	c        *conn
	req      *http.Request
	stop     func() bool // stops the context's AfterFunc
	raw      io.ReadCloser
	gzip     bool
	zr       *GzipReader // used only by the goroutine in Read, or by finish
	rawErr   error       // the error, other than io.EOF, of a read of raw; same
	reusable bool

	mu      sync.Mutex // guards the fields below
	reading bool       // a Read is in flight
	closed  bool       // Close was called: no Read starts
	killed  bool       // Close closed the connection under a Read in flight
	done    bool       // the request is over and its connection released
	err     error      // what reads return once done
}

var errClosedBody = errors.New("h1: read on closed response body")

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.done || b.closed {
		err := b.err
		b.mu.Unlock()
		if err == nil || b.closed {
			err = errClosedBody
		}
		return 0, err
	}
	b.reading = true
	b.mu.Unlock()
	n, err := b.read(p)
	b.mu.Lock()
	b.reading = false
	killed := b.killed
	b.mu.Unlock()
	if killed {
		b.finish(false, errClosedBody)
		return n, errClosedBody
	}
	return n, err
}

func (b *body) read(p []byte) (int, error) {
	var (
		n   int
		err error
	)
	if b.gzip {
		if b.zr == nil {
			if b.zr, err = NewGzipReader(rawReader{b}); err != nil {
				if err != io.EOF && b.rawErr == nil {
					err = fmt.Errorf("%w: gzip body: %w", ErrBadResponse, err)
				}
				b.finish(false, err)
				return 0, b.err
			}
		}
		n, err = b.zr.Read(p)
		if err != nil && err != io.EOF && b.rawErr == nil {
			// The body's framing is intact: the gzip in it is broken, or
			// ends early.
			err = fmt.Errorf("%w: gzip body: %w", ErrBadResponse, err)
		}
	} else {
		n, err = b.readRaw(p)
	}
	switch {
	case err == io.EOF:
		b.finish(true, io.EOF)
	case err != nil:
		b.finish(false, err)
		err = b.err
	}
	return n, err
}

// readRaw reads the body's bytes as framed, before any decoding. A framing
// error met while the connection read fine (a chunk size that does not
// parse) is an [ErrBadResponse].
func (b *body) readRaw(p []byte) (int, error) {
	n, err := b.raw.Read(p)
	if err != nil && err != io.EOF {
		if b.c.r.err == nil && !b.c.r.aborted.Load() {
			err = badResponse(err)
		}
		b.rawErr = err
	}
	return n, err
}

// rawReader reads a gzipped body's bytes for the decoder.
type rawReader struct{ b *body }

func (r rawReader) Read(p []byte) (int, error) { return r.b.readRaw(p) }

// Close closes the connection unless the body was read to its end (or has
// none, as the response to a HEAD).
func (b *body) Close() error {
	b.mu.Lock()
	if b.done || b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	if b.reading {
		// The Read in flight fails now and finishes the request.
		b.killed = true
		b.mu.Unlock()
		b.c.nc.Close()
		return nil
	}
	b.mu.Unlock()
	if b.raw == http.NoBody {
		b.finish(true, io.EOF)
	} else {
		b.finish(false, errClosedBody)
	}
	return nil
}

// finish ends the request once: err is what later reads return, ok says
// whether the connection may carry another request.
func (b *body) finish(ok bool, err error) {
	if !errors.Is(err, io.EOF) {
		err = b.c.wrapErr(b.req.Context(), err)
	}
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return
	}
	b.done, b.err = true, err
	ok = ok && !b.killed
	b.mu.Unlock()
	if b.zr != nil {
		b.zr.Release()
		b.zr = nil
	}
	// stop is false when the abort already ran or runs: the connection
	// has a past deadline and cannot be reused.
	stopped := b.stop()
	b.c.release(ok && b.reusable && stopped)
}
