package server

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

// testCallerKey carries a test's caller name in a stream's context, for a
// [Config.Caller] that reads it.
type testCallerKey struct{}

func testCaller(ctx context.Context) string {
	c, _ := ctx.Value(testCallerKey{}).(string)
	return c
}

// slowFake answers every fetch 200 after delay, unless the job's timeout
// or its context ends first; it counts the fetches.
type slowFake struct {
	delay time.Duration
	hits  atomic.Int64
}

func (f *slowFake) fetch(ctx context.Context, j *fetcher.Job, resp *fetchv1.FetchResponse) {
	f.hits.Add(1)
	done, timeout := time.NewTimer(f.delay), time.NewTimer(j.Timeout)
	defer done.Stop()
	defer timeout.Stop()
	select {
	case <-done.C:
		resp.StatusCode = 200
	case <-timeout.C:
		resp.Error = &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT, Message: "job timeout expired"}
	case <-ctx.Done():
		resp.Error = &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_CANCELLED, Message: ctx.Err().Error()}
	}
}

// outcome is what a test expects of one result: its code (or status 200),
// when it came, and whether it was shared.
type outcome struct {
	code   fetchv1.ErrorCode // 0: status 200
	at     time.Duration     // since the first job was sent
	shared bool
}

// streamOne serves one Fetch stream of the single job j, with the caller
// of ctx, through s's stream machinery (no gRPC), and returns its result
// and when it was sent.
func streamOne(ctx context.Context, s *Server, j *fetchv1.FetchRequest) (*fetchv1.FetchResponse, time.Time, error) {
	sent := false
	recv := func() (inbound, error) {
		if sent {
			return inbound{}, io.EOF
		}
		sent = true
		return inbound{req: j}, nil
	}
	var (
		res *fetchv1.FetchResponse
		at  time.Time
	)
	send := func(r *fetchv1.FetchResponse) error {
		res, at = r, time.Now()
		return nil
	}
	err := s.serve(ctx, recv, send, func(metadata.MD) {}, nil, false)
	return res, at, err
}

// TestDedupFollowerDeadline: two identical jobs, of two callers or one,
// with their own timeouts, to an upstream that takes 7.5s. Each gets the
// outcome of its own deadline; the jobs of two callers share no fetch
// unless DedupAcrossCallers; a follower whose leader timed out before the
// follower's own deadline fetches for itself with the time it has left.
func TestDedupFollowerDeadline(t *testing.T) {
	const (
		delay = 7500 * time.Millisecond
		short = time.Second
		long  = 20 * time.Second
	)
	ok, timeout := fetchv1.ErrorCode(0), fetchv1.ErrorCode_ERROR_CODE_TIMEOUT
	tests := []struct {
		name          string
		across        bool // DedupAcrossCallers
		callers       [2]string
		first, second time.Duration // the jobs' timeouts; the first leads
		want          [2]outcome
		wantHits      int64
	}{
		{"two callers, long first", false, [2]string{"a", "b"}, long, short,
			[2]outcome{{ok, delay, false}, {timeout, short, false}}, 2},
		{"two callers, short first", false, [2]string{"a", "b"}, short, long,
			[2]outcome{{timeout, short, false}, {ok, delay, false}}, 2},
		{"across callers, long leads", true, [2]string{"a", "b"}, long, short,
			[2]outcome{{ok, delay, false}, {timeout, short, false}}, 1},
		{"across callers, short leads", true, [2]string{"a", "b"}, short, long,
			[2]outcome{{timeout, short, false}, {ok, short + delay, false}}, 2},
		{"across callers, same timeout", true, [2]string{"a", "b"}, long, long,
			[2]outcome{{ok, delay, false}, {ok, delay, true}}, 1},
		{"one caller, long leads", false, [2]string{"a", "a"}, long, short,
			[2]outcome{{ok, delay, false}, {timeout, short, false}}, 1},
		{"one caller, short leads", false, [2]string{"a", "a"}, short, long,
			[2]outcome{{timeout, short, false}, {ok, short + delay, false}}, 2},
		{"one caller, same timeout", false, [2]string{"a", "a"}, long, long,
			[2]outcome{{ok, delay, false}, {ok, delay, true}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				up := &slowFake{delay: delay}
				s, err := NewFromConfig(Config{Logger: quiet, Caller: testCaller, DedupAcrossCallers: tt.across})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				s.testHookFetch = up.fetch
				start := time.Now()
				var (
					wg   sync.WaitGroup
					got  [2]*fetchv1.FetchResponse
					when [2]time.Time
				)
				for i, d := range []time.Duration{tt.first, tt.second} {
					ctx := context.WithValue(context.Background(), testCallerKey{}, tt.callers[i])
					j := &fetchv1.FetchRequest{Url: "http://example.com/slow", Timeout: dur(d)}
					wg.Go(func() {
						var err error
						if got[i], when[i], err = streamOne(ctx, s, j); err != nil {
							t.Errorf("stream %d: %v", i, err)
						}
					})
					synctest.Wait() // the first job is in flight before the second comes
				}
				wg.Wait()
				for i, w := range tt.want {
					r := got[i]
					at := when[i].Sub(start)
					if r.GetError().GetCode() != w.code || (w.code == ok) != (r.GetStatusCode() == 200) ||
						at != w.at || r.GetShared() != w.shared {
						t.Errorf("job %d (timeout %v, caller %q) = status %d, error %v, shared %v after %v; want code %v, shared %v after %v",
							i, []time.Duration{tt.first, tt.second}[i], tt.callers[i], r.GetStatusCode(), r.GetError(), r.GetShared(), at,
							w.code, w.shared, w.at)
					}
				}
				if n := up.hits.Load(); n != tt.wantHits {
					t.Errorf("upstream hits = %d, want %d", n, tt.wantHits)
				}
			})
		})
	}
}

