package logsample

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Defaults of [Config].
const (
	DefaultRate     = 50
	DefaultBurst    = 100
	DefaultInterval = 10 * time.Second
)

// Config configures a [Handler]. Zero fields take the defaults.
type Config struct {
	// Rate is the lines per second of one kind written, sustained
	// (default DefaultRate); Burst how many may come at once (default
	// DefaultBurst).
	Rate  float64
	Burst int
	// Interval is the least time between two "suppressed log lines" lines
	// of one kind (default DefaultInterval).
	Interval time.Duration
	// Now is the clock (nil: time.Now); for tests.
	Now func() time.Time
}

// Handler is a [slog.Handler] that writes through its inner handler at
// most Config.Rate lines a second of each level and message; see the
// package doc. Counts of lines suppressed are written when a line comes
// after the interval has passed, and by [Handler.Flush].
type Handler struct {
	inner slog.Handler
	s     *state
}

var _ slog.Handler = (*Handler)(nil)

// state is what a Handler and those derived by WithAttrs and WithGroup
// share.
type state struct {
	cfg   Config
	root  slog.Handler // writes the "suppressed" lines, without the attrs of a derived handler
	mu    sync.Mutex   // guards kinds and flushed
	kinds map[kind]*bucket
	// flushed is when the counts were last written.
	flushed time.Time
}

type kind struct {
	level slog.Level
	msg   string
}

type bucket struct {
	tokens     float64
	refilled   time.Time
	suppressed int
}

// New returns a Handler writing to inner.
func New(inner slog.Handler, cfg Config) *Handler {
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{inner: inner, s: &state{cfg: cfg, root: inner, kinds: map[kind]*bucket{}, flushed: cfg.Now()}}
}

// Enabled implements [slog.Handler].
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// WithAttrs implements [slog.Handler]; the result shares h's buckets.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(as), s: h.s}
}

// WithGroup implements [slog.Handler]; the result shares h's buckets.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), s: h.s}
}

// Handle implements [slog.Handler]: it writes r if its kind's bucket has a
// token, and the counts of lines suppressed if the interval has passed.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	s := h.s
	now := s.cfg.Now()
	s.mu.Lock()
	var counts []slog.Record
	if now.Sub(s.flushed) >= s.cfg.Interval {
		counts = s.takeCounts(now)
	}
	k := kind{r.Level, r.Message}
	b := s.kinds[k]
	if b == nil {
		b = &bucket{tokens: float64(s.cfg.Burst), refilled: now}
		s.kinds[k] = b
	}
	b.tokens = min(float64(s.cfg.Burst), b.tokens+now.Sub(b.refilled).Seconds()*s.cfg.Rate)
	b.refilled = now
	pass := b.tokens >= 1
	if pass {
		b.tokens--
	} else {
		b.suppressed++
	}
	s.mu.Unlock()

	for _, c := range counts {
		s.root.Handle(ctx, c)
	}
	if !pass {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

// Flush writes the counts of lines suppressed since they were last
// written, at once.
func (h *Handler) Flush(ctx context.Context) {
	s := h.s
	s.mu.Lock()
	counts := s.takeCounts(s.cfg.Now())
	s.mu.Unlock()
	for _, c := range counts {
		s.root.Handle(ctx, c)
	}
}

// takeCounts returns a record per kind with lines suppressed, resets the
// counts and forgets the buckets that are full again. s.mu must be held.
func (s *state) takeCounts(now time.Time) []slog.Record {
	var out []slog.Record
	for k, b := range s.kinds {
		if b.suppressed > 0 {
			r := slog.NewRecord(now, k.level, "suppressed log lines", 0)
			r.AddAttrs(slog.String("like", k.msg), slog.Int("count", b.suppressed), slog.Duration("since", now.Sub(s.flushed)))
			out = append(out, r)
			b.suppressed = 0
			continue
		}
		if b.tokens+now.Sub(b.refilled).Seconds()*s.cfg.Rate >= float64(s.cfg.Burst) {
			delete(s.kinds, k)
		}
	}
	s.flushed = now
	slices.SortFunc(out, func(a, b slog.Record) int { return cmp.Compare(likeOf(a), likeOf(b)) })
	return out
}

// likeOf returns the "like" attribute of a "suppressed log lines" record.
func likeOf(r slog.Record) string {
	var like string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "like" {
			like = a.Value.String()
			return false
		}
		return true
	})
	return like
}
