package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server"
)

// serve listens, serves until ctx is done, then drains: health turns
// NOT_SERVING, streams stop taking jobs and finish the ones they started,
// and after cfg.drainTimeout whatever is left is cut off.
func serve(ctx context.Context, cfg *config, logger *slog.Logger) error {
	lis, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fs := server.New(cfg.serverOptions(logger)...)
	defer fs.Close()

	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(codeToLevel),
	}
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(
			logging.UnaryServerInterceptor(interceptorLogger(logger), logOpts...),
			recovery.UnaryServerInterceptor(),
		),
		grpc.ChainStreamInterceptor(
			logging.StreamServerInterceptor(interceptorLogger(logger), logOpts...),
			recovery.StreamServerInterceptor(),
		),
		grpc.MaxRecvMsgSize(cfg.maxRecvMsgBytes),
		grpc.MaxConcurrentStreams(uint32(min(cfg.maxConcurrentStreams, 1<<31))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    2 * time.Minute,
			Timeout: 20 * time.Second,
		}),
	)
	fs.Register(gs)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(fetchv1.FetchService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	logger.Info("fetchd listening", "addr", lis.Addr().String(),
		"concurrency", cfg.concurrency, "allow_cidr", cidrList{&cfg.allowCIDRs}.String())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("draining", "timeout", cfg.drainTimeout)
	hs.Shutdown()
	fs.Drain()
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(cfg.drainTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
		logger.Info("drained")
	case <-timer.C:
		logger.Warn("drain timeout: stopping with streams still open")
		gs.Stop()
		<-stopped
	}
	<-serveErr // Serve returns nil after GracefulStop or Stop
	return nil
}

// codeToLevel logs ordinary call endings at debug level, since the fetch
// service logs its own line per stream.
func codeToLevel(c codes.Code) logging.Level {
	switch c {
	case codes.OK, codes.Canceled, codes.Unavailable:
		return logging.LevelDebug
	}
	return logging.DefaultServerCodeToLevel(c)
}

// interceptorLogger adapts slog to go-grpc-middleware's logging.Logger.
func interceptorLogger(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}
