package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// The memory cases of abuse, against the real binary with its defaults
// (plus loopback and two bearer tokens): a hostile caller (tokenAlpha)
// attacks, and fetchd must stay under its documented bound while a normal
// caller (tokenBeta) and health keep being answered. `make abuse` (part of
// `make test`) runs them without the race detector, whose shadow memory
// would swamp the figures; under -race they are skipped.

// abuseBound is the peak RSS fetchd must stay under in every case: the
// README's bound with the defaults (320 MiB of budgets and first 64 KiBs,
// under the soft memory limit of 256 MiB the collector works harder) with
// room for what the runtime holds beyond the limit's accounting.
const abuseBound = 400 << 20

// abuseCase is one attack: it runs until ctx ends, against fetchd with
// its defaults and args.
type abuseCase struct {
	name   string
	args   []string
	attack func(ctx context.Context, t *testing.T, conn *grpc.ClientConn, upstream string)
}

var abuseCases = []abuseCase{
	{"64 unfinished request messages at the 4 MiB limit on one connection", nil, func(ctx context.Context, t *testing.T, conn *grpc.ClientConn, _ string) {
		unfinishedMessages(ctx, t, conn.Target(), tokenAlpha, 64, 4<<20)
	}},
	{"two connections of 64 unfinished request messages at the 4 MiB limit", nil, func(ctx context.Context, t *testing.T, conn *grpc.ClientConn, _ string) {
		// 512 MiB offered, over -recv-memory: fetchd closes the
		// connections that hold the most, so the attack stays bounded.
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { unfinishedMessages(ctx, t, conn.Target(), tokenAlpha, 64, 4<<20) })
		}
		wg.Wait()
	}},
	{"64 jobs with 4 MiB request bodies to an upstream that never reads", nil, func(ctx context.Context, t *testing.T, conn *grpc.ClientConn, up string) {
		body := make([]byte, 4<<20-1<<10) // the most a job message may carry
		sendJobs(ctx, conn, 64, func(i int) *fetchv1.FetchRequest {
			return &fetchv1.FetchRequest{Url: fmt.Sprintf("%s/?hang=1&i=%d", up, i), Method: "POST", Body: body}
		})
	}},
	{"10,000 jobs with 128 headers of 495 bytes to a hanging upstream", nil, func(ctx context.Context, t *testing.T, conn *grpc.ClientConn, up string) {
		headers := make([]*fetchv1.Header, 128)
		for i := range headers {
			headers[i] = &fetchv1.Header{Name: fmt.Sprintf("X-Pad-%03d", i), Value: strings.Repeat("v", 495)}
		}
		sendJobs(ctx, conn, 10_000, func(i int) *fetchv1.FetchRequest {
			return &fetchv1.FetchRequest{Url: fmt.Sprintf("%s/?hang=1&i=%d", up, i), Headers: headers}
		})
	}},
	{"512 jobs whose 3 MiB results are never read", nil, func(ctx context.Context, t *testing.T, conn *grpc.ClientConn, up string) {
		sendJobs(ctx, conn, 512, func(i int) *fetchv1.FetchRequest {
			return &fetchv1.FetchRequest{Url: fmt.Sprintf("%s/?size=3145728&i=%d", up, i)}
		})
	}},
	{"20 FetchBatch calls at once of 4 MiB each to a hanging upstream", nil, func(ctx context.Context, t *testing.T, conn *grpc.ClientConn, _ string) {
		hang := testupstream.StartRaw(t, func(_ net.Conn, done <-chan struct{}) { <-done })
		batch := &fetchv1.FetchBatchRequest{}
		for i := 0; proto.Size(batch) < 4<<20-64<<10; i++ {
			for range 1000 {
				batch.Jobs = append(batch.Jobs, &fetchv1.FetchRequest{Url: "http://" + hang.Addr + "/" + strconv.Itoa(i)})
			}
		}
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				stream, err := fetchv1.NewFetchServiceClient(conn).FetchBatch(ctx, batch)
				if err == nil {
					stream.Recv() // nothing comes: the jobs hang
				}
			})
		}
		wg.Wait()
	}},
	{"one FetchBatch of 500,000 jobs (15.6 MiB) to a hanging upstream", []string{"-max-recv-msg-bytes", "16777216"}, func(ctx context.Context, t *testing.T, conn *grpc.ClientConn, _ string) {
		// Short URLs, so that the batch fits -max-recv-msg-bytes: an
		// upstream that never answers anything.
		hang := testupstream.StartRaw(t, func(_ net.Conn, done <-chan struct{}) { <-done })
		batch := &fetchv1.FetchBatchRequest{Jobs: make([]*fetchv1.FetchRequest, 500_000)}
		for i := range batch.Jobs {
			batch.Jobs[i] = &fetchv1.FetchRequest{Url: "http://" + hang.Addr + "/" + strconv.Itoa(i)}
		}
		t.Logf("batch of %.1f MiB", float64(proto.Size(batch))/(1<<20))
		stream, err := fetchv1.NewFetchServiceClient(conn).FetchBatch(ctx, batch, grpc.MaxCallSendMsgSize(64<<20))
		if err != nil {
			t.Errorf("FetchBatch: %v", err)
			return
		}
		batch = nil
		// Read one result (the batch was taken), then nothing.
		if _, err := stream.Recv(); err != nil && ctx.Err() == nil {
			t.Errorf("FetchBatch: %v", err)
		}
		<-ctx.Done()
	}},
}

