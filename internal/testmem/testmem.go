// Package testmem measures how much memory a piece of a test allocates and
// holds, for tests that bound it.
package testmem

import (
	"runtime"
	"sync"
	"time"
)

// Usage is what [Measure] saw while its function ran.
type Usage struct {
	Allocated uint64 // bytes allocated (TotalAlloc)
	Held      uint64 // the peak of HeapInuse above its value before, sampled every 20ms
	Base      uint64 // HeapInuse before, after a GC
}

// MiB returns n bytes in MiB, for messages.
func MiB(n uint64) float64 { return float64(n) / (1 << 20) }

// Measure runs fn and returns what it allocated and held. The figures are
// the process's: run it in a test that is not parallel.
func Measure(fn func()) Usage {
	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	done := make(chan struct{})
	var peak uint64
	var sampler sync.WaitGroup
	sampler.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	fn()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	close(done)
	sampler.Wait()
	return Usage{
		Allocated: after.TotalAlloc - base.TotalAlloc,
		Held:      peak - min(peak, base.HeapInuse),
		Base:      base.HeapInuse,
	}
}
