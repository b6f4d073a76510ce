// Command fetchd is the fetch.v1 gRPC server: it fetches URLs over HTTP for
// its callers through one bounded worker pool and streams back one result
// per job as soon as that job finishes. With -http-listen it also serves
// FetchBatch as HTTP/JSON, for callers without gRPC (package
// cmd/fetchd/internal/httpapi).
//
// Run "fetchd -h" for its flags; each has a FETCHD_... environment fallback.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// fetchd's live heap is small and its garbage is per-job: collect
		// less often (GOGC in the environment still wins).
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "fetchd:", err)
		os.Exit(1)
	}
}

// run starts fetchd and blocks until ctx is done and the server has
// drained.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger, err := cfg.logger(stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, getenv, logger)
}
