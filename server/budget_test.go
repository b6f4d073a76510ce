package server

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// full reports whether none of b is lent out: every byte taken has been
// given back.
func (b *budget) full() bool {
	if !b.total.TryAcquire(b.size) {
		return false
	}
	b.total.Release(b.size)
	return true
}

// metadataCaller names a test's callers by their "caller" metadata.
func metadataCaller(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	return strings.Join(md.Get("caller"), ",")
}

// TestJobMemoryShare: jobs held count against the job memory budget, a
// caller at its share stops being read (its later jobs wait unread), and
// another caller still gets its jobs fetched; once the first caller goes,
// every byte comes back.
func TestJobMemoryShare(t *testing.T) {
	up := testupstream.New(t)
	const (
		budget = 8 << 20
		body   = 1 << 20 // each job's request body: about 1 MiB of job memory
	)
	c, s := startServer(t, WithJobMemory(budget), WithCaller(metadataCaller), WithHostConcurrency(-1))
	ctxA, cancelA := context.WithCancel(metadata.AppendToOutgoingContext(testctx.New(t), "caller", "a"))
	stream, err := c.Fetch(ctxA)
	if err != nil {
		t.Fatal(err)
	}
	const sent = 12
	sendDone := make(chan error, 1)
	go func() {
		for i := range sent {
			j := &fetchv1.FetchRequest{Url: fmt.Sprintf("%s/?hang=1&i=%d", up.URL, i), Method: "POST", Body: make([]byte, body)}
			if err := stream.Send(j); err != nil {
				sendDone <- err
				return
			}
		}
		sendDone <- nil
	}()
	// A's share is half the budget: about 4 of its jobs are read and
	// started; the rest wait unread.
	testctx.WaitFor(t, 10*time.Second, "caller a's jobs upstream", func() bool { return up.InFlight() >= 3 })
	time.Sleep(300 * time.Millisecond) // would let more through, were the share not full
	if n := up.InFlight(); n > budget/2/body {
		t.Errorf("caller a has %d jobs of %d bytes upstream; want at most its share, %d", n, body, budget/2/body)
	}
	// Caller b is not held up by a.
	ctxB := metadata.AppendToOutgoingContext(testctx.New(t), "caller", "b")
	res, err := fetchAll(ctxB, t, c, []*fetchv1.FetchRequest{{Url: up.URL + "/?size=3", Method: "POST", Body: make([]byte, body)}})
	if err != nil || len(res) != 1 || res[0].GetStatusCode() != 200 {
		t.Errorf("caller b's job = %v, %v; want status 200", res, err)
	}
	cancelA()
	<-sendDone
	testctx.WaitFor(t, 10*time.Second, "every byte of job memory back", s.jobs.full)
}

// TestBatchDecodedLazily: a FetchBatch is decoded job by job as its stream
// reads them, so that a huge batch holds about its message's bytes, not
// all its jobs decoded, while its jobs wait for a slow upstream.
//
// Not parallel: the heap figures need the package to themselves.
func TestBatchDecodedLazily(t *testing.T) {
	up := testupstream.New(t)
	const jobs = 200_000
	s := New(WithAllowCIDRs(loopback), WithLogger(quiet), WithDedup(false), WithConcurrency(16))
	conn := serveConnWith(t, s, []grpc.ServerOption{grpc.MaxRecvMsgSize(64 << 20)}, nil)
	batch := &fetchv1.FetchBatchRequest{}
	for i := range jobs {
		batch.Jobs = append(batch.Jobs, &fetchv1.FetchRequest{Url: fmt.Sprintf("%s/?hang=1&i=%d", up.URL, i), Id: fmt.Sprint(i)})
	}
	raw, err := proto.Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	batch = nil
	ctx, cancel := context.WithCancel(testctx.New(t))
	defer cancel()
	base := liveHeap()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "FetchBatch", ServerStreams: true},
		"/fetch.v1.FetchService/FetchBatch", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(raw); err != nil {
		t.Fatal(err)
	}
	cs.CloseSend()
	size := len(raw)
	raw = nil
	testctx.WaitFor(t, 20*time.Second, "the pool busy upstream", func() bool { return up.InFlight() == 16 })
	time.Sleep(500 * time.Millisecond) // the queue fills
	held := liveHeap() - min(liveHeap(), base)
	t.Logf("a batch of %d jobs (%.1f MiB) held %.1f MiB while its jobs waited", jobs, float64(size)/(1<<20), float64(held)/(1<<20))
	// The message, the stream's queue of decoded jobs (8192 by default)
	// and gRPC's buffers; decoding every job would hold about 20 x the
	// message.
	if limit := uint64(4 * size); held > limit {
		t.Errorf("a %.1f MiB batch held %.1f MiB; want at most %.1f MiB (its jobs decoded as read)",
			float64(size)/(1<<20), float64(held)/(1<<20), float64(limit)/(1<<20))
	}
	cancel()
	for {
		if err := cs.RecvMsg(new(fetchv1.FetchBatchResponse)); err != nil {
			if err == io.EOF {
				t.Errorf("cancelled batch ended OK")
			}
			break
		}
	}
	runtime.KeepAlive(s)
}

