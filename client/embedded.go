package client

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server"
)

// embeddedAddr names the in-process backend in errors and results.
const embeddedAddr = "embedded"

// errEngineStopped is why a stream of a closed embedded client ends, or
// does not open.
var errEngineStopped = fmt.Errorf("%w: the embedded fetchd engine has stopped", ErrClosed)

// NewEmbedded returns a client whose one backend is a fetchd engine
// running in this process, configured by cfg as [server.NewFromConfig]
// configures fetchd: the zero Config is fetchd's defaults, with its
// default-deny egress policy (open your own ranges with
// [server.Config.AllowCIDRs]). Its error wraps [server.ErrConfig] for a
// field out of range.
//
// The client is the same [Client]: [Client.Fetch], [Client.FetchOrdered],
// windows, stream options, chunks, body writers, every result field and
// error code behave as they do against a fetchd over the network. Jobs and
// results pass in memory through the engine's own stream
// ([server.Server.ServeLocal]): no gRPC, no protobuf encoding. The options
// about the network (TLS, tokens, dial options, timeouts to connect,
// receive limits) have no effect; [WithMaxJobBytes] defaults to the
// engine's cfg.MaxRecvMsgBytes, the limit a job sent to it over gRPC would
// have. Results are handed over, not copied: the results of identical jobs
// that shared one fetch (Result.Shared) share its body, headers and error
// values, so treat those as read-only.
//
// Ending a call's ctx, or stopping its iteration, cancels the call's jobs
// in the engine; the call returns once the engine has ended them.
//
// Close stops the engine and waits until it has stopped. It drains: the
// engine takes no further job, and fetches and answers every job it has
// already taken from a call (started or queued). Each call in progress
// yields those results; if it had more jobs in flight, each gets an
// ERROR_CODE_UNAVAILABLE result and the call then ends with an error
// wrapping [ErrClosed] and [ErrUnavailable]; jobs not yet taken from its
// input get no result. A call whose jobs were all answered ends as usual.
// Its logs go to cfg.Logger; by default, only its warnings and errors go
// to slog.Default(), not a line per call.
//
// Close does not wait for the callers to read their results, but it does
// wait for fetches in progress, up to their timeouts: to cut the drain
// short, cancel the calls' contexts. Calls after Close fail with
// [ErrClosed].
func NewEmbedded(cfg server.Config, opts ...Option) (*Client, error) {
	if cfg.Logger == nil {
		// A library should not log a line per call into its host
		// program's log: only warnings and errors, such as a panic in a
		// worker, go to the default logger.
		cfg.Logger = slog.New(warnings{slog.Default().Handler()})
	}
	srv, err := server.NewFromConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client: embedded engine: %w", err)
	}
	o := defaultOptions
	o.maxJobBytes = int(cmp.Or(cfg.MaxRecvMsgBytes, server.DefaultMaxRecvMsgBytes))
	for _, opt := range opts {
		opt(&o)
	}
	return &Client{
		opts:    o,
		conns:   map[string]*pooledConn{},
		retired: map[*pooledConn]bool{},
		engine:  &engine{srv: srv},
	}, nil
}

// warnings passes on the records of warning level and above.
type warnings struct{ slog.Handler }

func (w warnings) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnings) WithAttrs(as []slog.Attr) slog.Handler { return warnings{w.Handler.WithAttrs(as)} }
func (w warnings) WithGroup(name string) slog.Handler    { return warnings{w.Handler.WithGroup(name)} }

// engine is the fetchd engine of an embedded client, seen by the client as
// the [fetchv1.FetchServiceClient] of its backend.
type engine struct {
	srv *server.Server

	mu      sync.Mutex // guards stopped and streams.Add
	stopped bool
	streams sync.WaitGroup // the goroutines serving local streams
	once    sync.Once
}

var _ fetchv1.FetchServiceClient = (*engine)(nil)

// Fetch opens a stream on the engine, served by a goroutine of the
// engine's until the stream ends. Call options have no effect.
func (e *engine) Fetch(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[fetchv1.FetchRequest, fetchv1.FetchResponse], error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil, errEngineStopped
	}
	ls := newLocalStream(ctx, e)
	e.streams.Add(1)
	go func() {
		defer e.streams.Done()
		ls.serve(e.srv)
	}()
	return ls, nil
}

// FetchBatch is not served in process: the client sends every job on
// Fetch streams.
func (e *engine) FetchBatch(context.Context, *fetchv1.FetchBatchRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[fetchv1.FetchBatchResponse], error) {
	return nil, status.Error(codes.Unimplemented, "client: the embedded engine serves Fetch streams only")
}

// isStopped reports whether stop has begun.
func (e *engine) isStopped() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stopped
}

// stop drains the engine, waits for its streams to end and closes it; see
// [NewEmbedded]. A second stop waits for the first.
func (e *engine) stop() {
	e.once.Do(func() {
		e.mu.Lock()
		e.stopped = true
		e.mu.Unlock()
		e.srv.Drain()
		e.streams.Wait()
		e.srv.Close()
	})
}