// TestDedupDeadlineFromLeaderStart: a job's deadline runs from when its
// fetch starts, so a follower's runs from when its leader's starts. With a
// host cap of 1 held for 7.5s by another job, the leader (20s) starts at
// 7.5s and answers at 15s; its follower (10s) shares that answer rather
// than timing out at 10s while the leader still waited for the host.
func TestDedupDeadlineFromLeaderStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 7500 * time.Millisecond
		up := &slowFake{delay: delay}
		s, err := NewFromConfig(Config{Logger: quiet, Caller: testCaller, HostConcurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.testHookFetch = up.fetch
		ctx := context.WithValue(context.Background(), testCallerKey{}, "a")
		jobs := []*fetchv1.FetchRequest{
			{Url: "http://example.com/other", Timeout: dur(20 * time.Second)}, // holds the host
			{Url: "http://example.com/slow", Timeout: dur(20 * time.Second)},  // the leader
			{Url: "http://example.com/slow", Timeout: dur(10 * time.Second)},  // its follower
		}
		start := time.Now()
		var (
			wg   sync.WaitGroup
			got  [3]*fetchv1.FetchResponse
			when [3]time.Time
		)
		for i, j := range jobs {
			wg.Go(func() {
				var err error
				if got[i], when[i], err = streamOne(ctx, s, j); err != nil {
					t.Errorf("stream %d: %v", i, err)
				}
			})
			synctest.Wait()
		}
		wg.Wait()
		want := []outcome{{0, delay, false}, {0, 2 * delay, false}, {0, 2 * delay, true}}
		for i, w := range want {
			r, at := got[i], when[i].Sub(start)
			if r.GetStatusCode() != 200 || r.GetError() != nil || at != w.at || r.GetShared() != w.shared {
				t.Errorf("job %d = status %d, error %v, shared %v after %v; want 200, shared %v after %v",
					i, r.GetStatusCode(), r.GetError(), r.GetShared(), at, w.shared, w.at)
			}
		}
		if n := up.hits.Load(); n != 2 {
			t.Errorf("upstream hits = %d, want 2", n)
		}
	})
}

// TestPeerCaller: the default caller of a stream is its peer's IP address,
// whatever its port, IPv4-mapped or not.
func TestPeerCaller(t *testing.T) {
	tests := []struct {
		name string
		addr net.Addr // nil: no peer
		want string
	}{
		{"IPv4", &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000}, "ip:192.0.2.7"},
		{"other port, same caller", &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40001}, "ip:192.0.2.7"},
		{"IPv4-mapped", &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "ip:192.0.2.7"},
		{"IPv6", &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, "ip:2001:db8::1"},
		{"Unix socket", &net.UnixAddr{Name: "/run/fetchd.sock", Net: "unix"}, "addr:/run/fetchd.sock"},
		{"no peer", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.addr != nil {
				ctx = peer.NewContext(ctx, &peer.Peer{Addr: tt.addr})
			}
			if got := PeerCaller(ctx); got != tt.want {
				t.Errorf("PeerCaller(peer %v) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}
