package main

import (
	"context"
	"fmt"
	"io"
	"iter"
	"slices"
	"strconv"
	"time"

	"github.com/fetchd/fetchd/client"
)

// workloadNames are the workloads, in the order they run.
var workloadNames = []string{"throughput", "embedded", "latency", "scale", "ttfr", "sweep", "bodies", "scaleout"}

// sizes are the job counts and concurrencies of the workloads.
type sizes struct {
	throughputJobs, throughputConc, throughputBody int
	runs                                           int // throughput and latency: fetchd and the baseline alternately, this many times each
	latencyJobs, latencyConc                       int
	latencyDelay                                   time.Duration
	scaleJobs, scaleConc, scaleBody                int
	scaleMarks                                     []int // job counts at which memory is sampled
	ttfrSlow                                       int   // slow jobs ahead of the fast one
	ttfrDelay                                      time.Duration
	sweepJobs                                      int
	sweepConc                                      []int
	bodies                                         []bodyRun // the bodies workload's rows
	scaleoutJobs                                   int
	scaleoutDelay                                  time.Duration
}

var fullSizes = sizes{
	throughputJobs: 50_000, throughputConc: 64, throughputBody: 1024, runs: 3,
	latencyJobs: 10_000, latencyConc: 1000, latencyDelay: 100 * time.Millisecond,
	scaleJobs: 1_000_000, scaleConc: 128, scaleBody: 64, scaleMarks: []int{100_000, 1_000_000},
	ttfrSlow: 999, ttfrDelay: 2 * time.Second,
	sweepJobs: 20_000, sweepConc: []int{8, 32, 128, 512, 1024},
	bodies: []bodyRun{
		{size: 100 << 20, jobs: 16, conc: 1}, {size: 100 << 20, jobs: 16, conc: 8},
		{size: 1 << 20, jobs: 512, conc: 8}, {size: 1 << 20, jobs: 512, conc: 32}, {size: 1 << 20, jobs: 512, conc: 64},
	},
	scaleoutJobs: 10_000, scaleoutDelay: 500 * time.Millisecond,
}

// shortSizes exercise every workload in seconds, for CI.
var shortSizes = sizes{
	throughputJobs: 2000, throughputConc: 64, throughputBody: 1024, runs: 2,
	latencyJobs: 500, latencyConc: 100, latencyDelay: 100 * time.Millisecond,
	scaleJobs: 10_000, scaleConc: 64, scaleBody: 64, scaleMarks: []int{1000, 10_000},
	ttfrSlow: 99, ttfrDelay: 500 * time.Millisecond,
	sweepJobs: 1000, sweepConc: []int{8, 64, 256},
	bodies: []bodyRun{
		{size: 8 << 20, jobs: 4, conc: 1}, {size: 8 << 20, jobs: 8, conc: 8},
		{size: 1 << 20, jobs: 64, conc: 8},
	},
	scaleoutJobs: 2000, scaleoutDelay: 50 * time.Millisecond,
}

// load is the jobs of one run: n GETs of url, the first of them of first
// and the last of them of last when those are set.
type load struct {
	n                int
	url, first, last string
}

func (l load) urlAt(i int) string {
	switch {
	case i == 0 && l.first != "":
		return l.first
	case i == l.n-1 && l.last != "":
		return l.last
	}
	return l.url
}

// jobs yields the load's jobs. The client never modifies a job, so they
// share three Job values and the input costs no memory per job.
func (l load) jobs() iter.Seq[*client.Job] {
	job, first, last := client.Get(l.url), client.Get(l.urlAt(0)), client.Get(l.urlAt(l.n-1))
	return func(yield func(*client.Job) bool) {
		for i := range l.n {
			j := job
			switch {
			case i == 0:
				j = first
			case i == l.n-1:
				j = last
			}
			if !yield(j) {
				return
			}
		}
	}
}

// bench runs the workloads against one upstream.
type bench struct {
	sz       sizes
	fetchd   string // the fetchd binary
	upstream string // base URL, http://127.0.0.1:PORT
	log      io.Writer
}

func (b *bench) sizeURL(n int) string { return fmt.Sprintf("%s/size/%d", b.upstream, n) }

func (b *bench) delayURL(d time.Duration) string {
	return fmt.Sprintf("%s/delay/%d", b.upstream, d.Milliseconds())
}

