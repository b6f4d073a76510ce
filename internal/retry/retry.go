package retry

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// Policy is the retry policy of one job.
type Policy struct {
	MaxAttempts   int           // attempts in all; 1: no retry
	AnyMethod     bool          // retry methods that are not idempotent too
	Base          time.Duration // first backoff; doubled each attempt
	Max           time.Duration // longest backoff
	MaxRetryAfter time.Duration // longest Retry-After honoured
}

// retryableStatus are the HTTP statuses retried.
var retryableStatus = map[int32]bool{
	http.StatusTooManyRequests: true, http.StatusBadGateway: true,
	http.StatusServiceUnavailable: true, http.StatusGatewayTimeout: true,
}

// Transient reports whether a result is worth another attempt: a
// connection failure, a timeout, or a 429, 502, 503 or 504.
func Transient(r *fetchv1.FetchResponse) bool {
	if e := r.GetError(); e != nil {
		switch e.GetCode() {
		case fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE, fetchv1.ErrorCode_ERROR_CODE_TIMEOUT:
			return true
		}
		return false
	}
	return retryableStatus[r.GetStatusCode()]
}

// Idempotent reports whether method may be sent twice.
func Idempotent(method string) bool {
	switch strings.ToUpper(method) {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// Next decides whether the job, after attempt number attempt (from 1)
// ended in r, is tried again, and after how long. now and deadline bound
// the wait: a retry that could not start before the deadline is not made.
// It also returns the Retry-After the upstream asked for, if any, so that
// the caller can pause the host.
func (p Policy) Next(r *fetchv1.FetchResponse, method string, attempt int, now, deadline time.Time) (wait, retryAfter time.Duration, ok bool) {
	if attempt >= p.MaxAttempts || !Transient(r) || !(p.AnyMethod || Idempotent(method)) {
		return 0, 0, false
	}
	wait = p.Backoff(attempt)
	if ra, found := RetryAfter(r, now); found {
		retryAfter = min(ra, p.MaxRetryAfter)
		wait = max(wait, retryAfter)
	}
	// Leave the attempt some time: do not start it in the last 10% of
	// what would be left, nor after the deadline.
	if left := deadline.Sub(now); wait >= left-left/10 {
		return 0, retryAfter, false
	}
	return wait, retryAfter, true
}

// Backoff returns the wait before attempt+1: a random duration in
// [d/2, d] where d = Base·2^(attempt-1), capped at Max.
func (p Policy) Backoff(attempt int) time.Duration {
	d := p.Base
	for i := 1; i < attempt && d > 0 && d < p.Max; i++ {
		d <<= 1 // an overflow turns negative and is capped below
	}
	if d <= 0 || d > p.Max {
		d = p.Max
	}
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// RetryAfter parses the Retry-After header of r, in seconds or as an HTTP
// date relative to now. A date in the past is a zero wait.
func RetryAfter(r *fetchv1.FetchResponse, now time.Time) (time.Duration, bool) {
	for _, h := range r.GetHeaders() {
		if !strings.EqualFold(h.GetName(), "Retry-After") {
			continue
		}
		v := strings.TrimSpace(h.GetValue())
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
			if secs < 0 {
				return 0, false
			}
			return time.Duration(min(secs, 1<<32)) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0), true
		}
		return 0, false
	}
	return 0, false
}
