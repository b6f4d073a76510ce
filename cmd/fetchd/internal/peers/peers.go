package peers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"
)

// DefaultInterval is the period of [Watcher.Run] when [Watcher.Interval] is 0.
const DefaultInterval = 15 * time.Second

// lookupTimeout bounds one lookup (or the interval, if shorter).
const lookupTimeout = 5 * time.Second

// ErrTarget is wrapped by the error of [ParseTarget].
var ErrTarget = errors.New("peers target must be dns:///NAME or dns:///NAME:PORT")

// ParseTarget returns the DNS name of a gRPC-style target
// "dns:///NAME:PORT" (the port is optional and unused: the count is of
// addresses). An authority (dns://SERVER/NAME) is not supported.
func ParseTarget(target string) (string, error) {
	rest, ok := strings.CutPrefix(target, "dns:///")
	if !ok {
		return "", fmt.Errorf("%q: %w", target, ErrTarget)
	}
	name := rest
	if host, _, err := net.SplitHostPort(rest); err == nil {
		name = host
	}
	if name == "" || strings.ContainsAny(name, " /\t\r\n[]") {
		return "", fmt.Errorf("%q: %w", target, ErrTarget)
	}
	return name, nil
}

// Watcher keeps a count of the addresses of a DNS name up to date. Set its
// fields, call [Watcher.Update] once, then [Watcher.Run]; a Watcher is not
// for concurrent use. Name and Set are required.
type Watcher struct {
	// Name is the DNS name to look up, such as the headless Service
	// "fetchd-headless" (see [ParseTarget]).
	Name string
	// Interval is the period of lookups in [Watcher.Run]; 0 means
	// [DefaultInterval].
	Interval time.Duration
	// Lookup returns the addresses of a name; nil means
	// [net.Resolver.LookupHost] of [net.DefaultResolver]. Tests set it.
	Lookup func(ctx context.Context, name string) ([]string, error)
	// Set is called with the count after the first lookup that succeeds
	// and after each that finds another count. It must not block for long.
	Set func(n int)
	// Logger logs the counts found (info) and failed lookups (warn); nil
	// means [slog.Default].
	Logger *slog.Logger

	n int // the last count set; 0 before the first
}

// Update looks the name up once, bounded by a timeout, and returns the
// count then in force: the number of distinct addresses (at least 1), or
// the last count if the lookup failed (1 if there was none).
func (w *Watcher) Update(ctx context.Context) int {
	log := w.Logger
	if log == nil {
		log = slog.Default()
	}
	n, err := w.count(ctx)
	switch {
	case err != nil:
		log.WarnContext(ctx, "peers lookup failed; keeping the last count", "name", w.Name, "n", max(w.n, 1), "error", err)
		return max(w.n, 1)
	case w.n == 0:
		log.InfoContext(ctx, "peers", "name", w.Name, "n", n)
	case n != w.n:
		log.InfoContext(ctx, "peers changed", "name", w.Name, "n", n, "was", w.n)
	default:
		return n
	}
	w.n = n
	w.Set(n)
	return n
}

// count looks the name up and counts its distinct addresses, at least 1.
func (w *Watcher) count(ctx context.Context) (int, error) {
	lookup := w.Lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	ctx, cancel := context.WithTimeout(ctx, min(lookupTimeout, w.interval()))
	defer cancel()
	addrs, err := lookup(ctx, w.Name)
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w", w.Name, err)
	}
	seen := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		seen[a] = true
	}
	return max(len(seen), 1), nil
}

func (w *Watcher) interval() time.Duration {
	if w.Interval > 0 {
		return w.Interval
	}
	return DefaultInterval
}

// Run calls [Watcher.Update] every interval until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	tick := time.NewTicker(w.interval())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			w.Update(ctx)
		}
	}
}
