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

// serveBackend keeps a stream open to b while the call has work, reopening
// it with backoff when it breaks, until the retry budget is spent. A
// backend whose first stream of the call does not open is given up at once.
func (cl *call) serveBackend(ctx context.Context, b backend) {
	failures := 0
	var first []uint64
	inputOpen := true
	reached := false
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
		if !inputOpen && len(first) == 0 {
			// The input is exhausted: only resubmitted jobs are left.
			select {
			case idx := <-cl.retry:
				first = append(first, idx)
			case <-ctx.Done():
				return
			}
		}
		opened, progress, closed, err := cl.stream(ctx, b, first, waitReady && !reached)
		first = nil
		reached = reached || opened
		if closed {
			inputOpen = false
		}
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
			cl.giveUp(giveUp{addr: b.addr, err: err})
			return
		}
		if progress {
			failures = 0
		}
		failures++
		if failures >= cl.opts.retryBudget || permanent(err) {
			cl.giveUp(giveUp{addr: b.addr, reached: true,
				err: fmt.Errorf("%w: %s: %d attempts failed, last: %w", ErrUnavailable, b.addr, failures, err)})
			return
		}
		if !retry.Sleep(ctx, backoff.Backoff(failures)) {
			return
		}
	}
}

// stream runs one stream to b: a sender goroutine sends first, then
// resubmitted and new jobs; this goroutine receives. It reports whether the
// stream opened, whether any result arrived, whether the sender saw the end
// of the input, and why the stream ended (nil when it ended OK after every
// job was answered). With waitReady it waits up to the connect timeout for
// the connection to be ready, instead of failing while it is not.
func (cl *call) stream(ctx context.Context, b backend, first []uint64, waitReady bool) (opened, progress, inputClosed bool, err error) {
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
		for _, idx := range first {
			cl.retry <- idx // never sent; room for the whole window
		}
		return false, false, false, err
	}
	opened = true
	cl.opened()
	sent := &sentJobs{local: make(map[uint64]uint64)}
	sendDone := make(chan bool, 1)
	go func() { sendDone <- cl.send(sctx, st, sent, first) }()

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
	inputClosed = <-sendDone
	bs.abortAll() // before the jobs can be resubmitted, to new writers
	if errors.Is(err, ErrBodyWriter) {
		return opened, progress, inputClosed, err
	}
	if errors.Is(err, io.EOF) && sent.empty() {
		return opened, progress, inputClosed, nil
	}
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%s ended the stream with %d jobs unanswered", b.addr, len(sent.local))
	}
	unstarted := slices.Contains(st.Trailer().Get(retry.TrailerUnstarted), "true")
	cl.requeue(sent.unanswered(), unstarted)
	return opened, progress, inputClosed, err
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
