package retry

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends; it reports whether it waited the
// whole of d. A backoff, a Retry-After and a host's pause all wait this
// way.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
