package h1

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// An upload is a request body too large for one write with its head. It
// is written on a goroutine of its own, which the round trip starts and
// always waits for before it returns, while the caller's goroutine reads
// the response head: an upstream that answers before it has read the body
// (a 401 or 413 to a large upload) and then neither reads on nor closes
// would otherwise leave the write blocked by flow control until the
// request's context ends, where net/http, whose read loop runs beside its
// write loop, returns the answer at once.
//
// While the upload runs, reads of the connection have no deadline: the
// upload's time counts neither against ResponseHeaderTimeout nor against
// IdleReadTimeout, which start when it ends, as when the write comes
// first. The upload's goroutine wakes the read when it ends by setting a
// past read deadline, then hands its result over wdone; the reader clears
// the deadline once it has the result, so that the two never set read
// deadlines at the same time (an abort only ever sets a past one).

// exchangeUploading writes the body of req, whose head is in c.bw, on an
// upload goroutine, and reads the final response head meanwhile. A
// response that comes before the body is all written ends the upload: the
// response is returned, its body readable as usual, and the connection is
// not reused, the request on it cut short. So is a response that comes
// after the upload failed because the upstream closed or reset the
// connection (see [conn.exchange]); any other failure of the upload fails
// the request with its error.
func (c *conn) exchangeUploading(req *http.Request) (*http.Response, error) {
	done := make(chan error, 1)
	c.r.wdone = done
	go func() {
		err := writeBody(c.bw, req)
		c.nc.SetReadDeadline(time.Unix(1, 0)) // wakes the read: see connReader.readUploading
		done <- err
	}()
	resp, err := c.readHead(req)
	cut := c.r.joinUpload()
	werr := c.r.werr
	switch {
	case err == nil:
		if werr != nil {
			resp.Close = true // the request was cut short: the connection carries no other
		}
		return resp, nil
	case werr != nil && !cut:
		return nil, fmt.Errorf("write request: %w", werr)
	}
	return nil, err
}

// readUploading reads while the upload runs, with no deadline: an abort or
// the upload's end wakes it. ended reports that the upload ended instead
// of the read; err is then what the read should fail with, nil if it
// should go on as after a write: the upload succeeded, or the upstream
// closed or reset the connection, which may hold its answer.
func (r *connReader) readUploading(p []byte) (n int, ended bool, err error) {
	select {
	case werr := <-r.wdone:
		return 0, true, r.uploaded(werr)
	default:
	}
	n, err = r.nc.Read(p)
	// The abort sets aborted before its deadline: a deadline without it
	// is the upload's, whose result is on its way.
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && !r.aborted.Load() {
		return 0, true, r.uploaded(<-r.wdone)
	}
	return n, false, err
}

// uploaded takes the upload's result, werr: it clears the upload's read
// deadline, starts the response head timeout, and returns the error the
// read should fail with, nil if it can go on.
func (r *connReader) uploaded(werr error) error {
	r.wdone, r.werr = nil, werr
	r.clearDeadline()
	if r.headAfter > 0 {
		r.head, r.headAfter = time.Now().Add(r.headAfter), 0
	}
	if werr == nil || r.aborted.Load() || IsReset(werr) {
		return nil // an abort is the read's own error
	}
	return werr
}

// joinUpload waits for the upload, if it still runs, after ending it with
// a past write deadline; cut reports that this cut the body short. The
// upload may have written the last byte meanwhile, and not yet said so:
// its result is then nil, and the deadline is cleared for the next
// request.
func (r *connReader) joinUpload() (cut bool) {
	if r.wdone == nil {
		return false
	}
	select {
	case r.werr = <-r.wdone:
	default:
		r.nc.SetWriteDeadline(time.Unix(1, 0))
		if r.werr = <-r.wdone; r.werr != nil {
			cut = true
			break
		}
		r.nc.SetWriteDeadline(time.Time{})
		if r.aborted.Load() { // as in clearDeadline
			r.nc.SetWriteDeadline(time.Unix(1, 0))
		}
	}
	r.wdone = nil
	r.clearDeadline()
	return cut
}

// clearDeadline clears the connection's read deadline (the head's, or the
// past one with which an upload woke the read), keeping an abort's.
func (r *connReader) clearDeadline() {
	r.armed = false
	r.nc.SetReadDeadline(time.Time{})
	// An abort that ran since set a past deadline, which the line above
	// just cleared: set it again.
	if r.aborted.Load() {
		r.nc.SetReadDeadline(time.Unix(1, 0))
	}
}
