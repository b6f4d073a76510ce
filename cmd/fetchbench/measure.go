package main

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// side is what one run measured, through fetchd or the baseline.
type side struct {
	jobs, errors int
	bytes        int64 // body bytes read; the bodies workload only
	wall         time.Duration
	first        time.Duration // until the first result
	alone        time.Duration // ttfr: the fast job's latency when alone
	leadFirst    time.Duration // ttfr: the first result when the fast job leads the slow ones
	fetchdCPU    time.Duration // fetchd runs only
	selfCPU      time.Duration // the client's, or the baseline's
	fetchdPeak   int64         // KiB; fetchd runs only
	selfPeak     int64         // KiB, this process during the run
	samples      []memSample
}

// memSample is the memory of both processes when a run had a number of
// results.
type memSample struct {
	jobs                 int
	fetchdRSS, fetchdHWM int64 // KiB; 0 for the baseline
	selfRSS, selfHWM     int64 // KiB
}

// observer counts a run's results as they arrive, notes when the first came
// and samples memory at the marks. Its done method is safe for concurrent
// use.
type observer struct {
	marks  []int
	fetchd *process // nil for the baseline
	start  time.Time
	count  atomic.Int64
	first  atomic.Int64 // nanoseconds from start to the first result

	mu      sync.Mutex // guards samples
	samples []memSample
}

func newObserver(fetchd *process, marks ...int) *observer {
	return &observer{fetchd: fetchd, marks: marks}
}

// done counts one result.
func (o *observer) done() {
	n := o.count.Add(1)
	if n == 1 {
		o.first.Store(int64(time.Since(o.start)))
	}
	for _, m := range o.marks {
		if int64(m) == n {
			o.sample(m)
		}
	}
}

func (o *observer) sample(jobs int) {
	s := memSample{jobs: jobs}
	s.selfRSS, s.selfHWM, _ = memory("self")
	if o.fetchd != nil {
		s.fetchdRSS, s.fetchdHWM, _ = memory(strconv.Itoa(o.fetchd.pid()))
	}
	o.mu.Lock()
	o.samples = append(o.samples, s)
	o.mu.Unlock()
}

// measure holds the usage of both processes at the start of a run.
type measure struct {
	fetchd      *process
	self, child usage
}

// startMeasure resets this process's peak RSS, notes the CPU time of this
// process and of fetchd (nil for the baseline) and starts obs's clock.
func startMeasure(fetchd *process, obs *observer) (*measure, error) {
	if err := resetSelfPeak(); err != nil {
		return nil, err
	}
	m := &measure{fetchd: fetchd}
	var err error
	if fetchd != nil {
		if m.child, err = childUsage(fetchd.pid()); err != nil {
			return nil, err
		}
	}
	if m.self, err = selfUsage(); err != nil {
		return nil, err
	}
	obs.start = time.Now()
	return m, nil
}

// finish returns what the run measured.
func (m *measure) finish(obs *observer) (side, error) {
	wall := time.Since(obs.start)
	self, err := selfUsage()
	if err != nil {
		return side{}, err
	}
	s := side{
		jobs:     int(obs.count.Load()),
		wall:     wall,
		first:    time.Duration(obs.first.Load()),
		selfCPU:  self.cpu - m.self.cpu,
		selfPeak: self.hwmKiB,
		samples:  obs.samples,
	}
	if m.fetchd != nil {
		child, err := childUsage(m.fetchd.pid())
		if err != nil {
			return side{}, err
		}
		s.fetchdCPU, s.fetchdPeak = child.cpu-m.child.cpu, child.hwmKiB
	}
	return s, nil
}