// sendJobs sends n jobs made by job on one Fetch stream of conn, reading no
// result, until they are sent or ctx ends.
func sendJobs(ctx context.Context, conn *grpc.ClientConn, n int, job func(i int) *fetchv1.FetchRequest) {
	stream, err := fetchv1.NewFetchServiceClient(conn).Fetch(ctx)
	if err != nil {
		return
	}
	for i := range n {
		if stream.Send(job(i)) != nil {
			return
		}
	}
	<-ctx.Done()
}

func TestAbuseMemory(t *testing.T) {
	switch {
	case testing.Short():
		t.Skip("abuse cases take seconds each")
	case raceEnabled:
		t.Skip("run without -race, by make abuse: the race detector's memory would swamp the figures")
	}
	for _, tc := range abuseCases {
		t.Run(tc.name, func(t *testing.T) {
			up := testupstream.New(t)
			// The normal caller's upstream is another host: the attack
			// may hold every slot of its own host's cap.
			normalUp := testupstream.NewAt(t, "127.0.0.2:0")
			p := startFetchd(t, append([]string{"-allow-cidr", "127.0.0.0/8", "-auth-token-file", writeTokens(t)}, tc.args...)...)
			ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(testctx.New(t), bearer(tokenAlpha)...))
			attackDone := make(chan struct{})
			go func() {
				defer close(attackDone)
				tc.attack(ctx, t, dial(t, p.addr), up.URL)
			}()
			// While the attack holds what it can, the normal caller and
			// health are answered, again and again.
			normal := metadata.AppendToOutgoingContext(testctx.WithTimeout(t, time.Minute), bearer(tokenBeta)...)
			conn := dial(t, p.addr)
			deadline := time.Now().Add(4 * time.Second)
			for i := 0; time.Now().Before(deadline); i++ {
				probe(t, normal, conn, normalUp.URL, i)
				time.Sleep(200 * time.Millisecond)
			}
			peak := vmHWM(t, p.cmd.Process.Pid)
			t.Logf("fetchd peak RSS %.1f MiB during the attack", float64(peak)/(1<<20))
			if peak > abuseBound {
				t.Errorf("fetchd peak RSS %.1f MiB, want under %d MiB", float64(peak)/(1<<20), abuseBound>>20)
			}
			cancel()
			<-attackDone
			probe(t, normal, conn, normalUp.URL, -1) // and after
		})
	}
}

// probe checks that a normal caller's job and a health check are answered
// within a few seconds.
func probe(t *testing.T, ctx context.Context, conn *grpc.ClientConn, upstream string, i int) {
	t.Helper()
	start := time.Now()
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := fetchWithMD(fctx, conn, fmt.Sprintf("%s/?size=10&probe=%d", upstream, i))
	if err != nil || res.GetStatusCode() != 200 {
		t.Errorf("normal caller's job %d during the attack = %v, %v; want 200", i, res, err)
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(hctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check %d during the attack: %v", i, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Logf("probe %d took %v", i, d)
	}
}

// vmHWM returns the peak RSS of process pid, from /proc.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal(errors.New("no VmHWM in /proc status"))
	return 0
}

// TestRecvMemoryLegitimateCallers: with -recv-memory at its least (one
// message at -max-recv-msg-bytes), a FetchBatch of a 3.9 MiB message and a
// Fetch stream of thousands of small jobs pass, on a connection never
// closed.
func TestRecvMemoryLegitimateCallers(t *testing.T) {
	up := testupstream.New(t)
	u := up.URL + "/?size=1"
	r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-recv-memory", "4194304")
	ctx := testctx.WithTimeout(t, 60*time.Second)
	conn := dial(t, r.addr)
	fc := fetchv1.NewFetchServiceClient(conn)

	batch := &fetchv1.FetchBatchRequest{}
	body := make([]byte, 4080)
	for range 990 {
		batch.Jobs = append(batch.Jobs, &fetchv1.FetchRequest{Url: u, Method: "POST", Body: body})
	}
	if n := proto.Size(batch); n < 3800<<10 || n >= 4<<20 {
		t.Fatalf("batch of %d bytes, want 3.9 MiB", n)
	}
	b, err := fc.FetchBatch(ctx, batch)
	if err != nil {
		t.Fatalf("FetchBatch of %d bytes: %v", proto.Size(batch), err)
	}
	got := 0
	for ; ; got++ {
		if _, err := b.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("FetchBatch of %d bytes: Recv: %v", proto.Size(batch), err)
			}
			break
		}
	}
	if got != len(batch.Jobs) {
		t.Errorf("FetchBatch of %d jobs got %d results", len(batch.Jobs), got)
	}

	fetchMany(ctx, t, fc, u, 3000)
	if log := r.log.String(); strings.Contains(log, "connection closed") {
		t.Errorf("fetchd closed a legitimate caller's connection:\n%s", log)
	}
}
