package server

import (
	"context"
	"time"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/retry"
	"github.com/fetchd/fetchd/server/internal/fetcher"
	"github.com/fetchd/fetchd/server/internal/hostlimit"
)

// A lane is a stream's queue of jobs for one host. Each lane has one
// goroutine that starts its jobs in order as the host, the stream and the
// pool allow; a job waiting for a busy host holds no pool slot and does not
// hold up the stream's jobs for other hosts.
type lane struct {
	name string
	host *hostlimit.Host // the server's limits for the host, shared by all streams
	own  *hostlimit.Host // the stream's own limits for the host; nil: none

	// Guarded by stream.mu. A lane lives while it has tasks, its goroutine
	// or workers: the hosts their permits hold stay the lane's.
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
	held   int64  // body memory resp holds, from the caller's share
	cost   int64  // job memory the job holds, from the caller's share
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
		if st.hosts != nil {
			ln.own = st.hosts.Get(t.host)
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
				st.jobMem.Release(t.cost) // dropped: the stream ended
				<-st.window
			}
			continue
		}
		start := time.Now()
		p, err := st.acquirePermit(recvCtx, ln)
		if err != nil {
			st.s.flights.abandon(t.key)
			<-st.window
			continue
		}
		st.s.metrics.poolWait.Observe(time.Since(start).Seconds())
		st.s.flights.start(t.key) // its followers' deadlines run from here
		st.pop(ln)
		if !st.goWorker(ln, func() { st.work(ctx, ln, t, p) }) {
			p.release()
			st.s.flights.abandon(t.key)
			st.jobMem.Release(t.cost) // dropped: the stream ended
			<-st.window
		}
	}
}

// goWorker starts fn as a worker of lane ln. It reports false, starting
// nothing, if the stream has ended; fn must end with st.done(ln, t).
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
func (st *stream) done(ln *lane, t *task) {
	st.mu.Lock()
	ln.active--
	st.dropIdle(ln)
	st.mu.Unlock()
	st.deliver(t.resp, t.held, t.cost)
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
	st.putHosts(ln)
}

// putHosts gives back the lane's hosts to their registries, which keep a
// host's pause and a rate bucket not yet refilled for the host's next lane.
func (st *stream) putHosts(ln *lane) {
	st.s.hosts.Put(ln.host)
	if ln.own != nil {
		st.hosts.Put(ln.own)
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
