package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/retry"
)

// serveBackend keeps a stream open to b while the call has jobs for it
// (m, in the router), reopening it with backoff when it breaks, until the
// retry budget is spent. A backend whose first stream of the call does not
// open is given up at once. While its stream is broken its hosts go to the
// other backends.
func (cl *call) serveBackend(ctx context.Context, b backend, m *member) {
	failures := 0
	reached := false
	idle := false // the last stream ended with every job answered
	// A connection failing since an earlier call would fail a stream at
	// once with that call's error: make gRPC try again now, and give it
	// the connect timeout to succeed.
	waitReady := b.cc != nil && b.cc.GetState() == connectivity.TransientFailure // nil: embedded
	if waitReady {
		b.cc.ResetConnectBackoff()
	}
	backoff := retry.Policy{Base: cl.opts.backoffBase, Max: cl.opts.backoffMax}
	start := time.Now()
	for ctx.Err() == nil {
		if idle && !cl.waitWork(ctx, m) {
			return
		}
		if cl.router.isRemoved(m) {
			return
		}
		opened, progress, err := cl.stream(ctx, b, m, waitReady && !reached)
		reached = reached || opened
		idle = err == nil
		if err == nil {
			failures = 0
			continue
		}
		if errors.Is(err, ErrBodyWriter) {
			return // the call fails
		}
		if !reached {
			err = connectError{err}
			if d := cl.opts.connectTimeout; time.Since(start) >= d {
				err = fmt.Errorf("no answer within the %v connect timeout: %w", d, err)
			}
			cl.drop(m, giveUp{addr: b.addr, err: err})
			return
		}
		if cl.router.isRemoved(m) {
			return // its jobs went to the others
		}
		cl.resolveNow()
		if progress {
			failures = 0
		}
		failures++
		if failures >= cl.opts.retryBudget || permanent(err) {
			cl.drop(m, giveUp{addr: b.addr, reached: true,
				err: fmt.Errorf("%w: %s: %d attempts failed, last: %w", ErrUnavailable, b.addr, failures, err)})
			return
		}
		if !retry.Sleep(ctx, backoff.Backoff(failures)) {
			return
		}
	}
}

// waitWork waits until the router has jobs for m or removed it; false
// means ctx ended.
func (cl *call) waitWork(ctx context.Context, m *member) bool {
	for !cl.router.hasWork(m) {
		select {
		case <-m.wake:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// stream runs one stream to b: a sender goroutine sends m's jobs as the
// router hands them out; this goroutine receives. It reports whether the
// stream opened, whether any result arrived, and why the stream ended (nil
// when it ended OK after every job was answered). With waitReady it waits
// up to the connect timeout for the connection to be ready, instead of
// failing while it is not.
func (cl *call) stream(ctx context.Context, b backend, m *member, waitReady bool) (opened, progress bool, err error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var st fetchv1.FetchService_FetchClient
	if waitReady {
		t := time.AfterFunc(cl.opts.connectTimeout, func() {
			cancel(fmt.Errorf("%w: not ready after %v", errConnectTimeout, cl.opts.connectTimeout))
		})
		st, err = b.svc.Fetch(sctx, grpc.WaitForReady(true))
		if !t.Stop() && err == nil {
			err = context.Cause(sctx) // the timer fired as the stream opened
		}
	} else {
		st, err = b.svc.Fetch(sctx)
	}
	if err != nil {
		return false, false, err
	}
	opened = true
	cl.opened()
	cl.router.setRoutable(m, true)
	sent := &sentJobs{local: make(map[uint64]uint64)}
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		cl.send(sctx, st, sent, m)
	}()

	bs := newBodies(cl.opts)
	for {
		r, rerr := st.Recv()
		if rerr != nil {
			err = rerr
			break
		}
		if err = cl.receive(sent, bs, r); err != nil {
			if errors.Is(err, ErrBodyWriter) {
				cl.fail(err)
			}
			err = fmt.Errorf("%s: %w", b.addr, err)
			break
		}
		progress = true
	}
	cancel(nil)
	<-sendDone
	bs.abortAll() // before the jobs can be resubmitted, to new writers
	if errors.Is(err, ErrBodyWriter) {
		return opened, progress, err
	}
	if errors.Is(err, io.EOF) && sent.empty() {
		return opened, progress, nil
	}
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%s ended the stream with %d jobs unanswered", b.addr, len(sent.local))
	}
	// Its hosts move to the other backends while it is down.
	cl.router.setRoutable(m, false)
	unstarted := slices.Contains(st.Trailer().Get(retry.TrailerUnstarted), "true")
	cl.requeue(sent.unanswered(), unstarted)
	return opened, progress, err
}

// receive takes one message of a stream: a chunk of a job's body, or a
// job's result, which it delivers. It returns an error wrapping
// errProtocol when the backend broke the protocol (the stream is then
// dropped and its jobs resubmitted), or ErrBodyWriter when a body writer
// failed (the call fails).
func (cl *call) receive(sent *sentJobs, bs *bodies, r *Result) error {
	if c := r.GetChunk(); c != nil {
		global, err := sent.lookup(r.GetIndex())
		if err != nil {
			return err
		}
		return bs.chunk(global, c)
	}
	local := r.GetIndex()
	global, err := sent.lookup(local)
	if err != nil {
		return fmt.Errorf("sent a result for unknown index %d", local)
	}
	r.Index = global
	if err := bs.result(global, r); err != nil {
		return err
	}
	sent.answer(local)
	cl.deliver(global, r)
	return nil
}

// permanent reports whether a stream error will not go away by retrying.
func permanent(err error) bool {
	if errors.Is(err, ErrClosed) {
		return true // an embedded engine stopped
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented, codes.InvalidArgument:
		return true
	}
	return false
}

// resolveNow asks the target's resolver, if any, to look the backends up
// again: one of them failed.
func (cl *call) resolveNow() {
	if cl.members != nil {
		cl.members.resolveNow()
	}
}
