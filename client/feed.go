package client

import (
	"context"
	"iter"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// feed takes jobs from the input as window tokens allow: a token first,
// then the job, so that no job is taken that the call cannot answer, and
// queues each in the router, which never blocks. It
// takes none before a stream has opened: a call that reaches no backend
// takes no job.
func (cl *call) feed(ctx context.Context, jobs iter.Seq[*Job]) {
	defer close(cl.inputDone)
	defer cl.router.finishInput()
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
		cl.router.add(idx, j.GetUrl())
	}
}
