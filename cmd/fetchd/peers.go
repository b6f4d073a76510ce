package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/fetchd/fetchd/cmd/fetchd/internal/peers"
	"github.com/fetchd/fetchd/server"
)

// watchPeers, for -peers, sets fs's host share ([server.Server.SetHostShare])
// to the number of addresses of the DNS name, looked up once now, before
// fetchd serves, then every interval by lookup (nil: the system resolver)
// until stop is called. Without -peers it does nothing.
func watchPeers(ctx context.Context, name string, interval time.Duration, lookup func(context.Context, string) ([]string, error), fs *server.Server, logger *slog.Logger) (stop func()) {
	if name == "" {
		return func() {}
	}
	set := func(n int) {
		fs.SetHostShare(n)
		logger.Info("host limits shared", "replicas", n, "host_concurrency", fs.HostConcurrency())
	}
	w := &peers.Watcher{Name: name, Interval: interval, Lookup: lookup, Set: set, Logger: logger}
	w.Update(ctx)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}
