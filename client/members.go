package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

// DefaultResolveInterval is how often a call re-resolves a dns:/// target
// by default ([WithResolveInterval]).
const DefaultResolveInterval = 30 * time.Second

// members follows the backends that a target's resolver names: gRPC's own
// DNS resolver for dns:///, or a [WithResolver] one. It is the
// resolver.ClientConn the resolver reports to; the Client owns it, builds
// its resolver on the first call, and closes it on Close.
type members struct {
	target  string
	builder resolver.Builder
	onAddrs func([]string) // called with each new set of addresses, without mu

	mu      sync.Mutex // guards the fields below
	r       resolver.Resolver
	addrs   []string      // the last non-empty resolution, sorted
	err     error         // the last error, while nothing resolved
	first   chan struct{} // closed at the first resolution or error
	changed chan struct{} // closed, and replaced, when addrs changes
	closed  bool
}

func newMembers(target string, b resolver.Builder, onAddrs func([]string)) *members {
	return &members{target: target, builder: b, onAddrs: onAddrs,
		first: make(chan struct{}), changed: make(chan struct{})}
}

// current returns the backends' addresses, building the resolver on first
// use and waiting up to timeout for its first answer, and a channel closed
// at the next change.
func (ms *members) current(ctx context.Context, timeout time.Duration) ([]string, <-chan struct{}, error) {
	if err := ms.start(); err != nil {
		return nil, nil, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ms.first:
	case <-t.C:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if len(ms.addrs) > 0 {
		return ms.addrs, ms.changed, nil
	}
	err := ms.err
	if err == nil {
		err = fmt.Errorf("no address within the %v connect timeout", timeout)
	}
	return nil, nil, fmt.Errorf("%w: resolve %s: %w", ErrUnreachable, ms.target, err)
}

// start builds the resolver once.
func (ms *members) start() error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.closed {
		return ErrClosed
	}
	if ms.r != nil {
		return nil
	}
	u, err := url.Parse(ms.target)
	if err != nil {
		return fmt.Errorf("%w %q: %w", ErrBadTarget, ms.target, err)
	}
	// Build may report its first answer at once, through UpdateState,
	// which takes mu: build without it.
	ms.mu.Unlock()
	r, err := ms.builder.Build(resolver.Target{URL: *u}, ms, resolver.BuildOptions{DisableServiceConfig: true})
	ms.mu.Lock()
	if err != nil {
		return fmt.Errorf("client: resolve %s: %w", ms.target, err)
	}
	if ms.closed || ms.r != nil {
		r.Close() // closed, or built by another call meanwhile
		if ms.closed {
			return ErrClosed
		}
		return nil
	}
	ms.r = r
	return nil
}

// resolveNow asks the resolver to look again (gRPC's DNS resolver does so
// at most every 30 s).
func (ms *members) resolveNow() {
	ms.mu.Lock()
	r := ms.r
	ms.mu.Unlock()
	if r != nil {
		r.ResolveNow(resolver.ResolveNowOptions{})
	}
}

func (ms *members) close() {
	ms.mu.Lock()
	r := ms.r
	ms.closed, ms.r = true, nil
	ms.mu.Unlock()
	if r != nil {
		r.Close()
	}
}

// UpdateState implements resolver.ClientConn. An empty resolution is taken
// as an error: the backends are kept, rather than every call left with none.
func (ms *members) UpdateState(s resolver.State) error {
	var addrs []string
	for _, e := range s.Endpoints {
		for _, a := range e.Addresses {
			addrs = append(addrs, a.Addr)
		}
	}
	for _, a := range s.Addresses {
		addrs = append(addrs, a.Addr)
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	if len(addrs) == 0 {
		ms.ReportError(errors.New("the resolver returned no address"))
		return nil
	}
	ms.mu.Lock()
	if slices.Equal(addrs, ms.addrs) {
		ms.mu.Unlock()
		return nil
	}
	ms.addrs, ms.err = addrs, nil
	ms.signalLocked()
	ms.mu.Unlock()
	ms.onAddrs(addrs)
	return nil
}

// ReportError implements resolver.ClientConn: the error is kept for calls
// that find no address, and the last addresses stay.
func (ms *members) ReportError(err error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if len(ms.addrs) == 0 {
		ms.err = err
		select {
		case <-ms.first:
		default:
			close(ms.first)
		}
	}
}

// NewAddress implements the deprecated part of resolver.ClientConn.
func (ms *members) NewAddress(addrs []resolver.Address) {
	ms.UpdateState(resolver.State{Addresses: addrs})
}

// ParseServiceConfig implements resolver.ClientConn; the client asks for
// no service config, and uses none.
func (ms *members) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{Err: errors.New("client: service configs are not used")}
}

// signalLocked wakes the calls waiting for a change. ms.mu must be held.
func (ms *members) signalLocked() {
	select {
	case <-ms.first:
	default:
		close(ms.first)
	}
	close(ms.changed)
	ms.changed = make(chan struct{})
}

// watch returns the latest addresses and the channel of the next change.
func (ms *members) watch() ([]string, <-chan struct{}) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.addrs, ms.changed
}
