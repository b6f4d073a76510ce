package hostlimit

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestRegistryForgetsUnusedHosts(t *testing.T) {
	r := NewRegistry(2, 0)
	a1, a2, b := r.Get("a"), r.Get("a"), r.Get("b")
	if a1 != a2 || a1 == b || r.Len() != 2 {
		t.Fatalf("Get: same name must share state, other names not; %d hosts", r.Len())
	}
	r.Put(a1)
	r.Put(b)
	if r.Len() != 1 {
		t.Errorf("%d hosts after releasing b and one a, want 1", r.Len())
	}
	r.Put(a2)
	if r.Len() != 0 {
		t.Errorf("%d hosts after releasing all, want 0", r.Len())
	}
}

func TestCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewRegistry(2, 0).Get("h")
		ctx := context.Background()
		h.Acquire(ctx)
		h.Acquire(ctx)
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := h.Acquire(short); err == nil {
			t.Fatal("third Acquire with a cap of 2 succeeded")
		}
		h.Release()
		if err := h.Acquire(ctx); err != nil {
			t.Fatalf("Acquire after Release: %v", err)
		}
		if err := NewRegistry(0, 0).Get("free").Acquire(ctx); err != nil {
			t.Errorf("no cap: %v", err)
		}
	})
}

func TestRateAndPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		h := NewRegistry(0, 4).Get("h") // 4/s, burst 4
		ctx := context.Background()
		for range 8 {
			h.Wait(ctx)
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("8 waits at 4/s with burst 4 took %v, want 1s", got)
		}
		h.Pause(time.Now().Add(10 * time.Second))
		h.Pause(time.Now().Add(5 * time.Second)) // shorter: no effect
		before := time.Now()
		h.Wait(ctx)
		if got := time.Since(before); got < 10*time.Second || got > 10*time.Second+250*time.Millisecond {
			t.Errorf("Wait during a 10s pause took %v", got)
		}
		ctx2, cancel := context.WithCancel(ctx)
		h.Pause(time.Now().Add(time.Hour))
		go func() {
			time.Sleep(time.Minute)
			cancel()
		}()
		if err := h.Wait(ctx2); err == nil {
			t.Error("Wait returned nil when its context was cancelled during a pause")
		}
	})
}

// TestRegistryKeepsState: a host forgotten between requests must not lose
// its pause or its rate bucket.
func TestRegistryKeepsState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRegistry(0, 1) // 1/s, burst 1
		ctx := context.Background()
		start := time.Now()
		for range 3 {
			h := r.Get("h")
			h.Wait(ctx)
			r.Put(h)
		}
		if got := time.Since(start); got != 2*time.Second {
			t.Errorf("3 requests at 1/s, each with its own Get and Put, took %v; want 2s", got)
		}
		h := r.Get("p")
		h.Pause(time.Now().Add(time.Minute))
		r.Put(h)
		before := time.Now()
		r.Get("p").Wait(ctx)
		if got := time.Since(before); got != time.Minute {
			t.Errorf("Wait after the host was released and taken again: %v, want the 1m pause", got)
		}
		time.Sleep(2 * time.Second) // every bucket full again
		for range sweepEvery {
			h := r.Get("x")
			h.Wait(ctx)
			r.Put(h)
			time.Sleep(time.Second)
		}
		if n := r.Len(); n > 2 {
			t.Errorf("%d hosts kept after their state was gone and a sweep ran, want at most 2", n)
		}
	})
}
