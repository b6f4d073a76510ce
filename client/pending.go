package client

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/retry"
)

// pendingJob is a job taken from the input and not yet answered, in the
// call's pending table (call.pending, guarded by call.mu).
type pendingJob struct {
	job      *Job
	attempts int // times sent
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

// deliver hands the result of job idx to the consumer, once, unless a
// body writer failed the call.
func (cl *call) deliver(idx uint64, r *Result) {
	cl.mu.Lock()
	_, ok := cl.pending[idx]
	delete(cl.pending, idx)
	if cl.writeErr != nil {
		ok = false // the call failed
	}
	cl.mu.Unlock()
	cl.router.answered(idx)
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
			cl.router.resend(idx)
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
