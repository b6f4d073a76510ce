package client_test

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/fetchd/fetchd/client"
	"github.com/fetchd/fetchd/server"
)

// modes are the ways a test's client reaches fetchd: over gRPC to a
// backend on loopback, or the engine embedded in the test's process
// ([client.NewEmbedded]). Tests of the client's behaviour run in both;
// tests of the network itself (connecting, TLS, DNS, broken connections)
// run over gRPC only.
var modes = []string{"grpc", "embedded"}

// eachMode runs f as a subtest for each of modes.
func eachMode(t *testing.T, f func(t *testing.T, mode string)) {
	t.Helper()
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { f(t, mode) })
	}
}

// fetchdClient returns a client of a fetchd configured by srvOpts (loopback
// allowed), reached as mode says, with opts: for "grpc", a client of a new
// startBackend; for "embedded", newEmbedded. Everything stops when tb ends.
func fetchdClient(tb testing.TB, mode string, srvOpts []server.Option, opts ...client.Option) *client.Client {
	tb.Helper()
	switch mode {
	case "grpc":
		return newClient(tb, startBackend(tb, srvOpts...).addr, opts...)
	case "embedded":
		return newEmbedded(tb, srvOpts, opts...)
	}
	tb.Fatalf("unknown mode %q", mode)
	return nil
}

// newEmbedded returns an embedded client whose engine is configured as
// startBackend configures its server, and closes it when tb ends.
func newEmbedded(tb testing.TB, srvOpts []server.Option, opts ...client.Option) *client.Client {
	tb.Helper()
	cfg := server.Config{
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:     slog.New(slog.DiscardHandler),
	}
	for _, o := range srvOpts {
		o(&cfg)
	}
	opts = append([]client.Option{client.WithBackoff(10*time.Millisecond, 200*time.Millisecond)}, opts...)
	c, err := client.NewEmbedded(cfg, opts...)
	if err != nil {
		tb.Fatalf("NewEmbedded: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
