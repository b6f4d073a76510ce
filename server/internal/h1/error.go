package h1

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// ErrBadResponse is wrapped by the errors of a response that breaks HTTP or
// its encoding, as opposed to a connection that failed: a head that does
// not parse or is over [Transport.MaxResponseHeaderBytes], too many 1xx
// responses, an unsolicited 101 (the transport never asks for an upgrade),
// body framing that does not parse, a gzip body that does not decode (or
// ends before the gzip stream does, although its framing is complete).
var ErrBadResponse = errors.New("h1: bad response")

// badResponse wraps err, a parse error of the response, in ErrBadResponse.
func badResponse(err error) error { return fmt.Errorf("%w: %w", ErrBadResponse, err) }

// errHeaderTooLarge is the error of a response head over the cap.
type errHeaderTooLarge int64

func (e errHeaderTooLarge) Error() string {
	return fmt.Sprintf("h1: server response headers exceeded %d bytes; aborted", int64(e))
}

// Is makes a head over the cap an [ErrBadResponse].
func (e errHeaderTooLarge) Is(target error) bool { return target == ErrBadResponse }

// IdleReadError is the error of a read that met
// [Transport.IdleReadTimeout]. It is a [net.Error] whose Timeout method
// reports true.
type IdleReadError struct {
	Idle time.Duration // the idle-read timeout that expired
	Err  error         // the deadline error
}

func (e *IdleReadError) Error() string {
	return fmt.Sprintf("upstream sent nothing for %v: %v", e.Idle, e.Err)
}
func (e *IdleReadError) Unwrap() error   { return e.Err }
func (e *IdleReadError) Timeout() bool   { return true }
func (e *IdleReadError) Temporary() bool { return true }

// IsTimeout reports whether any error in err's tree says it is a timeout
// (a Timeout method that reports true): the upstream is slow, not gone. It
// walks the whole tree, as an outer wrapper such as *url.Error may answer
// false for a timeout it wraps in another wrapper; errors.As would stop at
// that first [net.Error].
func IsTimeout(err error) bool {
	for err != nil {
		if t, ok := err.(interface{ Timeout() bool }); ok && t.Timeout() {
			return true
		}
		switch x := err.(type) {
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				if IsTimeout(e) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// errAborted is returned by reads and writes after the request's context
// ended; the caller reports the context's error instead.
var errAborted = errors.New("h1: request aborted")

// errHeadTimeout is the error of a response head that took longer than
// [Transport.ResponseHeaderTimeout].
var errHeadTimeout error = &timeoutError{"h1: timeout awaiting response headers"}

// timeoutError is a [net.Error] whose Timeout method reports true.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

// IsReset reports whether err is the peer closing or resetting the
// connection under a write (EPIPE, ECONNRESET): the upstream may have
// answered before it stopped reading.
func IsReset(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}
