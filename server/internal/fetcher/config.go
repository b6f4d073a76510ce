package fetcher

import (
	"crypto/x509"
	"log/slog"
	"net"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/fetchd/fetchd/server/internal/egress"
	"github.com/fetchd/fetchd/server/internal/h1"
)

// Defaults of the [Config] fields left zero. The server documents the ones
// its configuration passes through under the same names.
const (
	DefaultConns                  = 256
	DefaultMaxRedirects           = 10
	DefaultMaxResponseHeaderBytes = h1.DefaultMaxResponseHeaderBytes
	DefaultDialTimeout            = 10 * time.Second
	DefaultTLSHandshakeTimeout    = 10 * time.Second
	DefaultIdleReadTimeout        = 30 * time.Second
	DefaultUserAgent              = "fetchd"
)

// Config configures a [Fetcher]. The zero value works: public addresses only,
// the defaults above, each applied here once to a field left zero; a
// setting that can be turned off is off when negative.
type Config struct {
	// Policy guards every request: its host name lists and ports are
	// checked on the URL of the job and of every redirect before anything
	// is resolved, and its address and port checks on every dial. Default:
	// egress.NewPolicy(), public addresses only.
	Policy *egress.Policy
	// Conns sizes the idle connection pool, normally the server's
	// concurrency. Default DefaultConns.
	Conns int
	// MaxRedirects is the most redirects followed per job; a negative
	// value follows none. Default DefaultMaxRedirects.
	MaxRedirects int
	// MaxResponseHeaderBytes caps the response header. Default
	// DefaultMaxResponseHeaderBytes (64 KiB).
	MaxResponseHeaderBytes int64
	// DialTimeout bounds each TCP connect. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds each TLS handshake. Default
	// DefaultTLSHandshakeTimeout; never more than IdleReadTimeout, which
	// covers the handshake too.
	TLSHandshakeTimeout time.Duration
	// IdleReadTimeout fails a job with ERROR_CODE_TIMEOUT when its upstream
	// connection delivers no byte for this long while the job waits for
	// the response head or reads the body, however long the job's own
	// timeout: an upstream that drips one byte a minute does not hold a
	// worker. It covers TLS connections (it watches the TCP connection
	// under TLS) and their handshake, which it bounds as a whole: a
	// handshake is a few round trips, so one longer than the idle-read
	// timeout means a stalled upstream. An HTTP/2 connection is shared: it times out, failing
	// every job on it, only when the whole connection is silent. Default
	// DefaultIdleReadTimeout; a negative value turns it off.
	IdleReadTimeout time.Duration
	// ResponseHeaderTimeout, when positive, bounds the wait for the
	// response head once the request is written. Default 0: only the job
	// timeout and IdleReadTimeout apply.
	ResponseHeaderTimeout time.Duration
	// RootCAs, when set, replaces the system roots for upstream TLS; see
	// [LoadRootCAs] to add an internal CA to the system roots.
	RootCAs *x509.CertPool
	// UserAgent is sent when the job sets none. Default DefaultUserAgent.
	UserAgent string
	// Resolver resolves host names. Default: net.DefaultResolver.
	Resolver *net.Resolver
	// TracerProvider, when set, traces each request as an HTTP client span
	// and propagates the trace context (W3C traceparent, not baggage) to
	// the upstream. Default: no tracing, no extra cost.
	TracerProvider trace.TracerProvider
	// Engine chooses what carries plain-http requests. Default EngineLean.
	Engine Engine
	// HideAddresses keeps resolved addresses out of the error messages of
	// results: every refused destination, and every host name that does
	// not resolve, gets ERROR_CODE_BLOCKED with the one message
	// [HiddenRefusal], and other messages have the addresses of their
	// connections and DNS servers cut out. The whole error is logged to
	// Logger at debug level. Default false: messages say all.
	HideAddresses bool
	// Logger gets the errors HideAddresses keeps from results. Default
	// [slog.Default].
	Logger *slog.Logger
}

// resolve fills in the defaults of the fields left zero, and turns the
// negative "off" values into the zero the code below reads as off.
func (cfg *Config) resolve() {
	if cfg.Policy == nil {
		cfg.Policy = egress.NewPolicy()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Conns <= 0 {
		cfg.Conns = DefaultConns
	}
	switch {
	case cfg.MaxRedirects == 0:
		cfg.MaxRedirects = DefaultMaxRedirects
	case cfg.MaxRedirects < 0:
		cfg.MaxRedirects = 0
	}
	if cfg.MaxResponseHeaderBytes <= 0 {
		cfg.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.TLSHandshakeTimeout <= 0 {
		cfg.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	switch {
	case cfg.IdleReadTimeout == 0:
		cfg.IdleReadTimeout = DefaultIdleReadTimeout
	case cfg.IdleReadTimeout < 0:
		cfg.IdleReadTimeout = 0
	}
	if cfg.IdleReadTimeout > 0 {
		cfg.TLSHandshakeTimeout = min(cfg.TLSHandshakeTimeout, cfg.IdleReadTimeout)
	}
	cfg.ResponseHeaderTimeout = max(cfg.ResponseHeaderTimeout, 0)
}

// Engine chooses the HTTP client engine for plain-http requests. https
// requests always go through net/http, which also speaks HTTP/2.
type Engine int

const (
	// EngineLean sends plain-http requests through [h1.Transport], which
	// costs about half the CPU of net/http per request, and anything it
	// does not carry (see [h1.Supports]) through net/http.
	EngineLean Engine = iota
	// EngineNetHTTP sends every request through net/http.
	EngineNetHTTP
)

// String returns the engine's flag name: "lean" or "net/http".
func (e Engine) String() string {
	if e == EngineNetHTTP {
		return "net/http"
	}
	return "lean"
}
