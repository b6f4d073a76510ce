// Package testctx gives a test a context that cannot outlive it, so that no
// wait in a test can hang: the context ends when the test's cleanups run or
// after a bound, whichever comes first. It is shared by every package's
// tests instead of a copy in each.
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
