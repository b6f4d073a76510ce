package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/fetchd/fetchd/cmd/fetchd/internal/callerlimit"
	"github.com/fetchd/fetchd/cmd/fetchd/internal/recvlimit"
	"github.com/fetchd/fetchd/cmd/fetchd/internal/tokenauth"
)

// grpcServerOptions assembles the gRPC server's options from cfg: TLS (or
// plaintext) credentials whose connections -recv-memory watches, limits,
// keepalive, tracing, and the interceptor chains ic.
func grpcServerOptions(cfg *config, callLogger *slog.Logger, ic interceptorChains, tp trace.TracerProvider) ([]grpc.ServerOption, error) {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.maxRecvMsgBytes),
		grpc.MaxConcurrentStreams(uint32(min(cfg.maxConcurrentStreams, 1<<31))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    2 * time.Minute,
			Timeout: 20 * time.Second,
			// An idle connection gives its -max-connections slot back,
			// if no new connection has taken it before.
			MaxConnectionIdle: 5 * time.Minute,
		}),
		// The TLS handshake, the HTTP/2 preface and the first SETTINGS
		// frame must come within this (a slot held meanwhile is the
		// first to go to a new connection).
		grpc.ConnectionTimeout(5 * time.Second),
	}
	// Every connection is watched, after TLS, for the request bytes gRPC
	// holds in unfinished messages: -recv-memory across connections.
	creds := insecure.NewCredentials()
	if cfg.tlsCert != "" {
		tc, err := serverTLS(cfg)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	recv := recvlimit.New(recvlimit.Config{
		Budget:     cfg.recvMemory,
		MaxStreams: max(2*int(min(cfg.maxConcurrentStreams, 1<<20)), recvlimit.DefaultMaxStreams),
		Logger:     callLogger,
	})
	opts = append(opts, grpc.Creds(recv.Credentials(creds)))
	if tp != nil {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tp),
			otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		)))
	}

	return append(opts, grpc.ChainUnaryInterceptor(ic.unary...), grpc.ChainStreamInterceptor(ic.stream...)), nil
}

// interceptorChains are the interceptors of every call, in order: of the
// gRPC port, and of the HTTP/JSON port for its streams.
type interceptorChains struct {
	unary  []grpc.UnaryServerInterceptor
	stream []grpc.StreamServerInterceptor
}

// callInterceptors returns the interceptor chains of cfg: metrics, logging,
// auth and rate limit (all but health), and recovery last. The logging
// interceptor logs to callLogger, the sampled logger of lines callers cause.
func callInterceptors(cfg *config, logger, callLogger *slog.Logger, srvMetrics *grpcprom.ServerMetrics) (interceptorChains, error) {
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(codeToLevel),
	}
	unary := []grpc.UnaryServerInterceptor{
		srvMetrics.UnaryServerInterceptor(),
		logging.UnaryServerInterceptor(interceptorLogger(callLogger), logOpts...),
	}
	stream := []grpc.StreamServerInterceptor{
		srvMetrics.StreamServerInterceptor(),
		logging.StreamServerInterceptor(interceptorLogger(callLogger), logOpts...),
	}
	if cfg.authTokenFile != "" {
		tokens, err := tokenauth.Load(cfg.authTokenFile)
		if err != nil {
			return interceptorChains{}, err
		}
		if cfg.tlsCert == "" {
			logger.Warn("bearer tokens are required but travel in plaintext: serve with -tls-cert and -tls-key")
		}
		af := tokens.AuthFunc()
		unary = append(unary, selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(af), notHealth))
		stream = append(stream, selector.StreamServerInterceptor(auth.StreamServerInterceptor(af), notHealth))
	}
	if cfg.rateLimit > 0 {
		l := callerlimit.New(cfg.rateLimit, cfg.rateBurst)
		unary = append(unary, selector.UnaryServerInterceptor(ratelimit.UnaryServerInterceptor(l), notHealth))
		stream = append(stream, selector.StreamServerInterceptor(ratelimit.StreamServerInterceptor(l), notHealth))
	}
	unary = append(unary, recovery.UnaryServerInterceptor())
	stream = append(stream, recovery.StreamServerInterceptor())
	return interceptorChains{unary: unary, stream: stream}, nil
}

// notHealth exempts grpc.health.v1 from authentication and the rate limit,
// so that load balancers and Kubernetes probes need no token and keep
// working when callers behind the same address (a NAT) spend its bucket.
// Reflection and the fetch service need a token and are rate limited.
var notHealth = selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
	return c.Service != healthpb.Health_ServiceDesc.ServiceName
})

// serverTLS loads the server certificate and, for mutual TLS, the client
// CA.
func serverTLS(cfg *config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("load -tls-cert/-tls-key: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.tlsClientCA != "" {
		pem, err := os.ReadFile(cfg.tlsClientCA)
		if err != nil {
			return nil, fmt.Errorf("read -tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-tls-client-ca %s: no PEM certificate found", cfg.tlsClientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
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
