// Command fetchctl is the command-line client of fetchd: it sends fetch
// jobs to one or more fetchd backends and prints one JSON line per result on
// stdout, with a progress bar and a one-line summary on stderr.
//
// Jobs are the URL arguments or, without any, the lines of -i FILE or of
// stdin, read lazily: a plain URL, or a fetch.v1.FetchRequest in protobuf
// JSON (the form grpcurl takes). Results come in completion order, or in
// input order with -ordered.
//
// fetchctl exits 0 when every job got a result (a per-job error is data,
// unless -fail-on-error), 1 when fetchd could not be reached (at once, when
// the first connection fails), input was malformed, results were lost or it
// was interrupted, and 2 on a usage error, a malformed -addr included. Run "fetchctl -h" for its flags; each has a FETCHCTL_...
// environment fallback.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fetchd/fetchd/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// errInterrupted is what run returns when its context ends (SIGINT or
// SIGTERM).
var errInterrupted = errors.New("interrupted")

// exitCode reports err on stderr, one "fetchctl: " line per line of its
// text, and returns the exit status for it: 0 for none (or -h), 2 for a
// usage error, 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *usageError
	isUsage := errors.As(err, &ue)
	if !isUsage || !ue.shown {
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintln(stderr, "fetchctl:", line)
		}
	}
	if isUsage {
		return 2
	}
	return 1
}

// run is fetchctl: it sends the jobs, writes the results to stdout and the
// progress and summary to stderr, and returns why it failed, if it did.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	in, err := cfg.input(stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	opts, err := cfg.clientOptions()
	if err != nil {
		return err
	}
	var files *bodyFiles
	if cfg.outDir != "" {
		files = &bodyFiles{dir: cfg.outDir}
		opts = append(opts, client.WithBodyWriter(files.open))
	}
	c, err := client.New(cfg.addr, opts...)
	if err != nil {
		return &usageError{err: fmt.Errorf("-addr %q: %w", cfg.addr, err)}
	}
	defer c.Close()
	out, err := newOutput(stdout, cfg.body, cfg.outDir, cfg.digest)
	if err != nil {
		return err
	}

	fetch := c.Fetch
	if cfg.ordered {
		fetch = c.FetchOrdered
	}
	bar := newProgress(cfg.progress, stderr, in.Total(), files != nil)
	if files != nil {
		files.bar = bar
	}
	sum := newSummary()
	var callErr, outErr error
	for r, err := range fetch(ctx, in.Jobs(ctx)) {
		if err != nil {
			callErr = err
			break
		}
		sum.add(r)
		bar.add(r)
		if outErr = out.write(r); outErr != nil {
			break
		}
	}
	bar.finish()
	fmt.Fprintln(stderr, "fetchctl:", sum.line(time.Since(sum.start)))

	return verdict(ctx.Err() != nil, cfg, in, sum, callErr, outErr)
}