// run runs the named workload and returns its rows.
func (b *bench) run(ctx context.Context, name string) ([]row, error) {
	sz := b.sz
	switch name {
	case "throughput":
		return b.repeat(ctx, row{workload: name, label: fmt.Sprintf("throughput, %d B body", sz.throughputBody), conc: sz.throughputConc, ratio: ratioRate},
			load{n: sz.throughputJobs, url: b.sizeURL(sz.throughputBody)})
	case "embedded":
		return b.embedded(ctx)
	case "scaleout":
		return b.scaleout(ctx)
	case "latency":
		return b.repeat(ctx, row{workload: name, label: fmt.Sprintf("latency-bound, %v response", sz.latencyDelay), conc: sz.latencyConc, ratio: ratioTime},
			load{n: sz.latencyJobs, url: b.delayURL(sz.latencyDelay)})
	case "scale":
		r, err := b.pair(ctx, row{workload: name, label: fmt.Sprintf("scale, one stream, %d B body", sz.scaleBody), conc: sz.scaleConc, ratio: ratioRate},
			load{n: sz.scaleJobs, url: b.sizeURL(sz.scaleBody)}, sz.scaleMarks...)
		return []row{r}, err
	case "ttfr":
		r, err := b.ttfr(ctx)
		return []row{r}, err
	case "bodies":
		return b.bodies(ctx)
	case "sweep":
		var rows []row
		for _, c := range sz.sweepConc {
			r, err := b.pair(ctx, row{workload: name, label: fmt.Sprintf("sweep, %d B body", sz.throughputBody), conc: c, ratio: ratioRate},
				load{n: sz.sweepJobs, url: b.sizeURL(sz.throughputBody)})
			if err != nil {
				return rows, err
			}
			rows = append(rows, r)
		}
		return rows, nil
	}
	return nil, fmt.Errorf("unknown workload %q", name)
}

// repeat runs pair sz.runs times, since one run on a small VM can be off by
// 15-20%: fetchd and the baseline alternate, and the report gives the
// median.
func (b *bench) repeat(ctx context.Context, r row, l load) ([]row, error) {
	return b.runs(r, func(ri *row) (err error) {
		*ri, err = b.pair(ctx, *ri, l)
		return err
	})
}

// runs fills a copy of r with one run, sz.runs times, labelled "run i/n"
// when more than one, and returns the rows.
func (b *bench) runs(r row, one func(ri *row) error) ([]row, error) {
	runs := max(b.sz.runs, 1)
	var rows []row
	for i := range runs {
		ri := r
		if runs > 1 {
			ri.label += fmt.Sprintf(", run %d/%d", i+1, runs)
		}
		if err := one(&ri); err != nil {
			return rows, err
		}
		rows = append(rows, ri)
	}
	return rows, nil
}

// pair runs l through a fetchd started for r.conc, then through the
// baseline at the same concurrency, and fills r.
func (b *bench) pair(ctx context.Context, r row, l load, marks ...int) (row, error) {
	err := b.withFetchd(ctx, r.conc, func(c *client.Client, fd *process) error {
		var err error
		r.fetchd, err = b.fetchdRun(ctx, c, fd, r.workload, l, marks...)
		return err
	})
	if err != nil {
		return r, err
	}
	err = b.withBaseline(ctx, r.conc, func(bl *baseline) error {
		var err error
		r.baseline, err = b.baselineRun(ctx, bl, r.workload, l, marks...)
		return err
	})
	return r, err
}

// ttfr measures the time to the first result when the one fast job comes
// after sz.ttfrSlow slow ones, against the fast job's latency alone.
func (b *bench) ttfr(ctx context.Context) (row, error) {
	sz := b.sz
	conc := sz.ttfrSlow + 1
	r := row{workload: "ttfr", label: fmt.Sprintf("time to first result, fast job after %d × %v", sz.ttfrSlow, sz.ttfrDelay), conc: conc, ratio: ratioFirst}
	fast := load{n: 1, url: b.sizeURL(1)}
	mixed := load{n: sz.ttfrSlow + 1, url: b.delayURL(sz.ttfrDelay), last: fast.url}
	lead := load{n: sz.ttfrSlow + 1, url: b.delayURL(sz.ttfrDelay), first: fast.url}
	err := b.withFetchd(ctx, conc, func(c *client.Client, fd *process) error {
		alone, err := b.alone(func() (side, error) { return b.fetchdRun(ctx, c, fd, "", fast) })
		if err != nil {
			return err
		}
		b.progress("ttfr alone", "fetchd", side{jobs: 1, wall: alone})
		led, err := b.fetchdRun(ctx, c, fd, "", lead)
		if err != nil {
			return err
		}
		r.fetchd, err = b.fetchdRun(ctx, c, fd, "ttfr", mixed)
		r.fetchd.alone, r.fetchd.leadFirst = alone, led.first
		return err
	})
	if err != nil {
		return r, err
	}
	err = b.withBaseline(ctx, conc, func(bl *baseline) error {
		alone, err := b.alone(func() (side, error) { return b.baselineRun(ctx, bl, "", fast) })
		if err != nil {
			return err
		}
		b.progress("ttfr alone", "baseline", side{jobs: 1, wall: alone})
		led, err := b.baselineRun(ctx, bl, "", lead)
		if err != nil {
			return err
		}
		r.baseline, err = b.baselineRun(ctx, bl, "ttfr", mixed)
		r.baseline.alone, r.baseline.leadFirst = alone, led.first
		return err
	})
	return r, err
}

