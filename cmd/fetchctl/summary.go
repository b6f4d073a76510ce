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
	lost       uint64 // errors the client set: fetchd never answered the job
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
		fmt.Fprintf(&b, " (%s)", s.codeList(func(fetchv1.ErrorCode) bool { return true }))
	}
	return b.String()
}

// verdict returns why a run failed, one error per reason, most fundamental
// first, or nil when every job got a result (and, with -fail-on-error, none
// has an error). callErr is what the client's call ended with, outErr why
// writing the results failed.
//
// A result the client set because fetchd never answered the job
// (ERROR_CODE_UNAVAILABLE, ERROR_CODE_OUTCOME_UNKNOWN) is a result: it has
// its line on stdout and counts among the results and errors of the
// summary. "got no result" counts only jobs without a line.
func verdict(interrupted bool, cfg *config, in *input, sum *summary, callErr, outErr error) error {
	var errs []error
	if interrupted {
		errs = append(errs, errInterrupted)
	}
	if outErr != nil {
		errs = append(errs, outErr)
	}
	unreachable := errors.Is(callErr, client.ErrUnreachable)
	switch {
	case callErr == nil || interrupted:
	case errors.Is(callErr, client.ErrBodyWriter):
		errs = append(errs, errors.New(strings.TrimPrefix(callErr.Error(), "client: ")))
	case unreachable:
		// One line per backend, "client: cannot reach fetchd at ADDR: why",
		// printed without the package prefix.
		lines := strings.Split(callErr.Error(), "\n")
		for i, l := range lines {
			lines[i] = strings.TrimPrefix(l, "client: ")
		}
		errs = append(errs, errors.New(strings.Join(lines, "\n")))
	default:
		errs = append(errs, fmt.Errorf("cannot reach fetchd at %s: %w", cfg.addr, callErr))
	}
	if err := in.Err(); err != nil {
		errs = append(errs, err)
	}
	// Jobs without a result: read and never taken (the call ended first),
	// or given as arguments and never read.
	unreadArgs, restUnread := in.Unread()
	missing := unreadArgs
	if n := in.Count(); n > sum.results {
		missing += n - sum.results
	}
	if missing > 0 {
		errs = append(errs, fmt.Errorf("%d %s got no result from fetchd", missing, plural(missing, "job", "jobs")))
	}
	if sum.lost > 0 {
		errs = append(errs, fmt.Errorf("%d %s got no answer from fetchd; %s the client's error (%s)",
			sum.lost, plural(sum.lost, "job", "jobs"), plural(sum.lost, "its result is", "their results are"),
			sum.codeList(lostCode)))
	}
	switch {
	case restUnread && in.Line() == 0 && unreachable:
		errs = append(errs, fmt.Errorf("%s: not read: fetchd was not reached", in.Name()))
	case restUnread:
		errs = append(errs, fmt.Errorf("%s: stopped reading after line %d", in.Name(), in.Line()))
	}
	if cfg.failOnError && sum.errors > 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%d %s failed (-fail-on-error)", sum.errors, plural(sum.errors, "job", "jobs")))
	}
	return errors.Join(errs...)
}

// codeList returns the counts of the error codes that match, most frequent
// first, then by name: "ERROR_CODE_TIMEOUT 7, ERROR_CODE_BLOCKED 3".
func (s *summary) codeList(match func(fetchv1.ErrorCode) bool) string {
	codes := slices.SortedFunc(maps.Keys(s.codes), func(a, c fetchv1.ErrorCode) int {
		return cmp.Or(cmp.Compare(s.codes[c], s.codes[a]), strings.Compare(a.String(), c.String()))
	})
	parts := make([]string, 0, len(codes))
	for _, c := range codes {
		if match(c) {
			parts = append(parts, fmt.Sprintf("%s %d", c, s.codes[c]))
		}
	}
	return strings.Join(parts, ", ")
}

func plural(n uint64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
