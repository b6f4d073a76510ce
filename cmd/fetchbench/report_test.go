package main

import (
	"slices"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		v    []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.v); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

func TestSummaries(t *testing.T) {
	run := func(fetchdWall, fetchdCPU, clientCPU time.Duration) row {
		return row{
			workload: "throughput", label: "throughput, 1024 B body, run 1/3", ratio: ratioRate,
			fetchd:   side{jobs: 1000, wall: fetchdWall, fetchdCPU: fetchdCPU, selfCPU: clientCPU},
			baseline: side{jobs: 1000, wall: time.Second, selfCPU: 100 * time.Millisecond},
		}
	}
	rp := &report{rows: []row{
		run(2*time.Second, 120*time.Millisecond, 40*time.Millisecond),        // rate 0.5, CPU 1.2, client 0.4
		run(time.Second, 100*time.Millisecond, 60*time.Millisecond),          // rate 1.0, CPU 1.0, client 0.6
		run(1250*time.Millisecond, 90*time.Millisecond, 50*time.Millisecond), // rate 0.8, CPU 0.9, client 0.5
		{workload: "latency", label: "latency-bound, 100ms response", ratio: ratioTime,
			fetchd: side{jobs: 1, wall: 1100 * time.Millisecond, fetchdCPU: time.Millisecond, selfCPU: time.Millisecond}, baseline: side{jobs: 1, wall: time.Second, selfCPU: time.Millisecond}},
		{workload: "latency", label: "latency-bound, 100ms response", ratio: ratioTime,
			fetchd: side{jobs: 1, wall: 1300 * time.Millisecond, fetchdCPU: 3 * time.Millisecond, selfCPU: time.Millisecond}, baseline: side{jobs: 1, wall: time.Second, selfCPU: time.Millisecond}},
	}}
	want := []string{
		"throughput, median of 3 runs: 0.80× the baseline's rate (runs 0.50-1.00); CPU per job against the baseline's: fetchd 1.00×, client 0.50×",
		"latency-bound, median of 2 runs: 1.20× the baseline's wall time (runs 1.10-1.30); CPU per job against the baseline's: fetchd 2.00×, client 1.00×",
	}
	if got := rp.summaries(); !slices.Equal(got, want) {
		t.Errorf("summaries() = %q, want %q", got, want)
	}
	rp.rows = rp.rows[:1]
	if got := rp.summaries(); len(got) != 0 {
		t.Errorf("summaries() of one run = %q, want none", got)
	}
}