// TestBatchRequestMemory: a FetchBatch takes the most its request may be
// from its caller's share of the request memory before reading it, so
// that a caller's batches beyond its share wait unread rather than pile
// up, another caller's batch is still served, and every byte comes back.
func TestBatchRequestMemory(t *testing.T) {
	up := testupstream.New(t)
	const (
		budget  = 16 << 20 // a caller's share: 8 MiB
		maxRecv = 3 << 20  // each batch takes 3 MiB before it is read
	)
	s := New(WithAllowCIDRs(loopback), WithLogger(quiet), WithDedup(false), WithCaller(metadataCaller),
		WithHostConcurrency(-1), func(c *Config) { c.RequestMemory, c.MaxRecvMsgBytes = budget, maxRecv })
	conn := serveConnWith(t, s, []grpc.ServerOption{grpc.MaxRecvMsgSize(maxRecv)}, nil)
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(testctx.New(t), "caller", "a"))
	defer cancel()
	// Five batches of one hanging job each, padded to 2 MiB with an
	// unknown field: each keeps 2 MiB once read, and the next needs 3 MiB
	// free, so the share lets three in at most; the others wait unread.
	errs := make(chan error, 5)
	for i := range 5 {
		raw, err := proto.Marshal(&fetchv1.FetchBatchRequest{Jobs: []*fetchv1.FetchRequest{{Url: fmt.Sprintf("%s/?hang=1&batch=%d", up.URL, i)}}})
		if err != nil {
			t.Fatal(err)
		}
		raw = protowire.AppendBytes(protowire.AppendTag(raw, 99, protowire.BytesType), make([]byte, 2<<20))
		go func() {
			cs, err := conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "FetchBatch", ServerStreams: true},
				"/fetch.v1.FetchService/FetchBatch", grpc.ForceCodec(rawCodec{}))
			if err == nil {
				err = cs.SendMsg(raw)
			}
			if err == nil {
				cs.CloseSend()
				err = cs.RecvMsg(new(fetchv1.FetchBatchResponse))
			}
			errs <- err
		}()
	}
	testctx.WaitFor(t, 10*time.Second, "batches started upstream", func() bool { return up.InFlight() >= 2 })
	time.Sleep(300 * time.Millisecond) // would let more in, were the share not held
	if n := up.InFlight(); n > 3 {
		t.Errorf("%d of caller a's 2 MiB batches started with an 8 MiB share; want at most 3", n)
	}
	// Another caller is not held up.
	other := metadata.AppendToOutgoingContext(testctx.New(t), "caller", "b")
	stream, err := fetchv1.NewFetchServiceClient(conn).FetchBatch(other, &fetchv1.FetchBatchRequest{Jobs: []*fetchv1.FetchRequest{{Url: up.URL + "/?size=2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.GetResult().GetStatusCode() != 200 {
		t.Errorf("caller b's batch = %v, %v; want 200", r, err)
	}
	cancel()
	for range 5 {
		<-errs
	}
	testctx.WaitFor(t, 10*time.Second, "every byte of request memory back", s.reqs.full)
}
