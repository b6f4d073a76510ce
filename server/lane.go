package server

import (
	"context"
	"strings"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/retry"
	"github.com/fetchd/fetchd/server/internal/fetcher"
	"github.com/fetchd/fetchd/server/internal/hosts"
)

// A lane is a stream's queue of jobs for one host. Each lane has one
// goroutine that starts its jobs in order as the host, the stream and the
// pool allow; a job waiting for a busy host holds no pool slot and does not
// hold up the stream's jobs for other hosts.
type lane struct {
	name    string
	host    *hosts.Host
	slots   *semaphore.Weighted // the stream's per-host cap; nil: none
	limiter *rate.Limiter       // the stream's per-host rate; nil: none

	// Guarded by stream.mu. A lane lives while it has tasks, its goroutine
	// or workers: their slots and limits must stay the lane's own.
	tasks   []*task
	running bool // the lane's goroutine is alive
	active  int  // workers started by the lane and not finished
}

// task is one validated job on its way through a lane.
type task struct {
	job    *fetcher.Job
	resp   *fetchv1.FetchResponse
	policy retry.Policy
	host   string // lane key: the URL's host name, lower case
	key    string // dedup key; "" when the job is not deduplicated
}

// enqueue adds t to its lane, starting the lane's goroutine if it is idle.
// It reports false if the stream has ended.
func (st *stream) enqueue(ctx, recvCtx context.Context, t *task) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	ln := st.lanes[t.host]
	if ln == nil {
		ln = &lane{name: t.host, host: st.s.hosts.Get(t.host)}
		if st.hostCap > 0 {
			ln.slots = semaphore.NewWeighted(int64(st.hostCap))
		}
		if st.hostRate > 0 {
			ln.limiter = st.limiters[t.host]
			delete(st.limiters, t.host)
			if ln.limiter == nil {
				ln.limiter = rate.NewLimiter(rate.Limit(st.hostRate), max(1, int(st.hostRate)))
			}
		}
		st.lanes[t.host] = ln
	}
	ln.tasks = append(ln.tasks, t)
	if !ln.running {
		ln.running = true
		st.workers.Add(1)
		go st.runLane(ctx, recvCtx, ln)
	}
	return true
}

// runLane starts the lane's jobs one after another until the lane is empty
// or the stream stops (then stream.end forgets the lane).
func (st *stream) runLane(ctx, recvCtx context.Context, ln *lane) {
	defer st.workers.Done()
	for {
		st.mu.Lock()
		if len(ln.tasks) == 0 || st.closed || recvCtx.Err() != nil {
			ln.running = false
			if !st.closed && recvCtx.Err() == nil {
				st.dropIdle(ln)
			}
			st.mu.Unlock()
			return
		}
		t := ln.tasks[0]
		st.mu.Unlock()

		// The result will wait in the window: take its token first.
		select {
		case st.window <- struct{}{}:
		case <-recvCtx.Done():
			continue
		}
		if f, leader := st.s.flights.join(t.key); !leader {
			// An identical job is in flight: share its result.
			st.pop(ln)
			if !st.goWorker(ln, func() { st.follow(ctx, ln, t, f) }) {
				<-st.window
			}
			continue
		}
		start := time.Now()
		if err := st.acquireFetch(recvCtx, ln); err != nil {
			st.s.flights.abandon(t.key)
			<-st.window
			continue
		}
		st.s.metrics.poolWait.Observe(time.Since(start).Seconds())
		st.pop(ln)
		if !st.goWorker(ln, func() { st.work(ctx, ln, t) }) {
			st.releaseFetch(ln)
			st.s.flights.abandon(t.key)
			<-st.window
		}
	}
}

// goWorker starts fn as a worker of lane ln. It reports false, starting
// nothing, if the stream has ended; fn must end with st.done(ln, resp).
func (st *stream) goWorker(ln *lane, fn func()) bool {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return false
	}
	ln.active++
	st.workers.Add(1)
	st.mu.Unlock()
	st.s.runner.Go(fn)
	return true
}

// done hands over a worker's result and ends the worker.
func (st *stream) done(ln *lane, resp *fetchv1.FetchResponse) {
	st.mu.Lock()
	ln.active--
	st.dropIdle(ln)
	st.mu.Unlock()
	st.results <- resp // never blocks: the job holds a window token
	st.workers.Done()
}

// dropIdle forgets ln once it has nothing left. st.mu must be held.
func (st *stream) dropIdle(ln *lane) {
	if ln.running || ln.active > 0 || len(ln.tasks) > 0 {
		return
	}
	if st.lanes[ln.name] == ln {
		delete(st.lanes, ln.name)
	}
	st.s.hosts.Put(ln.host)
	if l := ln.limiter; l != nil && l.Tokens() < float64(l.Burst()) {
		// Keep a bucket not yet refilled for the host's next lane, or the
		// stream's rate would restart with a full burst.
		if st.limiters == nil {
			st.limiters = make(map[string]*rate.Limiter)
		}
		if len(st.limiters) >= 1024 {
			for name, k := range st.limiters {
				if k.Tokens() >= float64(k.Burst()) {
					delete(st.limiters, name)
				}
			}
		}
		st.limiters[ln.name] = l
	}
}

// pop removes the lane's first task, now started, and frees its queue slot.
func (st *stream) pop(ln *lane) {
	st.mu.Lock()
	ln.tasks[0] = nil
	ln.tasks = ln.tasks[1:]
	st.mu.Unlock()
	<-st.queue
}

