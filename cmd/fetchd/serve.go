package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server"
)

// serve listens, serves until ctx is done, then drains: health turns
// NOT_SERVING, the main port takes no new connection or stream, fetch
// streams stop reading jobs and finish the ones they read; once they are
// done, health Watch streams end too and serve returns. After
// cfg.drainTimeout whatever is left is cut off.
func serve(ctx context.Context, cfg *config, getenv func(string) string, logger *slog.Logger) error {
	reg, srvMetrics := newRegistry()
	sopts, err := cfg.serverOptions(logger)
	if err != nil {
		return err
	}
	sopts = append(sopts, server.WithMetrics(reg))
	var tp trace.TracerProvider // nil: no tracing
	if tracingEnabled(getenv) {
		sdkTP, err := newTracerProvider(ctx)
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			sdkTP.Shutdown(sctx)
		}()
		tp = sdkTP
		sopts = append(sopts, server.WithTracerProvider(tp))
		logger.Info("tracing on", "exporter", getenv("OTEL_TRACES_EXPORTER"))
	}
	grpcOpts, err := grpcServerOptions(cfg, logger, srvMetrics, tp)
	if err != nil {
		return err
	}

	calls := &callTracker{}
	grpcOpts = append(grpcOpts, grpc.ChainStreamInterceptor(calls.intercept))

	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if cfg.maxConnections > 0 {
		lis = netutil.LimitListener(lis, cfg.maxConnections)
	}
	if cfg.metricsListen != "" {
		stop, err := serveMetrics(ctx, cfg.metricsListen, reg, logger)
		if err != nil {
			lis.Close()
			return err
		}
		defer stop()
	}
	if cfg.pprofListen != "" {
		stop, err := servePprof(cfg.pprofListen, logger)
		if err != nil {
			lis.Close()
			return err
		}
		defer stop()
	}
	fs := server.New(sopts...)
	defer fs.Close()

	gs := grpc.NewServer(grpcOpts...)
	fs.Register(gs)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(fetchv1.FetchService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	hw := &drainingHealth{Server: hs, end: make(chan struct{})}
	defer hw.endWatches()
	healthpb.RegisterHealthServer(gs, hw)
	reflection.Register(gs)
	srvMetrics.InitializeMetrics(gs)

	if cfg.healthListen != "" {
		// Kubernetes gRPC probes speak no TLS: serve health alone, in
		// plaintext, on its own port.
		hlis, err := net.Listen("tcp", cfg.healthListen)
		if err != nil {
			lis.Close()
			return fmt.Errorf("health listen: %w", err)
		}
		hgs := grpc.NewServer()
		healthpb.RegisterHealthServer(hgs, hw)
		healthDone := make(chan struct{})
		go func() {
			defer close(healthDone)
			hgs.Serve(hlis)
		}()
		defer func() {
			hgs.Stop()
			<-healthDone
		}()
		logger.Info("health listening", "addr", hlis.Addr().String())
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	logger.Info("fetchd listening", "addr", lis.Addr().String(), "concurrency", cfg.concurrency,
		"tls", cfg.tlsCert != "", "mtls", cfg.tlsClientCA != "", "auth", cfg.authTokenFile != "",
		"allow_cidr", cidrList{&cfg.allowCIDRs}.String())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("draining", "timeout", cfg.drainTimeout)
	hs.Shutdown() // watchers see NOT_SERVING
	fs.Drain()
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop() // GOAWAY: no new stream; the listener closes
		close(stopped)
	}()
	// Stays done once the timeout has passed, for both waits below.
	deadline, cancel := context.WithTimeout(context.Background(), cfg.drainTimeout)
	defer cancel()
	select {
	case <-calls.idle():
		// Every stream but the health watches is done: end those too, or
		// GracefulStop would wait for them until the timeout.
		hw.endWatches()
	case <-deadline.Done():
	}
	select {
	case <-stopped:
		logger.Info("drained")
	case <-deadline.Done():
		logger.Warn("drain timeout: stopping with streams still open")
		gs.Stop()
		<-stopped
	}
	<-serveErr // Serve returns nil after GracefulStop or Stop
	return nil
}

// callTracker counts the open streams other than health watches: the fetch
// streams, and reflection's.
type callTracker struct {
	mu     sync.Mutex    // guards open and idleCh
	open   int           // streams in their handler
	idleCh chan struct{} // made by idle; closed when open drops to 0
}

// intercept is a stream interceptor that counts every stream but
// Health/Watch while its handler runs.
func (c *callTracker) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod == healthpb.Health_Watch_FullMethodName {
		return handler(srv, ss)
	}
	c.mu.Lock()
	c.open++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.open--
		if c.open == 0 && c.idleCh != nil {
			close(c.idleCh)
			c.idleCh = nil
		}
	}()
	return handler(srv, ss)
}

// idle returns a channel closed once no counted stream is open: at once if
// none is now. Call it once, when the server drains.
func (c *callTracker) idle() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	if c.open == 0 {
		close(ch)
	} else {
		c.idleCh = ch
	}
	return ch
}

// drainingHealth is the health service of both ports. Its Watch streams
// follow [health.Server]'s, and end with UNAVAILABLE once endWatches is
// called, after they have sent the final status (NOT_SERVING once the
// server drains).
type drainingHealth struct {
	*health.Server
	end     chan struct{} // closed by endWatches
	endOnce sync.Once
}

// endWatches ends every Watch stream, current and future.
func (h *drainingHealth) endWatches() { h.endOnce.Do(func() { close(h.end) }) }

// Watch implements grpc.health.v1.Health.Watch.
func (h *drainingHealth) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var wg sync.WaitGroup
	returned := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-h.end:
			cancel()
		case <-returned:
		}
	}()
	defer wg.Wait()
	defer close(returned)

	ws := &watchStream{Health_WatchServer: stream, ctx: ctx}
	err := h.Server.Watch(req, ws)
	select {
	case <-h.end:
	default:
		return err
	}
	if stream.Context().Err() != nil {
		return err
	}
	// Watch may have seen the end before the last change of status: send
	// it, so that the watcher learns NOT_SERVING before the stream ends.
	if resp, cerr := h.Server.Check(stream.Context(), req); cerr == nil && (!ws.sent || resp.GetStatus() != ws.last) {
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return status.Error(codes.Unavailable, "fetchd has drained; the health watch ends")
}

// watchStream is a Watch stream with the context that endWatches cancels,
// which remembers the last status sent.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx  context.Context
	sent bool
	last healthpb.HealthCheckResponse_ServingStatus
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(r *healthpb.HealthCheckResponse) error {
	w.sent, w.last = true, r.GetStatus()
	return w.Health_WatchServer.Send(r)
}
