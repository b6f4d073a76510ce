package main

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// summary counts the results of a run, for the line printed at its end.
type summary struct {
	start      time.Time
	results    uint64
	ok         uint64 // results without an error: any HTTP status
	httpErrors uint64 // ok results with an HTTP status of 400 or more
	errors     uint64 // results with an error
	lost       uint64 // errors that say fetchd never answered the job
	codes      map[fetchv1.ErrorCode]uint64
}

func newSummary() *summary {
	return &summary{start: time.Now(), codes: map[fetchv1.ErrorCode]uint64{}}
}

// add counts r.
func (s *summary) add(r *client.Result) {
	s.results++
	e := r.GetError()
	if e == nil {
		s.ok++
		if r.GetStatusCode() >= 400 {
			s.httpErrors++
		}
		return
	}
	s.errors++
	s.codes[e.GetCode()]++
	if lostCode(e.GetCode()) {
		s.lost++
	}
}

// lostCode reports whether a result with this error code means that the job
// got no result from fetchd: the client gave up on it (UNAVAILABLE), or its
// stream broke with its outcome unknown (OUTCOME_UNKNOWN).
func lostCode(c fetchv1.ErrorCode) bool {
	return c == fetchv1.ErrorCode_ERROR_CODE_UNAVAILABLE || c == fetchv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN
}

// line returns the summary after elapsed, such as
//
//	1000 results in 2.31s (433/s): 990 ok (12 HTTP 4xx/5xx), 10 errors (ERROR_CODE_TIMEOUT 7, ERROR_CODE_BLOCKED 3)
func (s *summary) line(elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s in %.2fs", s.results, plural(s.results, "result", "results"), elapsed.Seconds())
	if secs := elapsed.Seconds(); secs > 0 {
		fmt.Fprintf(&b, " (%.0f/s)", float64(s.results)/secs)
	}
	fmt.Fprintf(&b, ": %d ok", s.ok)
	if s.httpErrors > 0 {
		fmt.Fprintf(&b, " (%d HTTP 4xx/5xx)", s.httpErrors)
	}
	fmt.Fprintf(&b, ", %d %s", s.errors, plural(s.errors, "error", "errors"))
	if len(s.codes) > 0 {
		// Most frequent first, then by name.
		codes := slices.SortedFunc(maps.Keys(s.codes), func(a, c fetchv1.ErrorCode) int {
			return cmp.Or(cmp.Compare(s.codes[c], s.codes[a]), strings.Compare(a.String(), c.String()))
		})
		parts := make([]string, len(codes))
		for i, c := range codes {
			parts[i] = fmt.Sprintf("%s %d", c, s.codes[c])
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	return b.String()
}

// verdict returns why a run failed, one error per reason, most fundamental
// first, or nil when every job got a result (and, with -fail-on-error, none
// has an error). callErr is what the client's call ended with, outErr why
// writing the results failed.
func verdict(interrupted bool, cfg *config, in *input, sum *summary, callErr, outErr error) error {
	var errs []error
	if interrupted {
		errs = append(errs, errInterrupted)
	}
	if outErr != nil {
		errs = append(errs, outErr)
	}
	if callErr != nil && !interrupted {
		errs = append(errs, fmt.Errorf("cannot reach fetchd at %s: %w", cfg.addr, callErr))
	}
	if err := in.Err(); err != nil {
		errs = append(errs, err)
	}
	// Jobs read without a result: the client gave up on them, or they were
	// read and never taken (the call ended first).
	unreadArgs, restUnread := in.Unread()
	lost := sum.lost + unreadArgs
	if n := in.Count(); n > sum.results {
		lost += n - sum.results
	}
	if lost > 0 {
		errs = append(errs, fmt.Errorf("%d %s got no result from fetchd", lost, plural(lost, "job", "jobs")))
	}
	if restUnread {
		errs = append(errs, fmt.Errorf("%s: stopped reading after line %d", in.Name(), in.Line()))
	}
	if cfg.failOnError && sum.errors > 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%d %s failed (-fail-on-error)", sum.errors, plural(sum.errors, "job", "jobs")))
	}
	return errors.Join(errs...)
}

func plural(n uint64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