// acquireFetch takes, in this order, everything one fetch holds: a slot of
// the stream's per-host cap, one of the host's cap, the host's permission
// (pause and rate), one of the stream's concurrency, and one of the global
// pool. The caller holds a window token, taken before all of these; every
// path takes them in this order, so none can deadlock. On error nothing is
// held.
func (st *stream) acquireFetch(ctx context.Context, ln *lane) error {
	if ln.slots != nil {
		if err := ln.slots.Acquire(ctx, 1); err != nil {
			return err
		}
	}
	held := 1
	fail := func(err error) error {
		st.releaseN(ln, held)
		return err
	}
	if err := ln.host.Acquire(ctx); err != nil {
		return fail(err)
	}
	held = 2
	if err := ln.host.Wait(ctx); err != nil {
		return fail(err)
	}
	if ln.limiter != nil {
		if err := ln.limiter.Wait(ctx); err != nil {
			return fail(err)
		}
	}
	if err := st.slots.Acquire(ctx, 1); err != nil {
		return fail(err)
	}
	held = 3
	// One waiter per stream at the global pool: streams take turns.
	select {
	case st.gate <- struct{}{}:
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	err := st.s.pool.Acquire(ctx, 1)
	<-st.gate
	if err != nil {
		return fail(err)
	}
	return nil
}

// releaseFetch frees what acquireFetch took.
func (st *stream) releaseFetch(ln *lane) { st.releaseN(ln, 4) }

// releaseN frees the first n of: the lane slot, the host slot, the stream
// slot, the pool slot.
func (st *stream) releaseN(ln *lane, n int) {
	if n >= 4 {
		st.s.pool.Release(1)
	}
	if n >= 3 {
		st.slots.Release(1)
	}
	if n >= 2 {
		ln.host.Release()
	}
	if ln.slots != nil {
		ln.slots.Release(1)
	}
}

// work fetches t, holding what acquireFetch took, and retries it per its
// policy, giving up every slot while it backs off.
func (st *stream) work(ctx context.Context, ln *lane, t *task) {
	start := time.Now()
	st.attempts(ctx, ln, t, start.Add(t.job.Timeout), 1)
	if t.resp.GetAttempts() > 1 {
		t.resp.Duration = durationpb.New(time.Since(start)) // all attempts and waits
	}
	st.s.flights.finish(t.key, t.resp)
	st.done(ln, t.resp)
}

// attempts runs attempts from number first on, the first already holding
// its slots, until one is final.
func (st *stream) attempts(ctx context.Context, ln *lane, t *task, deadline time.Time, first int) {
	resp := t.resp
	for attempt := first; ; attempt++ {
		remaining := time.Until(deadline)
		job := t.job
		if remaining < job.Timeout {
			j := *job
			j.Timeout = max(remaining, time.Millisecond)
			job = &j
		}
		st.s.fetch(ctx, job, resp)
		resp.Attempts = uint32(attempt)
		st.releaseFetch(ln)

		now := time.Now()
		wait, retryAfter, again := t.policy.Next(resp, job.Method, attempt, now, deadline)
		if retryAfter > 0 && (resp.GetStatusCode() == 429 || resp.GetStatusCode() == 503) {
			ln.host.Pause(now.Add(retryAfter))
		}
		if !again || ctx.Err() != nil {
			return
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return
		}
		if err := st.acquireFetch(ctx, ln); err != nil {
			return // the stream ended: the last attempt's result stands
		}
		idx, id, url := resp.GetIndex(), resp.GetId(), resp.GetUrl()
		resp.Reset()
		resp.Index, resp.Id, resp.Url = idx, id, url
	}
}

// follow waits for the identical job in flight and copies its result. If
// that job was cancelled (its caller went away), t is fetched after all.
func (st *stream) follow(ctx context.Context, ln *lane, t *task, f *flight) {
	select {
	case <-f.done:
	case <-ctx.Done():
		t.resp.Error = &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_CANCELLED, Message: ctx.Err().Error()}
		st.done(ln, t.resp)
		return
	}
	if f.resp.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_CANCELLED || ctx.Err() != nil {
		copyResult(t.resp, f.resp)
		st.done(ln, t.resp)
		return
	}
	if err := st.acquireFetch(ctx, ln); err != nil {
		t.resp.Error = &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_CANCELLED, Message: err.Error()}
		st.done(ln, t.resp)
		return
	}
	st.attempts(ctx, ln, t, time.Now().Add(t.job.Timeout), 1)
	st.done(ln, t.resp)
}

// copyResult copies the outcome of a shared fetch into dst, keeping dst's
// own index, id and url.
func copyResult(dst, src *fetchv1.FetchResponse) {
	dst.FinalUrl = src.GetFinalUrl()
	dst.StatusCode = src.GetStatusCode()
	dst.Headers = src.GetHeaders()
	dst.Body = src.GetBody()
	dst.Truncated = src.GetTruncated()
	dst.Duration = src.GetDuration()
	dst.Error = src.GetError()
	dst.Attempts = src.GetAttempts()
	dst.Shared = true
}

// dedupKey identifies a job whose result another identical job in flight
// may share: GET and HEAD without a body, same URL, headers and body cap.
func dedupKey(j *fetcher.Job) string {
	if (j.Method != "GET" && j.Method != "HEAD") || len(j.Body) > 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(j.Method)
	b.WriteByte(' ')
	b.WriteString(j.URL.String())
	for _, k := range sortedKeys(j.Header) {
		for _, v := range j.Header[k] {
			b.WriteByte('\n')
			b.WriteString(k)
			b.WriteByte(':')
			b.WriteString(v)
		}
	}
	b.WriteString("\ncap:")
	b.WriteString(itoa(j.MaxBody))
	return b.String()
}
