package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fetchd/fetchd/internal/retry"
)

// work fetches t with the permit p, and retries it per its policy, giving
// up its permit while it backs off.
func (st *stream) work(ctx context.Context, ln *lane, t *task, p permit) {
	start := time.Now()
	st.attempts(ctx, ln, t, p, start.Add(t.job.Timeout), 1)
	if t.resp.GetAttempts() > 1 {
		t.resp.Duration = durationpb.New(time.Since(start)) // all attempts and waits
	}
	st.s.flights.finish(t.key, t.resp)
	st.done(ln, t)
}

// attempts runs attempts from number first on, the first with the permit
// p, until one is final. A retry takes its next permit here, in the
// worker, not through its lane: the job has started already, so it does
// not queue behind the lane's jobs not yet started (and could not without
// waiting for a window token it already holds); see the package doc.
func (st *stream) attempts(ctx context.Context, ln *lane, t *task, p permit, deadline time.Time, first int) {
	resp := t.resp
	for attempt := first; ; attempt++ {
		remaining := time.Until(deadline)
		job := t.job
		if remaining < job.Timeout {
			j := *job
			j.Timeout = max(remaining, time.Millisecond)
			job = &j
		}
		t.held = st.s.fetch(ctx, job, resp)
		resp.Attempts = uint32(attempt)
		p.release()
		if resp.GetStreamed() {
			return // its caller has part of the body: never fetched again
		}

		now := time.Now()
		wait, retryAfter, again := t.policy.Next(resp, job.Method, attempt, now, deadline)
		if retryAfter > 0 && (resp.GetStatusCode() == 429 || resp.GetStatusCode() == 503) {
			ln.host.Pause(now.Add(retryAfter))
		}
		if !again || ctx.Err() != nil {
			return
		}
		if !retry.Sleep(ctx, wait) {
			return
		}
		var err error
		if p, err = st.acquirePermit(ctx, ln); err != nil {
			return // the stream ended: the last attempt's result stands
		}
		st.bodyMem.Release(t.held) // the last attempt's body, now dropped
		t.held = 0
		clearOutcome(resp)
	}
}
