// Package testctx bounds the waits of a test, so that none can hang: [New]
// and [WithTimeout] give a context that ends when the test's cleanups run or
// after a bound, whichever comes first, and [WaitFor] polls a condition for
// at most a bound. It is shared by every package's tests instead of a copy
// in each.
package testctx

import (
	"context"
	"testing"
	"time"
)

// Timeout is the bound of [New]: long enough for the slowest test under
// -race on a loaded two-core machine, short enough that a hung test fails
// instead of holding the run until go test's own timeout.
const Timeout = 2 * time.Minute

// New returns a context that ends when tb's cleanups run or after
// [Timeout].
func New(tb testing.TB) context.Context {
	tb.Helper()
	return WithTimeout(tb, Timeout)
}

// WithTimeout returns a context that ends when tb's cleanups run or after
// d. Unlike tb.Context, it is still live in cleanups registered after the
// call, which run before its own.
func WithTimeout(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// WaitFor polls cond every 5 ms until it holds, and fails tb if it does
// not within d.
func WaitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
