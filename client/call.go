package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/retry"
)

// ErrUnavailable is the error a call ends with when no backend could take
// its jobs within the retry budget.
var ErrUnavailable = errors.New("client: no fetchd backend available")

// Fetch sends jobs to fetchd and yields each result as soon as it arrives
// (completion order). Result.Index is the job's position in jobs. Jobs are
// taken from jobs lazily, as the window allows.
//
// Every job taken yields exactly one result; per-job failures are data
// (Result.Error), not errors. The iterator yields a non-nil error, once and
// last, only when the call cannot go on: ctx ended; no backend could be
// reached at all ([ErrUnreachable]: the call fails within the connect
// timeout, without taking a job or yielding a result); or the backends
// reached failed later and none came back within the retry budget
// ([ErrUnavailable]; the jobs then unanswered are first yielded as
// ERROR_CODE_UNAVAILABLE results). Stopping the iteration early cancels the
// jobs still in flight.
func (c *Client) Fetch(ctx context.Context, jobs iter.Seq[*Job]) iter.Seq2[*Result, error] {
	return func(yield func(*Result, error) bool) { c.run(ctx, jobs, false, yield) }
}

// FetchOrdered is [Client.Fetch] with results yielded in input order,
// through a reorder buffer bounded by the window ([WithWindow]): when the
// buffer is full because the head job is slow, no new job is sent until
// the head arrives.
func (c *Client) FetchOrdered(ctx context.Context, jobs iter.Seq[*Job]) iter.Seq2[*Result, error] {
	return func(yield func(*Result, error) bool) { c.run(ctx, jobs, true, yield) }
}

// Chan adapts a channel of jobs to the iterator [Client.Fetch] takes; the
// input ends when ch is closed.
func Chan(ch <-chan *Job) iter.Seq[*Job] {
	return func(yield func(*Job) bool) {
		for j := range ch {
			if !yield(j) {
				return
			}
		}
	}
}

// call is the state of one Fetch or FetchOrdered call.
type call struct {
	opts *options

	window    chan struct{} // a token per job taken from the input and not yet yielded
	fresh     chan uint64   // new jobs, from the feeder to the senders; closed at end of input
	retry     chan uint64   // jobs to resubmit; room for the whole window
	out       chan *Result  // results for the consumer; room for the whole window
	inputDone chan struct{} // closed when the input is exhausted
	failed    chan struct{} // closed when every backend is given up
	reached   chan struct{} // closed when the first stream opens, on any backend

	mu        sync.Mutex // guards the fields below
	pending   map[uint64]*pendingJob
	taken     uint64 // jobs taken from the input
	exhausted bool   // the input was read to its end
	live      int    // backends not given up
	anyOpened bool   // reached is closed
	giveUps   []giveUp
	err       error // why the call failed
}

type pendingJob struct {
	job      *Job
	attempts int // times sent
}

func (c *Client) run(ctx context.Context, jobs iter.Seq[*Job], ordered bool, yield func(*Result, error) bool) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	backends, err := c.backends(ctx)
	if err != nil {
		yield(nil, err)
		return
	}
	if len(backends) == 0 {
		yield(nil, fmt.Errorf("%w: the target names none", ErrUnavailable))
		return
	}
	w := c.opts.window
	cl := &call{
		opts:      &c.opts,
		window:    make(chan struct{}, w),
		fresh:     make(chan uint64),
		retry:     make(chan uint64, w),
		out:       make(chan *Result, w),
		inputDone: make(chan struct{}),
		failed:    make(chan struct{}),
		reached:   make(chan struct{}),
		pending:   make(map[uint64]*pendingJob, w),
		live:      len(backends),
	}
	wg.Go(func() { cl.feed(ctx, jobs) })
	for _, b := range backends {
		wg.Go(func() { cl.serveBackend(ctx, b) })
	}

	em := emitter{yield: yield, ordered: ordered, window: cl.window}
	if ordered {
		em.buf = make(map[uint64]*Result)
	}
	inputDone := cl.inputDone
	for {
		if inputDone == nil && em.yielded == cl.takenCount() {
			return // every job taken has been yielded
		}
		select {
		case r := <-cl.out:
			if !em.emit(r) {
				return
			}
		case <-inputDone:
			inputDone = nil
		case <-cl.failed:
			cancel()
			wg.Wait()
			for len(cl.out) > 0 {
				if !em.emit(<-cl.out) {
					return
				}
			}
			forced := cl.unavailable()
			for _, r := range forced {
				if !em.emit(r) {
					return
				}
			}
			if len(forced) == 0 && cl.answeredAll(em.yielded) {
				return // every job got its real result after all
			}
			yield(nil, cl.err)
			return
		case <-ctx.Done():
			yield(nil, ctx.Err())
			return
		}
	}
}

