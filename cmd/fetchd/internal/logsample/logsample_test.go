package logsample

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock for one goroutine.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// step is a burst of lines of one message, then a pause.
type step struct {
	msg   string
	level slog.Level
	lines int
	every time.Duration // between two lines
	after time.Duration // after the burst
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		flush bool
		want  []string // every line written, in order, without time
	}{
		{
			name:  "under the burst: all written",
			steps: []step{{msg: "stream finished", lines: 3}},
			want:  []string{"level=INFO msg=\"stream finished\"", "level=INFO msg=\"stream finished\"", "level=INFO msg=\"stream finished\""},
		},
		{
			name:  "over the burst: counted, written at flush",
			steps: []step{{msg: "a", lines: 5}},
			flush: true,
			want:  append(repeat("level=INFO msg=a", 3), "level=INFO msg=\"suppressed log lines\" like=a count=2 since=0s"),
		},
		{
			name: "counts come with the first line after the interval",
			steps: []step{
				{msg: "a", lines: 4, after: 10 * time.Second},
				{msg: "b", lines: 1},
			},
			want: append(repeat("level=INFO msg=a", 3), "level=INFO msg=\"suppressed log lines\" like=a count=1 since=10s", "level=INFO msg=b"),
		},
		{
			name:  "the rate refills",
			steps: []step{{msg: "a", lines: 6, every: 500 * time.Millisecond}},
			// A line every 0.5s spends 1 token and earns 0.5: the bucket of
			// 3 lasts 5 lines, the 6th (at 2.5s) is suppressed.
			want:  append(repeat("level=INFO msg=a", 5), "level=INFO msg=\"suppressed log lines\" like=a count=1 since=3s"),
			flush: true,
		},
		{
			name:  "levels and messages have buckets of their own",
			steps: []step{{msg: "a", lines: 3}, {msg: "a", level: slog.LevelWarn, lines: 3}, {msg: "b", lines: 3}},
			want:  append(append(repeat("level=INFO msg=a", 3), repeat("level=WARN msg=a", 3)...), repeat("level=INFO msg=b", 3)...),
		},
		{
			name:  "a flood stays bounded",
			steps: []step{{msg: "flood", lines: 100000, every: time.Microsecond}},
			flush: true,
			want:  append(repeat("level=INFO msg=flood", 3), "level=INFO msg=\"suppressed log lines\" like=flood count=99997 since=100ms"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			clk := &fakeClock{now: time.Unix(1_000_000, 0)}
			text := slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}})
			h := New(text, Config{Rate: 1, Burst: 3, Interval: 10 * time.Second, Now: clk.Now})
			l := slog.New(h)
			for _, s := range tt.steps {
				for range s.lines {
					l.Log(context.Background(), s.level, s.msg)
					clk.Advance(s.every)
				}
				clk.Advance(s.after)
			}
			if tt.flush {
				h.Flush(context.Background())
			}
			got := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("lines written:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestWithAttrsSharesBuckets(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{now: time.Unix(1_000_000, 0)}
	h := New(slog.NewTextHandler(&buf, nil), Config{Rate: 1, Burst: 2, Now: clk.Now})
	a, b := slog.New(h).With("conn", 1), slog.New(h).With("conn", 2)
	for range 3 {
		a.Info("stream finished")
		b.Info("stream finished")
	}
	if n := strings.Count(buf.String(), "stream finished"); n != 2 {
		t.Errorf("%d lines written by two loggers sharing a bucket of 2, want 2:\n%s", n, buf.String())
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
