package hostlimit

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// inFlightCap acquires h until an Acquire waits a minute in the bubble, and
// returns how many it got then releases them.
func inFlightCap(tb testing.TB, h *Host, limit int) int {
	tb.Helper()
	n := 0
	for ; n <= limit; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := h.Acquire(ctx)
		cancel()
		if err != nil {
			break
		}
	}
	for range n {
		h.Release()
	}
	return n
}

// TestShareCap: a share of n divides the cap, at least 1 per host.
func TestShareCap(t *testing.T) {
	tests := []struct {
		name           string
		perHost, share int
		want           int
	}{
		{"share 3 of 4", 4, 3, 1},
		{"share 2 of 4", 4, 2, 2},
		{"share 1", 4, 1, 4},
		{"share 0 counts as 1", 4, 0, 4},
		{"share over the cap: 1", 4, 9, 1},
		{"share 3 of 16", 16, 3, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := NewRegistry(tt.perHost, 0)
				r.SetShare(tt.share)
				if got := inFlightCap(t, r.Get("h"), tt.perHost); got != tt.want {
					t.Errorf("cap %d with share %d: %d in flight, want %d", tt.perHost, tt.share, got, tt.want)
				}
			})
		})
	}
}

// TestShareAtRuntime: a new share applies to the next start at once, for
// hosts already in use too; fetches in flight above a lowered cap go on.
func TestShareAtRuntime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(4, 0)
		h := r.Get("h")
		ctx := context.Background()
		for range 4 {
			if err := h.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
		}
		r.SetShare(2) // cap 2: the 4 in flight go on, nothing new starts
		started := make(chan struct{})
		go func() {
			h.Acquire(ctx)
			close(started)
		}()
		for i := range 2 {
			h.Release()
			synctest.Wait()
			select {
			case <-started:
				t.Fatalf("a fetch started with %d in flight after the cap went down to 2", 3-i)
			default:
			}
		}
		h.Release() // 1 in flight: the waiter starts
		synctest.Wait()
		select {
		case <-started:
		default:
			t.Fatal("no fetch started with 1 in flight and a cap of 2")
		}
		h.Release()
		h.Release() // the last old fetch and the waiter's: 0 in flight

		// Raising the share back wakes a waiter at once.
		r.SetShare(4) // cap 1
		h.Acquire(ctx)
		woken := make(chan struct{})
		go func() {
			h.Acquire(ctx)
			close(woken)
		}()
		synctest.Wait()
		select {
		case <-woken:
			t.Fatal("a second fetch started with a cap of 1")
		default:
		}
		r.SetShare(1) // cap 4
		synctest.Wait()
		select {
		case <-woken:
		default:
			t.Fatal("a waiter did not start when the share went down to 1 (cap 4)")
		}
		h.Release()
		h.Release()
		if got := r.Get("new").Acquire(ctx); got != nil {
			t.Fatal(got)
		}
		if got := r.Share(); got != 1 {
			t.Errorf("Share() = %d, want 1", got)
		}
	})
}

// TestShareCancel: an Acquire cancelled while waiting holds nothing and
// does not block the next one.
func TestShareCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(2, 0)
		r.SetShare(2)
		h := r.Get("h")
		ctx := context.Background()
		h.Acquire(ctx)
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := h.Acquire(short); err == nil {
			t.Fatal("second Acquire with a cap of 1 succeeded")
		}
		h.Release()
		if got := inFlightCap(t, h, 2); got != 1 {
			t.Errorf("after a cancelled wait: %d in flight, want 1", got)
		}
		done, cancelDone := context.WithCancel(ctx)
		cancelDone()
		if err := h.Acquire(done); err == nil {
			t.Error("Acquire with a context done already succeeded")
		}
		if got := inFlightCap(t, h, 2); got != 1 {
			t.Errorf("after an Acquire with a context done: %d in flight, want 1", got)
		}
	})
}

// TestShareRate: a share of n divides the rate, for hosts in use and new.
func TestShareRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(0, 6) // 6/s, burst 6
		old := r.Get("old")
		r.SetShare(3) // 2/s, burst 2
		ctx := context.Background()
		for _, h := range []*Host{old, r.Get("new")} {
			time.Sleep(time.Minute) // a full bucket
			start := time.Now()
			for range 6 {
				h.Wait(ctx)
			}
			// A burst of 2, then one every 500ms.
			if got := time.Since(start); got != 2*time.Second {
				t.Errorf("%s: 6 waits at 6/s with share 3 took %v, want 2s", h.Name(), got)
			}
		}
	})
}
