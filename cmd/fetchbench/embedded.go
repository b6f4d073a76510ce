package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/fetchd/fetchd/client"
	"github.com/fetchd/fetchd/server"
)

// embedded runs the throughput workload (its body size, job count and
// concurrency) through the fetchd engine embedded in this process
// ([client.NewEmbedded]) and through the baseline, alternately, sz.runs
// times, against the same upstream. The row's fetchd side is the embedded
// client, whose CPU is all this process's: it has no fetchd process.
func (b *bench) embedded(ctx context.Context) ([]row, error) {
	sz := b.sz
	l := load{n: sz.throughputJobs, url: b.sizeURL(sz.throughputBody)}
	r := row{workload: "embedded", label: fmt.Sprintf("embedded engine, %d B body", sz.throughputBody), conc: sz.throughputConc, ratio: ratioRate}
	return b.runs(r, func(ri *row) error {
		err := b.withEmbedded(ctx, ri.conc, func(c *client.Client) error {
			var err error
			ri.fetchd, err = b.fetchdRun(ctx, c, nil, ri.workload, l)
			return err
		})
		if err != nil {
			return err
		}
		return b.withBaseline(ctx, ri.conc, func(bl *baseline) error {
			var err error
			ri.baseline, err = b.baselineRun(ctx, bl, ri.workload, l)
			return err
		})
	})
}

// withEmbedded makes an embedded client for conc, configured as
// withFetchd configures fetchd (the default Config but loopback allowed,
// a pool of conc, no per-host cap, no dedup, one attempt per job, so that
// every job is one upstream request as in the baseline), warms it up, runs
// fn and closes it.
func (b *bench) withEmbedded(ctx context.Context, conc int, fn func(*client.Client) error) error {
	c, err := client.NewEmbedded(server.Config{
		AllowCIDRs:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Concurrency:     conc,
		HostConcurrency: -1,
		DisableDedup:    true,
		RetryAttempts:   1,
		Logger:          slog.New(slog.DiscardHandler),
	}, clientOptions(conc, 4*conc)...)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := b.fetchdRun(ctx, c, nil, "", b.warmLoad(conc)); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	return fn(c)
}
