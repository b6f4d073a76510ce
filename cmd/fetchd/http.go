package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"

	"github.com/fetchd/fetchd/cmd/fetchd/internal/httpapi"
	"github.com/fetchd/fetchd/server"
)

// httpPort is the HTTP/JSON port of -http-listen, serving until shut down.
type httpPort struct {
	srv  *http.Server
	addr string
	done chan struct{} // closed when Serve has returned
}

// listenHTTP serves FetchBatch as HTTP/JSON on cfg.httpListen: the handler
// of fs, under the stream interceptors (the gRPC port's chain, and the
// drain's call tracking), over HTTP/1.1 and HTTP/2 (h2c in plaintext, h2
// with -tls-cert, and -tls-client-ca as on the gRPC port).
func listenHTTP(cfg *config, fs *server.Server, interceptors []grpc.StreamServerInterceptor, logger, callLogger *slog.Logger) (*httpPort, error) {
	h, err := httpapi.New(httpapi.Config{
		Register:        fs.Register,
		Interceptors:    append([]grpc.StreamServerInterceptor{markHTTP}, interceptors...),
		MaxRequestBytes: int64(cfg.maxRecvMsgBytes),
	})
	if err != nil {
		return nil, err
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	srv := &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute, // as the gRPC port's MaxConnectionIdle
		MaxHeaderBytes:    64 << 10,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: int(min(cfg.maxConcurrentStreams, 1<<20))},
		ErrorLog:          slog.NewLogLogger(callLogger.Handler(), slog.LevelDebug),
	}
	if cfg.tlsCert != "" {
		tc, err := serverTLS(cfg)
		if err != nil {
			return nil, err
		}
		srv.TLSConfig = tc
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	lis, err := net.Listen("tcp", cfg.httpListen)
	if err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	p := &httpPort{srv: srv, addr: lis.Addr().String(), done: make(chan struct{})}
	lis = newCapListener(lis, cfg.maxConnections, cfg.perIPConnections(), callLogger)
	useTLS := srv.TLSConfig != nil // ServeTLS writes srv.TLSConfig
	go func() {
		defer close(p.done)
		var err error
		if useTLS {
			err = srv.ServeTLS(lis, "", "")
		} else {
			err = srv.Serve(lis)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server", "err", err)
		}
	}()
	logger.Info("http listening", "addr", p.addr, "path", httpapi.Path, "tls", useTLS)
	return p, nil
}

// shutdown stops the port: its listener closes, idle connections close,
// HTTP/2 ones get a GOAWAY, and it waits for the calls in progress until
// ctx is done, then closes every connection, which cancels what is left.
func (p *httpPort) shutdown(ctx context.Context) {
	if err := p.srv.Shutdown(ctx); err != nil {
		p.srv.Close()
	}
	<-p.done
}

// markHTTP, outermost, marks the call's log line as one of the HTTP/JSON
// port (transport=http), which the logging interceptor otherwise logs as
// any FetchBatch call.
func markHTTP(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = logging.InjectFields(ss.Context(), logging.Fields{"transport", "http"})
	return handler(srv, w)
}
