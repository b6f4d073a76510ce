package server

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/retry"
	"github.com/fetchd/fetchd/server/internal/fetcher"
	"github.com/fetchd/fetchd/server/internal/hostlimit"
)

// stream is the state of one Fetch or FetchBatch call.
type stream struct {
	s *Server

	// window holds one token per job received and not yet answered; its
	// capacity is the stream window.
	window chan struct{}
	// results carries finished jobs, and chunks of bodies on their way,
	// to the sender. It has room for two messages per window token: a job
	// has at most one chunk in it at a time, and once its worker stops
	// waiting for that chunk (see chunkSink), its result; so a worker
	// never blocks on it. Only deliver and chunkSink send on it.
	results chan *outgoing

	// queue holds one token per job read and not yet started; its
	// capacity is the stream queue.
	queue chan struct{}
	// gate lets one of the stream's lanes at a time wait at the global
	// pool, so that streams take turns there whatever their number of
	// lanes.
	gate chan struct{}

	// Set by the receiver from the stream options before its first job
	// starts; read-only after that.
	lim      fetcher.Limits
	fetchCap *semaphore.Weighted // caps this stream's fetches in flight (its concurrency)
	// hosts holds this stream's own per-host cap and rate, where its
	// options ask for lower ones than the server's; nil: none.
	hosts *hostlimit.Registry
	retry retry.Policy // for jobs that set none
	dedup bool
	// caller names the stream's caller in its jobs' dedup keys, so that
	// only its own jobs share a fetch; "" when dedup crosses callers.
	caller string
	// local is set for a stream of [Server.ServeLocal]: the messages it
	// sends are handed over in memory, not encoded, so none may share a
	// buffer the server goes on using.
	local bool

	// The caller's shares of the server's body and job memory, held for
	// the stream's life.
	bodyMem, jobMem *callerBudget

	stopRecv context.CancelFunc // ends the receiver's waits
	read     atomic.Int64       // jobs read
	endOnce  sync.Once
	// holding is set while the receiver holds a workers count for the job
	// it has just read, until that job is queued or answered. Only the
	// receiver touches it.
	holding bool

	mu      sync.Mutex // guards closed, noReads, lanes and workers.Add
	closed  bool       // no job may start once set
	noReads bool       // the stream drains: no further job may be read
	lanes   map[string]*lane
	workers sync.WaitGroup // lanes and workers
}

// serve runs one stream: jobs come from recv until io.EOF, results go to
// send, and only the calling goroutine calls send and setTrailer. opts, when non-nil, are
// the stream options of a batch; otherwise they come from the first job.
// local is set for [Server.ServeLocal]: the server touches no message once
// it is sent.
func (s *Server) serve(ctx context.Context, recv func() (inbound, error), send func(*fetchv1.FetchResponse) error, setTrailer func(metadata.MD), opts *fetchv1.StreamOptions, local bool) error {
	start := time.Now()
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()
	callCtx := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	recvCtx, stopRecv := context.WithCancel(ctx)
	defer stopRecv()

	st := &stream{
		s:        s,
		window:   make(chan struct{}, s.opts.streamWindow),
		queue:    make(chan struct{}, s.opts.streamQueue),
		gate:     make(chan struct{}, 1),
		lanes:    make(map[string]*lane),
		results:  make(chan *outgoing, 2*s.opts.streamWindow),
		stopRecv: stopRecv,
		local:    local,
	}
	caller := s.opts.caller(callCtx)
	st.bodyMem, st.jobMem = s.bodies.caller(caller), s.jobs.caller(caller)
	defer st.bodyMem.done() // after every worker: serve returns last
	defer st.jobMem.done()
	if !s.opts.dedupAcross {
		st.caller = caller
	}
	recvDone := make(chan error, 1)
	s.receivers.Add(1)
	go func() {
		defer s.receivers.Done()
		recvDone <- st.receive(ctx, recvCtx, func() (inbound, error) { return st.readJob(recv) }, opts)
	}()

	var (
		recvErr, sendErr error
		complete         bool // every job was read: the caller half-closed
		drained          bool
		draining         = s.draining
		sum              summary
	)
	for {
		select {
		case o, ok := <-st.results:
			if !ok {
				// Every job read got its result, unless the stream broke.
				answered := sum.jobs == int(st.read.Load())
				unread := drained && !(complete && answered)
				if unread && answered && sendErr == nil && recvErr == nil && callCtx.Err() == nil {
					// Drained with jobs perhaps still unread, and every
					// job read answered: those without a result were
					// never started.
					setTrailer(metadata.Pairs(TrailerUnstarted, "true"))
				}
				sum.unanswered = int(st.read.Load()) - sum.jobs
				return s.finish(callCtx, start, &sum, recvErr, sendErr, unread)
			}
			failed := false
			if o.chunk == nil {
				// Before send: a sent message is no longer the server's
				// to read (see ServeLocal).
				s.metrics.result(o.resp)
				failed = o.resp.GetError() != nil
			}
			sending := sendErr == nil
			if sending {
				if err := send(o.resp); err != nil {
					sendErr = err
					cancel(err)
					go st.end()
				}
			}
			if o.chunk != nil {
				o.chunk.sent(o)
				continue
			}
			st.bodyMem.Release(o.held)
			st.jobMem.Release(o.job)
			if sending && sendErr == nil {
				sum.add(failed) // sent
			}
			<-st.window
		case err := <-recvDone:
			recvDone = nil
			switch {
			case err == io.EOF:
				// Every job is read; the queued ones still start. The
				// stream ends when the lanes and workers are done.
				complete = true
				go func() {
					st.workers.Wait()
					st.end()
				}()
				continue
			case errors.Is(err, errDraining):
				drained = true
				go st.drain()
				continue
			case errors.Is(err, errEnded):
			case err != nil:
				recvErr = err
				cancel(err)
			}
			go st.end()
		case <-draining:
			draining = nil
			drained = true
			go st.drain()
		}
	}
}

