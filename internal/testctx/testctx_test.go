package testctx

import (
	"context"
	"testing"
	"time"
)

// TestWithTimeout: the context carries the bound and ends with the test,
// after the cleanups registered later have run.
func TestWithTimeout(t *testing.T) {
	var ctx context.Context
	var liveInLaterCleanup bool
	t.Run("sub", func(t *testing.T) {
		ctx = WithTimeout(t, time.Hour)
		t.Cleanup(func() { liveInLaterCleanup = ctx.Err() == nil })
		dl, ok := ctx.Deadline()
		if !ok || time.Until(dl) > time.Hour || time.Until(dl) < 59*time.Minute {
			t.Errorf("WithTimeout(t, 1h).Deadline() = %v, %v, want about an hour from now", dl, ok)
		}
		if _, ok := New(t).Deadline(); !ok {
			t.Errorf("New(t).Deadline() = _, false, want a deadline")
		}
	})
	if !liveInLaterCleanup {
		t.Errorf("WithTimeout's context ended before a cleanup registered after it ran, want it live there")
	}
	if err := ctx.Err(); err != context.Canceled {
		t.Errorf("WithTimeout's context after the test: Err() = %v, want %v", err, context.Canceled)
	}
}

// TestWaitFor: WaitFor returns once the condition holds, polling it again
// until then.
func TestWaitFor(t *testing.T) {
	calls := 0
	WaitFor(t, time.Minute, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Errorf("WaitFor polled cond %d times, want 3", calls)
	}
}
