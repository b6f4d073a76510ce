package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/fetchd/fetchd/cmd/fetchd/internal/connlimit"
	"github.com/fetchd/fetchd/cmd/fetchd/internal/logsample"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server"
)

// serve listens, serves until ctx is done, then drains: health turns
// NOT_SERVING, the main port takes no new connection or stream, fetch
// streams stop reading jobs and finish the ones they read; once they are
// done, health Watch streams end too and serve returns. After
// cfg.drainTimeout whatever is left is cut off.
func serve(ctx context.Context, cfg *config, getenv func(string) string, logger *slog.Logger) error {
	// Lines that callers cause (one per stream, call or connection) go
	// through a sampler, so that a flood of calls cannot flood the log;
	// fetchd's own lines do not.
	sampler := logsample.New(logger.Handler(), logsample.Config{})
	defer sampler.Flush(context.Background())
	callLogger := slog.New(sampler)

	reg, srvMetrics := newRegistry()
	scfg, err := cfg.serverConfig(callLogger)
	if err != nil {
		return err
	}
	scfg.Metrics = reg
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
		scfg.TracerProvider = tp
		logger.Info("tracing on", "exporter", getenv("OTEL_TRACES_EXPORTER"))
	}
	ic, err := callInterceptors(cfg, logger, callLogger, srvMetrics)
	if err != nil {
		return err
	}
	grpcOpts, err := grpcServerOptions(cfg, callLogger, ic, tp)
	if err != nil {
		return err
	}
	conns := connlimit.New(connlimit.Config{
		MaxConns: cfg.maxConnections,
		MaxPerIP: cfg.perIPConnections(),
		IsWork:   isFetchMethod,
		Logger:   callLogger,
	})
	grpcOpts = append(grpcOpts, grpc.StatsHandler(conns))

	// Closed when the fetch streams are done draining: the streams that only
	// wait for their caller (health watches, reflection) end then.
	end := make(chan struct{})
	calls := &callTracker{end: end}
	grpcOpts = append(grpcOpts, grpc.ChainStreamInterceptor(calls.intercept))

	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	lis = conns.Listen(lis)
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
	fs, err := server.NewFromConfig(scfg)
	if err != nil {
		lis.Close()
		return err
	}
	defer fs.Close()
	memLimit, restore := setMemoryLimit(getenv, fs.BodyMemory(), logger)
	defer restore()
	defer watchPeers(ctx, cfg.peers, cfg.peersInterval, nil, fs, logger)()

	gs := grpc.NewServer(grpcOpts...)
	fs.Register(gs)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(fetchv1.FetchService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	hw := &drainingHealth{Server: hs, end: end}
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

	var hp *httpPort // the HTTP/JSON port, if any
	if cfg.httpListen != "" {
		// The same interceptors as the gRPC port's fetch calls, the drain's
		// tracking last as there.
		hp, err = listenHTTP(cfg, fs, append(ic.stream[:len(ic.stream):len(ic.stream)], calls.intercept), logger, callLogger)
		if err != nil {
			lis.Close()
			return err
		}
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	logger.Info("fetchd listening", "addr", lis.Addr().String(), "concurrency", fs.Concurrency(),
		"body_memory_mib", fs.BodyMemory()>>20, "job_memory_mib", fs.JobMemory()>>20, "memory_limit_mib", memLimit>>20,
		"max_connections", cfg.maxConnections, "max_connections_per_ip", cfg.perIPConnections(),
		"tls", cfg.tlsCert != "", "mtls", cfg.tlsClientCA != "", "auth", cfg.authTokenFile != "",
		"allow_cidr", cidrList{&cfg.srv.AllowCIDRs}.String())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("draining", "timeout", cfg.drainTimeout)
	hs.Shutdown() // watchers see NOT_SERVING
	fs.Drain()
	// Stays done once the timeout has passed, for every wait below.
	deadline, cancel := context.WithTimeout(context.Background(), cfg.drainTimeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop() // GOAWAY: no new stream; the listener closes
		close(stopped)
	}()
	httpStopped := make(chan struct{})
	go func() {
		defer close(httpStopped)
		if hp != nil {
			hp.shutdown(deadline) // the same for HTTP/JSON; cut off at the deadline
		}
	}()
	select {
	case <-calls.idle():
		// Every fetch stream is done: end the health watches and the other
		// streams too, or GracefulStop would wait for them until the timeout.
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
	<-httpStopped
	<-serveErr // Serve returns nil after GracefulStop or Stop
	calls.recvs.Wait()
	return nil
}
