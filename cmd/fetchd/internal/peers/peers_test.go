package peers

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseTarget(t *testing.T) {
	tests := []struct {
		target  string
		want    string
		wantErr bool
	}{
		{target: "dns:///fetchd-headless:50051", want: "fetchd-headless"},
		{target: "dns:///fetchd-headless.default.svc.cluster.local:50051", want: "fetchd-headless.default.svc.cluster.local"},
		{target: "dns:///fetchd-headless", want: "fetchd-headless"},
		{target: "dns:///[::1]:50051", want: "::1"},
		{target: "fetchd-headless:50051", wantErr: true},
		{target: "dns://8.8.8.8/fetchd-headless:50051", wantErr: true},
		{target: "dns:///", wantErr: true},
		{target: "dns:///:50051", wantErr: true},
		{target: "dns:///a b:1", wantErr: true},
		{target: "http://fetchd-headless:50051", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			got, err := ParseTarget(tt.target)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseTarget(%q) = %q, %v; want %q, error %v", tt.target, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrTarget) {
				t.Errorf("ParseTarget(%q) error %v does not wrap ErrTarget", tt.target, err)
			}
		})
	}
}

// answer is one scripted lookup result.
type answer struct {
	addrs []string
	err   error
	hang  bool // block until the lookup's context ends
}

// script is a lookup that answers from a list, then repeats the last
// answer, and records when it was called.
type script struct {
	mu      sync.Mutex // guards answers and calls
	answers []answer
	calls   []time.Time
	names   []string
}

func (s *script) lookup(ctx context.Context, name string) ([]string, error) {
	s.mu.Lock()
	s.calls = append(s.calls, time.Now())
	s.names = append(s.names, name)
	a := s.answers[0]
	if len(s.answers) > 1 {
		s.answers = s.answers[1:]
	}
	s.mu.Unlock()
	if a.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return a.addrs, a.err
}

// setter records the counts a Watcher sets.
type setter struct {
	mu   sync.Mutex // guards got
	got  []int
	when []time.Duration
	from time.Time
}

func (s *setter) set(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, n)
	s.when = append(s.when, time.Since(s.from))
}

var errDNS = errors.New("dns: server misbehaving")

// TestWatcher runs a watcher for a while against a scripted lookup: the
// counts it sets, when, and what it logs.
func TestWatcher(t *testing.T) {
	three := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}
	tests := []struct {
		name     string
		interval time.Duration
		answers  []answer
		run      time.Duration // how long Run runs after the first Update
		wantN    []int         // counts set, in order
		wantWhen []time.Duration
		wantLog  []string // in the log
		wantLast int      // Update's first answer
	}{
		{
			name:    "first lookup sets the count",
			answers: []answer{{addrs: three}},
			run:     52 * time.Second, wantN: []int{3}, wantWhen: []time.Duration{0}, wantLast: 3,
			wantLog: []string{"level=INFO msg=peers name=fetchd-headless n=3"},
		},
		{
			name: "changes are set when seen, every 15s by default",
			answers: []answer{{addrs: three}, {addrs: three}, {addrs: append(slices.Clone(three), "10.0.0.4")},
				{addrs: three[:1]}, {addrs: three[:1]}},
			run:   52 * time.Second,
			wantN: []int{3, 4, 1}, wantWhen: []time.Duration{0, 30 * time.Second, 45 * time.Second}, wantLast: 3,
			wantLog: []string{"msg=\"peers changed\" name=fetchd-headless n=4 was=3", "msg=\"peers changed\" name=fetchd-headless n=1 was=4"},
		},
		{
			name:     "interval",
			interval: 5 * time.Second,
			answers:  []answer{{addrs: three}, {addrs: three[:2]}},
			run:      52 * time.Second,
			wantN:    []int{3, 2}, wantWhen: []time.Duration{0, 5 * time.Second}, wantLast: 3,
		},
		{
			name:    "a failed lookup keeps the last count",
			answers: []answer{{addrs: three}, {err: errDNS}, {hang: true}, {addrs: three[:2]}},
			run:     52 * time.Second,
			wantN:   []int{3, 2}, wantWhen: []time.Duration{0, 45 * time.Second}, wantLast: 3,
			wantLog: []string{"level=WARN msg=\"peers lookup failed; keeping the last count\" name=fetchd-headless n=3 error=\"look up fetchd-headless: dns: server misbehaving\"",
				"error=\"look up fetchd-headless: context deadline exceeded\""},
		},
		{
			name:    "a failed first lookup keeps 1",
			answers: []answer{{err: errDNS}, {addrs: three}},
			run:     52 * time.Second,
			wantN:   []int{3}, wantWhen: []time.Duration{15 * time.Second}, wantLast: 1,
			wantLog: []string{"level=WARN msg=\"peers lookup failed; keeping the last count\" name=fetchd-headless n=1"},
		},
		{
			name:    "no address counts as 1, duplicates once",
			answers: []answer{{addrs: []string{"10.0.0.1", "10.0.0.1", "fd00::1"}}, {addrs: nil}},
			run:     52 * time.Second,
			wantN:   []int{2, 1}, wantWhen: []time.Duration{0, 15 * time.Second}, wantLast: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var log bytes.Buffer
				sc := &script{answers: tt.answers}
				st := &setter{from: time.Now()}
				w := &Watcher{
					Name:     "fetchd-headless",
					Interval: tt.interval,
					Lookup:   sc.lookup,
					Set:      st.set,
					Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
						if a.Key == slog.TimeKey {
							return slog.Attr{}
						}
						return a
					}})),
				}
				ctx, cancel := context.WithCancel(context.Background())
				if got := w.Update(ctx); got != tt.wantLast {
					t.Errorf("first Update = %d, want %d", got, tt.wantLast)
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					w.Run(ctx)
				}()
				time.Sleep(tt.run)
				cancel()
				<-done
				if !slices.Equal(st.got, tt.wantN) || !slices.Equal(st.when, tt.wantWhen) {
					t.Errorf("counts set %v at %v, want %v at %v", st.got, st.when, tt.wantN, tt.wantWhen)
				}
				interval := cmp(tt.interval, DefaultInterval)
				if want := int(tt.run/interval) + 1; len(sc.calls) != want {
					t.Errorf("%d lookups in %v at an interval of %v, want %d", len(sc.calls), tt.run, interval, want)
				}
				for _, n := range sc.names {
					if n != "fetchd-headless" {
						t.Errorf("looked up %q, want fetchd-headless", n)
					}
				}
				for _, want := range tt.wantLog {
					if !strings.Contains(log.String(), want) {
						t.Errorf("log = %q, want it to contain %q", log.String(), want)
					}
				}
			})
		})
	}
}

// TestRunStops: Run returns at once when its context ends, a lookup in
// progress included.
func TestRunStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sc := &script{answers: []answer{{addrs: []string{"10.0.0.1"}}, {hang: true}}}
		w := &Watcher{Name: "x", Lookup: sc.lookup, Set: func(int) {}, Logger: slog.New(slog.DiscardHandler)}
		ctx, cancel := context.WithCancel(context.Background())
		w.Update(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.Run(ctx)
		}()
		time.Sleep(DefaultInterval + time.Second) // in the hanging lookup
		start := time.Now()
		cancel()
		<-done
		if d := time.Since(start); d != 0 {
			t.Errorf("Run returned %v after its context ended, want at once", d)
		}
	})
}

func cmp(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}
