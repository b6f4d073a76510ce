package client

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/grpc/status"
)

// ErrUnreachable is the error a call ends with, wrapped, when it reached
// none of its backends: the first connection the call made to each failed
// (connection refused, no answer within [WithConnectTimeout], TLS handshake
// failed, ...). Such a call takes no job from its input and yields no
// result, only this error; it does not retry, as a typo in the target or a
// fetchd that is not running will not go away by waiting. A backend whose
// connection was already failing when the call started (after an earlier
// call) gets one [WithConnectTimeout] to come back. errors.Is(err,
// ErrUnavailable) holds for it too.
var ErrUnreachable error = unreachable{}

type unreachable struct{}

func (unreachable) Error() string        { return "client: cannot reach fetchd" }
func (unreachable) Is(target error) bool { return target == ErrUnavailable }

// connectError is why a connection failed, without the gRPC status prefix
// in its text.
type connectError struct{ err error }

func (e connectError) Error() string { return status.Convert(e.err).Message() }
func (e connectError) Unwrap() error { return e.err }

// errConnectTimeout ends a first stream that waited WithConnectTimeout for
// a failing connection to come back.
var errConnectTimeout = errors.New("connect timeout")

// giveUp is a backend the call gave up and why.
type giveUp struct {
	addr    string
	err     error
	reached bool // a stream to it opened during the call
}

// opened notes that a stream of the call opened, which lets the feeder
// start.
func (cl *call) opened() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if !cl.anyOpened {
		cl.anyOpened = true
		close(cl.reached)
	}
}

// giveUp drops a backend; when none is left the call fails: with
// ErrUnreachable when no stream of the call ever opened, else with
// ErrUnavailable.
func (cl *call) giveUp(g giveUp) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.giveUps = append(cl.giveUps, g)
	cl.live--
	if cl.live > 0 {
		return
	}
	errs := make([]error, 0, len(cl.giveUps))
	for _, g := range cl.giveUps {
		switch {
		case !cl.anyOpened:
			errs = append(errs, fmt.Errorf("%w at %s: %w", ErrUnreachable, g.addr, g.err))
		case !g.reached:
			errs = append(errs, fmt.Errorf("%w: %s: cannot connect: %w", ErrUnavailable, g.addr, g.err))
		default:
			errs = append(errs, g.err)
		}
	}
	// The backend given up last first: it is the one that held out.
	slices.Reverse(errs)
	cl.err = errors.Join(errs...)
	close(cl.failed)
}