// emitter hands results to the caller, in completion or input order, and
// frees a window token per result yielded.
type emitter struct {
	yield   func(*Result, error) bool
	ordered bool
	window  chan struct{}
	buf     map[uint64]*Result // ordered: results waiting for an earlier index
	yielded uint64             // results yielded; ordered: the next index due
}

func (e *emitter) emit(r *Result) bool {
	if !e.ordered {
		e.yielded++
		<-e.window
		return e.yield(r, nil)
	}
	e.buf[r.GetIndex()] = r
	for {
		next, ok := e.buf[e.yielded]
		if !ok {
			return true
		}
		delete(e.buf, e.yielded)
		e.yielded++
		<-e.window
		if !e.yield(next, nil) {
			return false
		}
	}
}

// answeredAll reports whether the input was read to its end and all of it
// yielded.
func (cl *call) answeredAll(yielded uint64) bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.exhausted && yielded == cl.taken
}

func (cl *call) takenCount() uint64 {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.taken
}

// feed takes jobs from the input as window tokens allow: a token first,
// then the job, so that no job is taken that the call cannot answer. It
// takes none before a stream has opened: a call that reaches no backend
// takes no job.
func (cl *call) feed(ctx context.Context, jobs iter.Seq[*Job]) {
	defer close(cl.inputDone)
	defer close(cl.fresh)
	select {
	case <-cl.reached:
	case <-ctx.Done():
		return
	}
	next, stop := iter.Pull(jobs)
	defer stop()
	defer func() {
		cl.mu.Lock()
		cl.exhausted = ctx.Err() == nil
		cl.mu.Unlock()
	}()
	for {
		select {
		case cl.window <- struct{}{}:
		case <-ctx.Done():
			return
		}
		j, ok := next()
		if !ok {
			<-cl.window
			return
		}
		if j == nil {
			j = &Job{}
		}
		cl.mu.Lock()
		idx := cl.taken
		cl.taken++
		cl.pending[idx] = &pendingJob{job: j}
		cl.mu.Unlock()
		if msg := cl.unsendable(j); msg != "" {
			cl.deliver(idx, errorResult(idx, j, fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST, msg))
			continue
		}
		select {
		case cl.fresh <- idx:
		case <-ctx.Done():
			return
		}
	}
}

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
	waitReady := b.cc.GetState() == connectivity.TransientFailure
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
		if !sleep(ctx, backoff.Backoff(failures)) {
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

	for {
		r, rerr := st.Recv()
		if rerr != nil {
			err = rerr
			break
		}
		global, ok := sent.answer(r.GetIndex())
		if !ok {
			err = fmt.Errorf("%s sent a result for unknown index %d", b.addr, r.GetIndex())
			break
		}
		progress = true
		r.Index = global
		cl.deliver(global, r)
	}
	cancel(nil)
	inputClosed = <-sendDone
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

// send sends jobs on st until the input is exhausted (then it half-closes
// and reports true) or the stream fails.
func (cl *call) send(ctx context.Context, st fetchv1.FetchService_FetchClient, sent *sentJobs, first []uint64) bool {
	opts := cl.streamOptions()
	sendOne := func(idx uint64) bool {
		job, ok := cl.attempt(idx)
		if !ok {
			return true
		}
		if opts != nil {
			job = proto.CloneOf(job)
			job.StreamOptions = opts
			opts = nil
		}
		sent.add(idx)
		return st.Send(job) == nil
	}
	for _, idx := range first {
		if !sendOne(idx) {
			return false
		}
	}
	fresh := cl.fresh
	for {
		// Resubmitted jobs first: they are the oldest.
		select {
		case idx := <-cl.retry:
			if !sendOne(idx) {
				return false
			}
			continue
		default:
		}
		if fresh == nil {
			st.CloseSend()
			return true
		}
		select {
		case idx := <-cl.retry:
			if !sendOne(idx) {
				return false
			}
		case idx, ok := <-fresh:
			if !ok {
				fresh = nil
				continue
			}
			if !sendOne(idx) {
				return false
			}
		case <-ctx.Done():
			return false
		}
	}
}

// streamOptions returns the options for a stream's first message, or nil.
func (cl *call) streamOptions() *fetchv1.StreamOptions {
	o := cl.opts
	if o.concurrency == 0 && o.timeout == 0 && o.maxBodyBytes == 0 {
		return nil
	}
	so := &fetchv1.StreamOptions{Concurrency: o.concurrency, MaxBodyBytes: o.maxBodyBytes}
	if o.timeout > 0 {
		so.Timeout = durationpb.New(o.timeout)
	}
	return so
}

// attempt counts a send of job idx and returns it, or answers it with
// ERROR_CODE_UNAVAILABLE when it has been sent too often.
func (cl *call) attempt(idx uint64) (*Job, bool) {
	cl.mu.Lock()
	p := cl.pending[idx]
	if p == nil {
		cl.mu.Unlock()
		return nil, false
	}
	if p.attempts >= cl.opts.maxAttempts {
		cl.mu.Unlock()
		cl.deliver(idx, errorResult(idx, p.job, fetchv1.ErrorCode_ERROR_CODE_UNAVAILABLE,
			fmt.Sprintf("no result after %d attempts: the streams it was sent on broke", p.attempts)))
		return nil, false
	}
	p.attempts++
	cl.mu.Unlock()
	return p.job, true
}

// deliver hands the result of job idx to the consumer, once.
func (cl *call) deliver(idx uint64, r *Result) {
	cl.mu.Lock()
	_, ok := cl.pending[idx]
	delete(cl.pending, idx)
	cl.mu.Unlock()
	if ok {
		cl.out <- r // never blocks: room for the whole window
	}
}

// requeue resubmits jobs whose stream broke before their result came back:
// all of them when the stream was drained (they never started), otherwise
// the idempotent ones (or all, with WithResubmitNonIdempotent); the rest are
// answered ERROR_CODE_OUTCOME_UNKNOWN.
func (cl *call) requeue(idxs []uint64, unstarted bool) {
	for _, idx := range idxs {
		cl.mu.Lock()
		p := cl.pending[idx]
		if p != nil && unstarted && p.attempts > 0 {
			p.attempts-- // never started: it does not count
		}
		cl.mu.Unlock()
		switch {
		case p == nil:
		case unstarted || cl.opts.resubmitAnyMethod || retry.Idempotent(p.job.GetMethod()):
			cl.retry <- idx // never blocks: room for the whole window
		default:
			cl.deliver(idx, errorResult(idx, p.job, fetchv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN,
				"the stream broke after the job was sent; not resubmitted because "+
					cmp.Or(strings.ToUpper(p.job.GetMethod()), "GET")+" is not idempotent"))
		}
	}
}

// unavailable answers every job still pending with ERROR_CODE_UNAVAILABLE,
// in index order. Call it only once every goroutine of the call is done.
func (cl *call) unavailable() []*Result {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	out := make([]*Result, 0, len(cl.pending))
	for idx, p := range cl.pending {
		out = append(out, errorResult(idx, p.job, fetchv1.ErrorCode_ERROR_CODE_UNAVAILABLE, cl.err.Error()))
	}
	clear(cl.pending)
	slices.SortFunc(out, func(a, b *Result) int { return cmp.Compare(a.GetIndex(), b.GetIndex()) })
	return out
}

func errorResult(idx uint64, j *Job, code fetchv1.ErrorCode, msg string) *Result {
	return &Result{Index: idx, Id: j.GetId(), Url: j.GetUrl(), Error: &fetchv1.Error{Code: code, Message: msg}}
}

// permanent reports whether a stream error will not go away by retrying.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented, codes.InvalidArgument:
		return true
	}
	return false
}

// sentJobs maps a stream's own indexes (by arrival on that stream) to the
// call's indexes, for the jobs sent on it and not yet answered.
type sentJobs struct {
	mu    sync.Mutex // guards next and local
	next  uint64
	local map[uint64]uint64
}

func (s *sentJobs) add(global uint64) {
	s.mu.Lock()
	s.local[s.next] = global
	s.next++
	s.mu.Unlock()
}

func (s *sentJobs) answer(local uint64) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.local[local]
	delete(s.local, local)
	return g, ok
}

func (s *sentJobs) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.local) == 0
}

func (s *sentJobs) unanswered() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint64, 0, len(s.local))
	for _, g := range s.local {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