// drain stops the stream reading jobs, waits until every job it has read is
// answered, then ends it. Call it in its own goroutine.
func (st *stream) drain() {
	st.mu.Lock()
	st.noReads = true
	st.mu.Unlock()
	// No job is read from here on, so workers only counts down: lanes
	// and workers of the jobs read, and the receiver's hold on its last.
	st.workers.Wait()
	st.end()
}

// end stops the stream: no further job starts, the receiver stops
// waiting, and once every worker has finished the results channel is
// closed. It runs at most once; call it in its own goroutine, since it
// waits for workers whose results the sender must drain.
func (st *stream) end() {
	st.endOnce.Do(func() {
		st.mu.Lock()
		st.closed = true
		st.mu.Unlock()
		st.stopRecv()
		st.workers.Wait()
		// Jobs still queued were never started; forget them and their
		// lanes.
		for _, ln := range st.lanes {
			for _, t := range ln.tasks {
				st.jobMem.Release(t.cost)
			}
			st.putHosts(ln)
		}
		st.lanes = nil
		close(st.results)
	})
}

// deliver hands a finished job's result, with the body and job memory it
// holds, to the sender: the one path into results for a fetched, shared or refused
// job alike. The job holds a window token, so deliver never blocks, and the
// caller a workers count, so end has not closed results.
func (st *stream) deliver(resp *fetchv1.FetchResponse, held, job int64) {
	st.results <- &outgoing{resp: resp, held: held, job: job}
}

// finish logs the stream's summary and returns its final status. callCtx
// is the call's own context: when it has ended, the caller went away or its
// deadline passed. The status logged, and returned for the interceptors to
// count, is the one the caller gets.
func (s *Server) finish(callCtx context.Context, start time.Time, sum *summary, recvErr, sendErr error, drained bool) error {
	ctx := callCtx
	var err error
	switch {
	case recvErr != nil && !isContextStatus(recvErr):
		// gRPC refused a message (over the size limit, undecodable) and
		// has already sent this status to the caller, ending the call.
		err = recvErr
	case (sendErr != nil || recvErr != nil) && ctx.Err() != nil:
		err = callEnded(ctx)
	case sendErr != nil:
		err = sendErr
	case recvErr != nil:
		err = recvErr
	case sum.unanswered > 0 && ctx.Err() != nil:
		// Cut off by the caller (or its deadline) with jobs unanswered,
		// before any send failed.
		err = callEnded(ctx)
	case drained:
		err = status.Error(codes.Unavailable, "fetchd is draining: jobs without a result were not started; resubmit them")
	}
	attrs := []any{"jobs", sum.jobs, "ok", sum.ok, "errors", sum.errors}
	if sum.unanswered > 0 {
		// Read, and cut off by the stream's end before their result.
		attrs = append(attrs, "unanswered", sum.unanswered)
	}
	attrs = append(attrs, "duration", time.Since(start).Round(time.Millisecond), "status", status.Code(err).String())
	s.log.InfoContext(ctx, "stream finished", attrs...)
	return err
}

// isContextStatus reports whether err is the status of a call whose context
// ended (Canceled or DeadlineExceeded), or a context error.
func isContextStatus(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	c := status.Code(err)
	return c == codes.Canceled || c == codes.DeadlineExceeded
}

// deadlineSlack is how close to the call's deadline a cancel counts as the
// deadline. The caller's timer fires first and resets the stream, with the
// same code as a cancel; the server's copy of the deadline is later by the
// time the call's headers took to arrive and be read.
const deadlineSlack = 100 * time.Millisecond

// callEnded returns the status of a call whose context has ended: its
// deadline passed (the caller's own timer may have reset the stream first,
// so that ctx only says Canceled), or the caller cancelled.
func callEnded(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < deadlineSlack {
		return status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	}
	return status.FromContextError(ctx.Err()).Err()
}

// errEnded is what readJob returns for a job read after the stream ended
// for another reason than a drain; receive passes it on to serve.
var errEnded = errors.New("stream ended")

// summary counts a stream's outcomes for its log line: the results sent
// (jobs), and the jobs read that got none (unanswered).
type summary struct {
	jobs, ok, errors int
	unanswered       int
}

// add counts a result sent, failed if it carries an error.
func (m *summary) add(failed bool) {
	m.jobs++
	if failed {
		m.errors++
	} else {
		m.ok++
	}
}
