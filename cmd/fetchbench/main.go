// Command fetchbench benchmarks fetchd against the code a caller would
// write without it, on this machine and in one run.
//
// It starts its own HTTP upstream on loopback (a child process: itself, as
// the hidden subcommand "fetchbench upstream"), builds and starts fetchd
// (once per workload, with the workload's concurrency), and runs each
// workload through fetchd with the client package, then through an
// in-process baseline (an errgroup of goroutines sharing one http.Client):
//
//   - throughput: 50,000 jobs of a 1 KiB body at concurrency 64;
//   - embedded: the throughput workload through the fetchd engine embedded
//     in this process (client.NewEmbedded), no fetchd process;
//   - latency: 10,000 jobs of a 100 ms response at concurrency 1,000;
//   - scale: 1,000,000 small jobs in one stream, with memory at 100k and 1M;
//   - ttfr: the time to the first result when one fast job follows 999 slow;
//   - sweep: the throughput workload at concurrency 8 to 1,024;
//   - bodies: bodies of 100 MiB and 1 MiB, through fetchd in chunks of client.DefaultChunkBytes
//     (a Fetch stream through the generated stubs) and through the
//     baseline read to io.Discard, in bytes/s and peak RSS;
//   - scaleout: 10,000 jobs of a 500 ms response over 2,000 hosts, through
//     one call of the client over three fetchd replicas against the same
//     through one replica, with fetchd's and the client's defaults: each
//     replica's pool is the limit, and the host affinity must spread the
//     hosts evenly.
//
// It prints a table (wall time, results/s, the ratio to the baseline, CPU
// time per job of fetchd, of the client and of the baseline, peak RSS) and
// writes it to DIR/results.md with a plot of results/s against concurrency,
// DIR/concurrency.svg.
//
// Usage:
//
//	fetchbench [-short] [-out DIR] [-fetchd PATH] [-workloads LIST] [-timeout D] [-cpuprofile FILE]
//
// Run it from the fetchd repository, which it builds fetchd from, or pass
// -fetchd. -short runs every workload with small counts, in seconds, and
// writes into a new temporary directory unless -out is given: CI runs it so
// that the benchmark keeps working, without judging its numbers.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "fetchbench:", err)
		os.Exit(1)
	}
}

// The lines the children announce their addresses with.
var (
	fetchdListening   = regexp.MustCompile(`msg="fetchd listening" addr=(127\.0\.0\.1:\d+)`)
	upstreamAddrRegex = regexp.MustCompile(regexp.QuoteMeta(upstreamListening) + `(127\.0\.0\.1:\d+)`)
)

// run runs the benchmark, or with "upstream" as its first argument the
// upstream.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "upstream" {
		return runUpstream(ctx, args[1:], stderr)
	}
	fs := flag.NewFlagSet("fetchbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	short := fs.Bool("short", false, "small counts: every workload in seconds, for CI (no timings are judged)")
	out := fs.String("out", "bench", "`directory` to write results.md and concurrency.svg to (-short: a new temporary directory)")
	fetchd := fs.String("fetchd", "", "fetchd binary `path` (default: build ./cmd/fetchd of the enclosing module)")
	list := fs.String("workloads", strings.Join(workloadNames, ","), "comma-separated workloads to run")
	timeout := fs.Duration("timeout", 12*time.Minute, "stop everything after this long")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of this process (the client and the baseline, not fetchd) to `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var names []string
	for _, n := range strings.Split(*list, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !slices.Contains(workloadNames, n) {
			return fmt.Errorf("-workloads: unknown %q (have %s)", n, strings.Join(workloadNames, ", "))
		}
		names = append(names, n)
	}
	outSet := false
	fs.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tmp, err := os.MkdirTemp("", "fetchbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *short && !outSet {
		if *out, err = os.MkdirTemp("", "fetchbench-short-"); err != nil {
			return err
		}
	}
	bin := *fetchd
	if bin == "" {
		fmt.Fprintln(stderr, "fetchbench: building fetchd")
		if bin, err = buildFetchd(ctx, tmp, stderr); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	up, err := startProcess(ctx, "upstream", self, []string{"upstream", "-listen", "127.0.0.1:0", "-hosts", strconv.Itoa(scaleHosts),
		"-watch-stdin", "-lifetime", (*timeout + time.Minute).String()}, upstreamAddrRegex)
	if err != nil {
		return err
	}
	defer up.stop()

	b := &bench{sz: fullSizes, fetchd: bin, upstream: "http://" + up.addr, log: stderr}
	if *short {
		b.sz = shortSizes
	}
	rp := &report{
		command:   strings.Join(append([]string{"fetchbench"}, args...), " "),
		started:   started,
		plotTitle: fmt.Sprintf("Results/s against concurrency, %s jobs of %d B per point", thousands(float64(b.sz.sweepJobs)), b.sz.throughputBody),
	}
	for _, name := range workloadNames {
		if !slices.Contains(names, name) {
			continue
		}
		rows, err := b.run(ctx, name)
		rp.rows = append(rp.rows, rows...)
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s: -timeout %v reached: %w", name, *timeout, err)
			}
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	rp.elapsed = time.Since(started)
	rp.text(stdout)
	return rp.write(*out, stderr)
}

// write writes results.md and, when the sweep ran, concurrency.svg to dir.
func (rp *report) write(dir string, stderr io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var sweep []row
	for _, r := range rp.rows {
		if r.workload == "sweep" {
			sweep = append(sweep, r)
		}
	}
	plot := ""
	if len(sweep) > 0 {
		plot = "concurrency.svg"
		var svg bytes.Buffer
		writePlot(&svg, sweep, rp.plotTitle)
		if err := os.WriteFile(filepath.Join(dir, plot), svg.Bytes(), 0o644); err != nil {
			return err
		}
	}
	var md bytes.Buffer
	rp.markdown(&md, plot)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "fetchbench: wrote %s\n", filepath.Join(dir, "results.md"))
	return nil
}
