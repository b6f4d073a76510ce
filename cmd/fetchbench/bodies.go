package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// The bodies workload fetches large bodies: through fetchd in chunks of
// bodyChunkBytes (StreamOptions.chunk_bytes), and through the baseline read
// to io.Discard, and compares bytes/s and peak RSS.

// bodyChunkBytes is the chunk size the fetchd side asks for: the Go
// client's default, as fetchctl -out uses it. It is well
// under gRPC's default receive limit of 4 MiB, which the side keeps.
const bodyChunkBytes = client.DefaultChunkBytes

// bodiesRunTimeout bounds one side of one row.
const bodiesRunTimeout = 2 * time.Minute

// bodyRun is one row of the bodies workload: jobs GETs of a body of size
// bytes at concurrency conc.
type bodyRun struct {
	size int64
	jobs int
	conc int
}

// bodies runs every row of the bodies workload.
func (b *bench) bodies(ctx context.Context) ([]row, error) {
	var rows []row
	for _, br := range b.sz.bodies {
		r := row{workload: "bodies", label: "bodies, " + fmtBytes(br.size) + " body, chunks of " + fmtBytes(bodyChunkBytes),
			conc: br.conc, ratio: ratioBytes}
		url := b.streamURL(br.size)
		err := b.withFetchd(ctx, br.conc, func(_ *client.Client, fd *process) error {
			var err error
			r.fetchd, err = b.fetchdBodies(ctx, fd, url, br.size, br.jobs)
			return err
		})
		if err != nil {
			return rows, err
		}
		err = b.withBaseline(ctx, br.conc, func(bl *baseline) error {
			var err error
			r.baseline, err = b.baselineBodies(ctx, bl, url, br.size, br.jobs)
			return err
		})
		if err != nil {
			return rows, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func (b *bench) streamURL(n int64) string { return fmt.Sprintf("%s/stream/%d", b.upstream, n) }

// fetchdBodies sends jobs GETs of url, each a body of want bytes, through
// fetchd on one Fetch stream with chunks, counting (not keeping) every
// chunk, and checks every result with a [bodyTally]. It talks to fetchd
// through the generated stubs, since the client package does not take
// chunks. Any result that fails the check fails the run.
func (b *bench) fetchdBodies(ctx context.Context, fd *process, url string, want int64, jobs int) (side, error) {
	cc, err := grpc.NewClient(fd.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return side{}, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, bodiesRunTimeout)
	defer cancel()

	obs := newObserver(fd)
	m, err := startMeasure(fd, obs)
	if err != nil {
		return side{}, err
	}
	stream, err := fetchv1.NewFetchServiceClient(cc).Fetch(ctx)
	if err != nil {
		return side{}, fmt.Errorf("fetchd: %w", err)
	}
	var g errgroup.Group
	g.Go(func() error {
		for i := range jobs {
			req := &fetchv1.FetchRequest{Url: url}
			if i == 0 {
				req.StreamOptions = &fetchv1.StreamOptions{ChunkBytes: bodyChunkBytes}
			}
			if err := stream.Send(req); err != nil {
				return nil // the stream broke: Recv returns why
			}
		}
		return stream.CloseSend()
	})
	tally := newBodyTally(jobs, want)
	err = func() error {
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return tally.finish()
			}
			if err != nil {
				if fd.exited() {
					return fmt.Errorf("fetchd died: %w\n%s", err, fd.logTail())
				}
				return err
			}
			result, err := tally.add(resp)
			if err != nil {
				return err
			}
			if result {
				obs.done()
			}
		}
	}()
	cancel() // ends the stream, and the sender, if Recv stopped early
	if serr := g.Wait(); err == nil {
		err = serr
	}
	if err != nil {
		return side{}, fmt.Errorf("fetchd: %w", err)
	}
	s, err := m.finish(obs)
	if err != nil {
		return s, err
	}
	s.bytes = tally.bytes
	b.bodiesProgress("fetchd", s)
	return s, nil
}

// baselineBodies fetches jobs GETs of url, each a body of want bytes,
// through the baseline's client at its concurrency, reading every body to
// io.Discard. Any job that fails, or whose body is not want bytes, fails
// the run.
func (b *bench) baselineBodies(ctx context.Context, bl *baseline, url string, want int64, jobs int) (side, error) {
	ctx, cancel := context.WithTimeout(ctx, bodiesRunTimeout)
	defer cancel()
	var total atomic.Int64
	get := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := bl.hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		total.Add(n)
		switch {
		case err != nil:
			return fmt.Errorf("after %d body bytes: %w", n, err)
		case resp.StatusCode != http.StatusOK:
			return fmt.Errorf("status %d, want 200", resp.StatusCode)
		case n != want:
			return fmt.Errorf("%d body bytes, want %d", n, want)
		}
		return nil
	}

	obs := newObserver(nil)
	m, err := startMeasure(nil, obs)
	if err != nil {
		return side{}, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(bl.conc)
	for i := 0; i < jobs && gctx.Err() == nil; i++ {
		g.Go(func() error {
			if err := get(gctx); err != nil {
				return fmt.Errorf("job %d: %w", i, err)
			}
			obs.done()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return side{}, fmt.Errorf("baseline: %w", err)
	}
	s, err := m.finish(obs)
	if err != nil {
		return s, err
	}
	if s.jobs != jobs {
		return s, fmt.Errorf("baseline: %d results for %d jobs", s.jobs, jobs)
	}
	s.bytes = total.Load()
	b.bodiesProgress("baseline", s)
	return s, nil
}

func (b *bench) bodiesProgress(who string, s side) {
	fmt.Fprintf(b.log, "fetchbench: %-10s %-8s %8d jobs in %-9v %9.1f MiB/s\n",
		"bodies", who, s.jobs, s.wall.Round(time.Millisecond), mibPerSec(s))
}

// mibPerSec is a side's body bytes per second, in MiB.
func mibPerSec(s side) float64 { return float64(s.bytes) / (1 << 20) / s.wall.Seconds() }

// fmtBytes writes n as a whole number of GiB, MiB or KiB when it is one.
func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
