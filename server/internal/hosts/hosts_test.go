package hosts

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