// alone returns the median wall time of a few runs of one job.
func (b *bench) alone(run func() (side, error)) (time.Duration, error) {
	var walls []time.Duration
	for range 5 {
		s, err := run()
		if err != nil {
			return 0, err
		}
		walls = append(walls, s.wall)
	}
	slices.Sort(walls)
	return walls[len(walls)/2], nil
}

// warmLoad opens conc connections to the upstream (conc jobs that each
// hold one for a while), so that no measured run pays for a storm of
// connects: on a small VM a thousand at once cost up to seconds.
func (b *bench) warmLoad(conc int) load {
	return load{n: conc, url: b.delayURL(200 * time.Millisecond)}
}

// withFetchd starts fetchd with a pool of conc, connects a client, warms
// them up, runs fn and stops fetchd.
func (b *bench) withFetchd(ctx context.Context, conc int, fn func(*client.Client, *process) error) error {
	// fetchd's stream window and queue are its defaults, derived from the
	// concurrency; the client's window is wider, so that fetchd's bounds
	// are the ones measured.
	window := 4 * conc
	fd, err := startProcess(ctx, "fetchd", b.fetchd, []string{
		"-listen", "127.0.0.1:0",
		"-allow-cidr", "127.0.0.0/8",
		"-concurrency", strconv.Itoa(conc),
		"-host-concurrency", "0",
		"-dedup=false",
		"-retry-attempts", "1",
		"-drain-timeout", "1s",
		"-log-level", "info", // the "fetchd listening" line is at info
	}, fetchdListening)
	if err != nil {
		return err
	}
	defer fd.stop()
	c, err := client.New(fd.addr, clientOptions(conc, window)...)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := b.fetchdRun(ctx, c, fd, "", b.warmLoad(conc)); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	return fn(c, fd)
}

// clientOptions are the measured client's: a pool of conc, a window, and
// no resubmission (one attempt per job, as the baseline makes).
func clientOptions(conc, window int) []client.Option {
	return []client.Option{
		client.WithWindow(window),
		client.WithConcurrency(uint32(conc)),
		client.WithRetryBudget(1),
		client.WithMaxAttempts(1),
	}
}

// withBaseline makes a baseline for conc, warms it up like fetchd and runs
// fn.
func (b *bench) withBaseline(ctx context.Context, conc int, fn func(*baseline) error) error {
	bl := newBaseline(conc)
	defer bl.close()
	if _, err := b.baselineRun(ctx, bl, "", b.warmLoad(conc)); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	return fn(bl)
}

// fetchdRun sends l through fetchd in one call and measures it.
func (b *bench) fetchdRun(ctx context.Context, c *client.Client, fd *process, name string, l load, marks ...int) (side, error) {
	obs := newObserver(fd, marks...)
	m, err := startMeasure(fd, obs)
	if err != nil {
		return side{}, err
	}
	errs := 0
	for r, err := range c.Fetch(ctx, l.jobs()) {
		if err != nil {
			if fd != nil && fd.exited() {
				return side{}, fmt.Errorf("fetchd died: %w\n%s", err, fd.logTail())
			}
			return side{}, fmt.Errorf("fetchd: %w", err)
		}
		if r.GetError() != nil || r.GetStatusCode() != 200 {
			errs++
		}
		obs.done()
	}
	s, err := m.finish(obs)
	if err != nil {
		return s, err
	}
	s.errors = errs
	if s.jobs != l.n {
		return s, fmt.Errorf("fetchd: %d results for %d jobs", s.jobs, l.n)
	}
	b.progress(name, "fetchd", s)
	return s, nil
}

// baselineRun runs l through the baseline and measures it.
func (b *bench) baselineRun(ctx context.Context, bl *baseline, name string, l load, marks ...int) (side, error) {
	s, err := bl.run(ctx, l, newObserver(nil, marks...))
	if err != nil {
		return s, fmt.Errorf("baseline: %w", err)
	}
	if s.jobs != l.n {
		return s, fmt.Errorf("baseline: %d results for %d jobs", s.jobs, l.n)
	}
	b.progress(name, "baseline", s)
	return s, nil
}

func (b *bench) progress(name, who string, s side) {
	if name == "" {
		return
	}
	fmt.Fprintf(b.log, "fetchbench: %-10s %-8s %8d jobs in %-9v %9.0f results/s, %d errors\n",
		name, who, s.jobs, s.wall.Round(time.Millisecond), float64(s.jobs)/s.wall.Seconds(), s.errors)
}
