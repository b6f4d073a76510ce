package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
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

// call is the state of one Fetch or FetchOrdered call. Its goroutines,
// each in its own file:
//
//   - the caller's goroutine runs [Client.run] and the emitter (this file):
//     it yields results and ends the call;
//   - the feeder takes jobs from the input and queues them in the router
//     (feed.go, router.go);
//   - one goroutine per backend keeps a stream open to it and receives its
//     results (backend.go), with a sender per stream (send.go) that takes
//     the backend's jobs from the router;
//   - any of them answers, counts and requeues jobs in the pending table
//     (pending.go), and gives backends up (connect.go), under mu.
type call struct {
	c       *Client
	opts    *options
	members *members // the target's resolution, when it has one

	window    chan struct{} // a token per job taken from the input and not yet yielded
	router    *router       // which backend sends each job taken, and when
	out       chan *Result  // results for the consumer; room for the whole window
	inputDone chan struct{} // closed when the input is exhausted
	failed    chan struct{} // closed when every backend is given up
	reached   chan struct{} // closed when the first stream opens, on any backend
	broken    chan struct{} // closed when a body writer failed

	mu        sync.Mutex // guards the fields below
	pending   map[uint64]*pendingJob
	taken     uint64             // jobs taken from the input
	exhausted bool               // the input was read to its end
	live      int                // backends not given up
	backends  map[string]*member // by address: every backend the call has had, until it leaves the resolution
	anyOpened bool               // reached is closed
	giveUps   []giveUp
	err       error // why the call failed
	writeErr  error // set once, with broken closed: the body writer's failure; no result is delivered after it
}

// run is the call, on the caller's goroutine: it starts the feeder and a
// goroutine per backend, yields results as they arrive, and returns once
// every goroutine it started is done.
func (c *Client) run(ctx context.Context, jobs iter.Seq[*Job], ordered bool, yield func(*Result, error) bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addrs, changed, err := c.addrs(ctx)
	if err != nil {
		yield(nil, err)
		return
	}
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	if len(addrs) == 0 {
		yield(nil, fmt.Errorf("%w: the target names none", ErrUnavailable))
		return
	}
	w := c.opts.window
	cl := &call{
		c:         c,
		opts:      &c.opts,
		window:    make(chan struct{}, w),
		router:    newRouter(!c.opts.spread),
		out:       make(chan *Result, w),
		inputDone: make(chan struct{}),
		failed:    make(chan struct{}),
		reached:   make(chan struct{}),
		broken:    make(chan struct{}),
		pending:   make(map[uint64]*pendingJob, w),
		backends:  make(map[string]*member, len(addrs)),
	}
	if err := cl.addBackends(ctx, &wg, addrs...); err != nil {
		yield(nil, err)
		return
	}
	wg.Go(func() { cl.feed(ctx, jobs) })
	if c.members != nil {
		cl.members = c.members
		wg.Go(func() { cl.follow(ctx, &wg, changed) })
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
		case <-cl.broken:
			cancel()
			wg.Wait()
			em.drain(cl.out)
			yield(nil, cl.writeErr)
			return
		case <-cl.failed:
			cancel()
			wg.Wait()
			if err := cl.writerFailed(); err != nil {
				em.drain(cl.out)
				yield(nil, err)
				return
			}
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

// drain emits the results left in out, until the caller stops.
func (e *emitter) drain(out chan *Result) {
	for len(out) > 0 {
		if !e.emit(<-out) {
			return
		}
	}
}

// fail ends the call because a body writer failed with err: no result is
// delivered after it, and run yields err once the goroutines are done.
func (cl *call) fail(err error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.writeErr == nil {
		cl.writeErr = err
		close(cl.broken)
	}
}

// writerFailed returns the error of a body writer that failed the call, or
// nil.
func (cl *call) writerFailed() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.writeErr
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
