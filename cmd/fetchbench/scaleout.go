package main

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"strings"
	"time"

	"github.com/fetchd/fetchd/client"
)

// scaleHosts is how many upstream hosts (loopback addresses) the upstream
// serves, for the scale-out workload: enough that rendezvous hashing gives
// each of three replicas a third of them within 1-2%.
const scaleHosts = 2000

// scaleout runs latency-bound jobs over scaleHosts hosts through one fetchd
// replica and through three, alternately, sz.runs times: both with
// fetchd's and the client's defaults, so that each replica's pool (256) is
// the limit. The row's fetchd side is the three replicas, its baseline side
// the one replica; the ratio is their rates.
func (b *bench) scaleout(ctx context.Context) ([]row, error) {
	sz := b.sz
	r := row{workload: "scaleout", label: fmt.Sprintf("scale-out, %v responses over %d hosts", sz.scaleoutDelay, scaleHosts),
		conc: 256, ratio: ratioRate}
	return b.runs(r, func(ri *row) (err error) {
		if ri.fetchd, err = b.replicasRun(ctx, 3); err != nil {
			return err
		}
		ri.baseline, err = b.replicasRun(ctx, 1)
		return err
	})
}

// replicasRun starts n fetchd replicas with their defaults, warms them
// up, sends the scale-out jobs through one call of a client over all of
// them, and measures it.
func (b *bench) replicasRun(ctx context.Context, n int) (side, error) {
	var addrs []string
	for range n {
		fd, err := startProcess(ctx, "fetchd", b.fetchd, []string{
			"-listen", "127.0.0.1:0",
			"-allow-cidr", "127.0.0.0/8",
			"-drain-timeout", "1s",
			"-log-level", "info", // the "fetchd listening" line is at info
		}, fetchdListening)
		if err != nil {
			return side{}, err
		}
		defer fd.stop()
		addrs = append(addrs, fd.addr)
	}
	c, err := client.New(strings.Join(addrs, ","))
	if err != nil {
		return side{}, err
	}
	defer c.Close()
	// Warm-up: short jobs, twice the pools' worth and two per host, which
	// open the replicas' connections to their hosts.
	warm := b.scaleJobs(max(2*256*n, 2*scaleHosts), 100*time.Millisecond)
	if _, err := b.count(ctx, c, warm); err != nil {
		return side{}, fmt.Errorf("warm-up: %w", err)
	}
	jobs := b.sz.scaleoutJobs
	start := time.Now()
	s, err := b.count(ctx, c, b.scaleJobs(jobs, b.sz.scaleoutDelay))
	s.wall = time.Since(start)
	if err != nil {
		return s, err
	}
	if s.jobs != jobs {
		return s, fmt.Errorf("%d results for %d jobs", s.jobs, jobs)
	}
	b.progress("scaleout", fmt.Sprintf("%d replica", n), s)
	return s, nil
}

// scaleJobs yields n GETs of /delay/D, round robin over the hosts, each
// URL distinct (no dedup).
func (b *bench) scaleJobs(n int, d time.Duration) iter.Seq[*client.Job] {
	u, _ := url.Parse(b.upstream)
	port := u.Port()
	return func(yield func(*client.Job) bool) {
		for i := range n {
			host := loopbackHost(1 + i%scaleHosts)
			if !yield(client.Get(fmt.Sprintf("http://%s:%s/delay/%d?i=%d", host, port, d.Milliseconds(), i))) {
				return
			}
		}
	}
}

// count runs jobs through c in one call and counts the results.
func (b *bench) count(ctx context.Context, c *client.Client, jobs iter.Seq[*client.Job]) (side, error) {
	var s side
	for r, err := range c.Fetch(ctx, jobs) {
		if err != nil {
			return s, err
		}
		s.jobs++
		if r.GetError() != nil || r.GetStatusCode() != 200 {
			s.errors++
		}
	}
	return s, nil
}
