package server

import (
	"context"
	"errors"
	"strings"

	"golang.org/x/sync/semaphore"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/fetcher"
	"github.com/fetchd/fetchd/server/internal/hostlimit"
)

// receive reads jobs until recv fails, the stream ends or the server
// drains. It returns io.EOF once every job has been read (also when the
// caller half-closes during a drain), errDraining when the server drains
// and the caller has not half-closed, nil or errEnded when the stream was
// ended by the sender. recv is readJob's: each job it returns holds a
// workers count, released once the job is queued or answered. ctx is the
// stream's context, given to workers; recvCtx also ends when the stream
// stops, and bounds the waits of the receiver and the lanes.
func (st *stream) receive(ctx, recvCtx context.Context, recv func() (inbound, error), opts *fetchv1.StreamOptions) error {
	batch := opts != nil
	defer st.release()
	for index := uint64(0); ; index++ {
		st.release() // the last job read is queued or answered
		select {
		case <-st.s.draining:
			return lastRead(recv)
		default:
		}
		// Take a queue slot before reading, so that a full queue leaves
		// jobs unread and HTTP/2 flow control pushes back on the caller.
		select {
		case st.queue <- struct{}{}:
		case <-recvCtx.Done():
			return nil
		case <-st.s.draining:
			return lastRead(recv)
		}
		in, err := recv()
		if err != nil {
			<-st.queue
			return err
		}
		req := in.req
		st.read.Add(1)
		if index == 0 {
			if !batch {
				opts = req.GetStreamOptions()
			}
			st.configure(opts)
		}
		resp := &fetchv1.FetchResponse{Index: index, Id: req.GetId(), Url: req.GetUrl()}
		t, err := st.task(in, index, batch, resp)
		if err != nil {
			<-st.queue
			resp.Error = fetcher.Classify(ctx, err).Proto()
			select {
			case st.window <- struct{}{}:
			case <-recvCtx.Done():
				return nil
			}
			if !st.answer(resp) {
				return nil
			}
			continue
		}
		// The job's memory, before it is queued: a full budget leaves
		// the caller's next jobs unread.
		t.cost = jobCost(req)
		if err := st.jobMem.Acquire(recvCtx, t.cost); err != nil {
			<-st.queue
			return nil
		}
		if !st.enqueue(ctx, recvCtx, t) {
			st.jobMem.Release(t.cost)
			return nil
		}
	}
}

// readJob reads the next job with recv unless the stream drains. For a job
// it returns, it holds a workers count until the receiver has queued or
// answered it, so that a drain waits for it; see receive.
func (st *stream) readJob(recv func() (inbound, error)) (inbound, error) {
	in, err := recv()
	if err != nil {
		return inbound{}, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.noReads {
		return inbound{}, errDraining // read after the drain began: never started
	}
	select {
	case <-st.s.draining:
		return inbound{}, errDraining
	default:
	}
	if st.closed {
		return inbound{}, errEnded
	}
	st.workers.Add(1)
	st.holding = true
	return in, nil
}

// release gives back the workers count readJob took for the receiver's
// last job, once that job is queued or answered.
func (st *stream) release() {
	if st.holding {
		st.holding = false
		st.workers.Done()
	}
}

// lastRead reads once more when the server drains, to learn whether the
// caller has half-closed: it returns io.EOF if so, errDraining if a job came
// (readJob drops it: it is never started), or recv's error. It blocks until
// one of these, or until the stream ends.
func lastRead(recv func() (inbound, error)) error {
	if _, err := recv(); err != nil {
		return err
	}
	return errDraining // not reached: readJob returns no job once draining
}

// configure sets the stream's limits from its options, each only lowering
// the server's (a per-host rate of its own adds to the server's, which
// still applies), and its digest, discard and chunk modes.
func (st *stream) configure(o *fetchv1.StreamOptions) {
	so := st.s.opts
	conc := so.concurrency
	if c := int(o.GetConcurrency()); c > 0 && c < conc {
		conc = c
	}
	st.fetchCap = semaphore.NewWeighted(int64(conc))
	st.lim = fetcher.Limits{
		DefaultTimeout: so.defaultTimeout,
		MaxTimeout:     so.maxTimeout,
		MaxBodyBytes:   so.maxBodyBytes,
		// A discarded body is never held: its cap is the server's alone.
		Digest:          o.GetDigest(),
		DiscardBody:     o.GetDiscardBody(),
		MaxDiscardBytes: so.maxDiscardBytes,
	}
	if t := o.GetTimeout(); t != nil && t.IsValid() && t.AsDuration() > 0 {
		st.lim.DefaultTimeout = min(t.AsDuration(), so.maxTimeout)
	}
	if b := int64(o.GetMaxBodyBytes()); b > 0 && b < so.maxBodyBytes {
		st.lim.MaxBodyBytes = b
	}
	if c := int64(o.GetChunkBytes()); c > 0 && !o.GetDiscardBody() {
		// Chunks fit a message under the inline cap; max_body_bytes caps
		// the streamed body instead of the inline one.
		st.lim.ChunkBytes = min(max(c, MinChunkBytes), so.maxBodyBytes)
		st.lim.MaxStreamBytes = so.maxStreamBytes
		if b := int64(o.GetMaxBodyBytes()); b > 0 && b < so.maxStreamBytes {
			st.lim.MaxStreamBytes = b
		}
	}
	var hostCap int // 0: the server's cap only
	if c := int(o.GetHostConcurrency()); c > 0 && (so.hostConcurrency == 0 || c < so.hostConcurrency) {
		hostCap = c
	}
	var hostRate float64 // 0: the server's rate only
	if r := o.GetHostRate(); r > 0 {
		hostRate = r
	}
	if hostCap > 0 || hostRate > 0 {
		st.hosts = hostlimit.NewRegistry(hostCap, hostRate)
	}
	st.retry = st.s.retryPolicy(o.GetRetry(), nil)
	// A streamed body goes to one caller as it is read: nothing to share.
	st.dedup = so.dedup && !o.GetDisableDedup() && st.lim.ChunkBytes == 0
}

// task validates a received job and builds its task.
func (st *stream) task(in inbound, index uint64, batch bool, resp *fetchv1.FetchResponse) (*task, error) {
	if in.bad != nil {
		return nil, in.bad
	}
	req := in.req
	if req.GetStreamOptions() != nil && (batch || index > 0) {
		msg := "stream_options may only be set on the first message of a Fetch stream"
		if batch {
			msg = "stream_options may not be set on a job of a batch; use FetchBatchRequest.options"
		}
		return nil, &fetcher.Error{Code: fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST, Err: errors.New(msg)}
	}
	job, err := fetcher.Validate(req, st.lim)
	if err != nil {
		return nil, err
	}
	t := &task{job: job, resp: resp, policy: st.retry, host: strings.ToLower(job.URL.Hostname())}
	job.Memory = st.bodyMem
	if job.Chunk > 0 {
		job.Sink = newChunkSink(st, resp)
	}
	if req.GetRetry() != nil {
		t.policy = st.s.retryPolicy(req.GetRetry(), &st.retry)
	}
	if st.dedup {
		t.key = dedupKey(st.caller, job)
	}
	return t, nil
}

// answer hands over the result of a job that needs no fetch (it was
// refused); the caller holds a window token for it. It reports false, and
// drops the result, if the stream has ended.
func (st *stream) answer(resp *fetchv1.FetchResponse) bool {
	st.mu.Lock()
	closed := st.closed
	st.mu.Unlock()
	if closed {
		return false
	}
	st.deliver(resp, 0, 0) // the receiver holds a workers count: results is open
	return true
}
