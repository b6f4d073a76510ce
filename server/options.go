package server

import (
	"crypto/x509"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/fetchd/fetchd/server/internal/egress"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

// Defaults of the [Option] values. The stream window and queue follow the
// concurrency unless set: the window is the larger of [DefaultStreamWindow]
// and 2 x the concurrency, the queue the larger of [DefaultStreamQueue] and
// 16 x the window (512 and 8192 at the default concurrency of 256).
const (
	DefaultConcurrency            = 256
	DefaultStreamWindow           = 512 // the least default window; see [WithStreamWindow]
	DefaultMaxBodyBytes           = 3 << 20
	DefaultTimeout                = 30 * time.Second
	DefaultMaxTimeout             = 5 * time.Minute
	DefaultMaxRedirects           = 10
	DefaultMaxResponseHeaderBytes = 64 << 10
	DefaultUserAgent              = "fetchd"
	DefaultStreamQueue            = 8192 // the least default queue; see [WithStreamQueue]
	DefaultIdleReadTimeout        = 30 * time.Second
	DefaultHostConcurrency        = 16
	DefaultRetryAttempts          = 3
	DefaultMaxRetryAttempts       = 10
	DefaultRetryBackoff           = 250 * time.Millisecond
	DefaultMaxRetryBackoff        = 10 * time.Second
	DefaultMaxRetryAfter          = 30 * time.Second
)

type options struct {
	concurrency            int
	streamWindow           int
	maxBodyBytes           int64
	defaultTimeout         time.Duration
	maxTimeout             time.Duration
	maxRedirects           int
	maxResponseHeaderBytes int64
	allowCIDRs             []netip.Prefix
	denyCIDRs              []netip.Prefix
	allowPrivate           bool
	allowPorts             []uint16
	allowHosts             []string
	denyHosts              []string
	idleReadTimeout        time.Duration
	rootCAs                *x509.CertPool
	userAgent              string
	logger                 *slog.Logger
	registerer             prometheus.Registerer
	tracerProvider         trace.TracerProvider
	streamQueue            int
	hostConcurrency        int
	hostRate               float64
	dedup                  bool
	retryAttempts          int
	maxRetryAttempts       int
	retryBackoff           time.Duration
	maxRetryBackoff        time.Duration
	maxRetryAfter          time.Duration
	leanHTTP               bool
}

var defaultOptions = options{
	concurrency:            DefaultConcurrency,
	maxBodyBytes:           DefaultMaxBodyBytes,
	defaultTimeout:         DefaultTimeout,
	maxTimeout:             DefaultMaxTimeout,
	maxRedirects:           DefaultMaxRedirects,
	maxResponseHeaderBytes: DefaultMaxResponseHeaderBytes,
	userAgent:              DefaultUserAgent,
	idleReadTimeout:        DefaultIdleReadTimeout,
	hostConcurrency:        DefaultHostConcurrency,
	dedup:                  true,
	retryAttempts:          DefaultRetryAttempts,
	maxRetryAttempts:       DefaultMaxRetryAttempts,
	retryBackoff:           DefaultRetryBackoff,
	maxRetryBackoff:        DefaultMaxRetryBackoff,
	maxRetryAfter:          DefaultMaxRetryAfter,
	leanHTTP:               true,
}

// egressNames are what a refused job's message calls the egress options:
// the fetchd flags, which its operators set, each the counterpart of one
// option (-allow-cidr is [WithAllowCIDRs]). A message reads "10.0.0.0/8
// (private); -allow-private or -allow-cidr opens it".
var egressNames = egress.Names{
	AllowCIDRs:   "-allow-cidr",
	DenyCIDRs:    "-deny-cidr",
	AllowPrivate: "-allow-private",
	AllowPorts:   "-allow-port",
	AllowHosts:   "-allow-host",
	DenyHosts:    "-deny-host",
}

// Option configures a [Server].
type Option func(*options)

// WithConcurrency sets the size of the worker pool: the most fetches in
// flight at once, across all streams. Values below 1 are ignored. Default
// [DefaultConcurrency] (256).
func WithConcurrency(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.concurrency = n
		}
	}
}

// WithStreamWindow sets each stream's window: the most jobs one stream may
// have in flight plus results waiting to be sent. A full window stops the
// stream from reading more jobs, so a window below the concurrency keeps
// one stream from using the whole pool. 0 means the default; negative
// values are ignored. Default: 2 x the concurrency, and at least
// [DefaultStreamWindow] (512).
func WithStreamWindow(n int) Option {
	return func(o *options) {
		if n >= 0 {
			o.streamWindow = n
		}
	}
}

// WithStreamQueue sets how many jobs one stream may have read and not yet
// started: jobs waiting for a busy or rate-limited host. They are cheap
// (no goroutine, no result yet); a full queue stops the stream from reading
// more. 0 means the default; negative values are ignored. Default: 16 x
// the stream window, and at least [DefaultStreamQueue] (8192).
func WithStreamQueue(n int) Option {
	return func(o *options) {
		if n >= 0 {
			o.streamQueue = n
		}
	}
}

// resolve fills in the defaults that depend on other options.
func (o *options) resolve() {
	o.defaultTimeout = min(o.defaultTimeout, o.maxTimeout)
	if o.streamWindow == 0 {
		o.streamWindow = max(DefaultStreamWindow, 2*o.concurrency)
	}
	if o.streamQueue == 0 {
		o.streamQueue = max(DefaultStreamQueue, 16*o.streamWindow)
	}
}

// WithHostConcurrency caps the fetches in flight to one host (by URL host
// name), across all streams; 0 means no cap. A stream may ask for a lower
// cap for itself. Negative values are ignored. Default
// [DefaultHostConcurrency] (16).
func WithHostConcurrency(n int) Option {
	return func(o *options) {
		if n >= 0 {
			o.hostConcurrency = n
		}
	}
}

// WithHostRate limits the requests per second sent to one host, across all
// streams (a token bucket with a burst of one second's worth); 0 means no
// limit. A job waiting for a token holds no pool slot. Default 0.
func WithHostRate(perSecond float64) Option {
	return func(o *options) {
		if perSecond >= 0 {
			o.hostRate = perSecond
		}
	}
}

// WithDedup makes identical GET and HEAD jobs in flight at the same time
// (same URL, headers and body cap) share one fetch; each still gets its own
// result. A stream may turn it off for itself. Default true.
func WithDedup(on bool) Option {
	return func(o *options) { o.dedup = on }
}

// WithRetryAttempts sets the attempts per job, the first included, of jobs
// that ask for no retry policy (1: no retries), and the most any job may
// ask for. Values below 1 are ignored. Defaults [DefaultRetryAttempts] (3)
// and [DefaultMaxRetryAttempts] (10).
func WithRetryAttempts(def, max int) Option {
	return func(o *options) {
		if max >= 1 {
			o.maxRetryAttempts = max
		}
		if def >= 1 {
			o.retryAttempts = min(def, o.maxRetryAttempts)
		}
	}
}

// WithRetryBackoff sets the backoff between attempts: base doubling up to
// max, with jitter. Default [DefaultRetryBackoff] (250ms) to
// [DefaultMaxRetryBackoff] (10s).
func WithRetryBackoff(base, max time.Duration) Option {
	return func(o *options) {
		if base > 0 {
			o.retryBackoff = base
		}
		if max >= o.retryBackoff {
			o.maxRetryBackoff = max
		}
	}
}

// WithMaxRetryAfter caps the Retry-After an upstream may ask for; a longer
// one is waited only this long. Default [DefaultMaxRetryAfter] (30s).
func WithMaxRetryAfter(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.maxRetryAfter = d
		}
	}
}

// WithMaxBodyBytes caps the response body returned per job; longer bodies
// are cut and marked truncated. Keep it below the callers' gRPC receive
// limit (4 MiB by default in grpc-go). Values below 1 are ignored. Default
// [DefaultMaxBodyBytes] (3 MiB).
func WithMaxBodyBytes(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.maxBodyBytes = n
		}
	}
}

// WithDefaultTimeout sets the timeout of jobs that set none. Values below
// 1ns are ignored; it is clamped to the maximum timeout. Default
// [DefaultTimeout] (30s).
func WithDefaultTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.defaultTimeout = d
		}
	}
}

// WithMaxTimeout sets the longest timeout a job may ask for; a job asking
// for more is an invalid request. Values below 1ns are ignored. Default
// [DefaultMaxTimeout] (5m).
func WithMaxTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.maxTimeout = d
		}
	}
}

// WithMaxRedirects sets the most redirects followed per job; 0 follows
// none. Negative values are ignored. Default [DefaultMaxRedirects] (10).
func WithMaxRedirects(n int) Option {
	return func(o *options) {
		if n >= 0 {
			o.maxRedirects = n
		}
	}
}

// WithMaxResponseHeaderBytes caps the size of an upstream's response
// header; a larger one is an ERROR_CODE_BAD_RESPONSE. Values below 1 are
// ignored. Default [DefaultMaxResponseHeaderBytes] (64 KiB).
func WithMaxResponseHeaderBytes(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.maxResponseHeaderBytes = n
		}
	}
}

// WithAllowCIDRs opens address ranges that the egress policy denies by
// default, such as 10.0.0.0/8 for internal upstreams or 127.0.0.0/8 for
// tests. A cloud metadata address (169.254.169.254, 168.63.129.16,
// 100.100.100.200, fd00:ec2::/32, fd20:ce::254 and the others) opens only
// to a range inside its own entry, such as 168.63.129.16/32, never to a
// wider one. It adds to earlier calls. Default: none; only public
// addresses.
func WithAllowCIDRs(prefixes ...netip.Prefix) Option {
	return func(o *options) { o.allowCIDRs = append(o.allowCIDRs, prefixes...) }
}

// WithDenyCIDRs refuses address ranges even when they are public or opened
// by [WithAllowCIDRs] or [WithAllowPrivate]. It adds to earlier calls.
// Default: none.
func WithDenyCIDRs(prefixes ...netip.Prefix) Option {
	return func(o *options) { o.denyCIDRs = append(o.denyCIDRs, prefixes...) }
}

// WithAllowPrivate opens the private ranges (10/8, 172.16/12, 192.168/16,
// CGNAT 100.64/10 and fc00::/7), but not loopback, link-local or the cloud
// metadata addresses inside them (100.100.100.200, fd00:ec2::/32,
// fd20:ce::254, ...), for deployments whose upstreams are internal.
// Default false.
func WithAllowPrivate(on bool) Option {
	return func(o *options) { o.allowPrivate = on }
}

// WithAllowPorts refuses every destination port but these, on the URL and
// on every redirect hop. It adds to earlier calls. Default: all ports.
func WithAllowPorts(ports ...uint16) Option {
	return func(o *options) { o.allowPorts = append(o.allowPorts, ports...) }
}

// WithAllowHosts refuses every host name that matches none of the patterns
// ("example.com", or "*.example.com" for its subdomains), checked on the URL
// and every redirect hop. Patterns must come from [ParseHostPatterns]. It
// adds to earlier calls. Default: every host.
func WithAllowHosts(patterns ...string) Option {
	return func(o *options) { o.allowHosts = append(o.allowHosts, patterns...) }
}

// WithDenyHosts refuses host names matching the patterns, even when an
// allow list matches them too. Patterns must come from
// [ParseHostPatterns]. It adds to earlier calls. Default: none.
func WithDenyHosts(patterns ...string) Option {
	return func(o *options) { o.denyHosts = append(o.denyHosts, patterns...) }
}

// ParseHostPatterns validates and normalises host name patterns for
// [WithAllowHosts] and [WithDenyHosts]: each element holds one or more
// separated by commas or spaces.
func ParseHostPatterns(list ...string) ([]string, error) { return egress.ParseHostPatterns(list...) }

// WithIdleReadTimeout fails a job with ERROR_CODE_TIMEOUT when its upstream
// sends nothing for this long, headers or body, however long the job's own
// timeout; 0 turns it off. Negative values are ignored. Default
// [DefaultIdleReadTimeout] (30s).
func WithIdleReadTimeout(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.idleReadTimeout = d
		}
	}
}

// WithLeanHTTP chooses the engine for plain-http upstreams: on, a lean
// HTTP/1.1 client that writes and reads on the worker's goroutine and costs
// about half of net/http's CPU per request; off, net/http. https upstreams,
// HTTP/2 included, always use net/http. Both pass the same egress, redirect,
// timeout and hostile-upstream tests. Default true.
func WithLeanHTTP(on bool) Option {
	return func(o *options) { o.leanHTTP = on }
}

// LoadRootCAs returns the system roots plus the certificates in a PEM
// file, for [WithUpstreamRootCAs].
func LoadRootCAs(pemFile string) (*x509.CertPool, error) { return fetcher.LoadRootCAs(pemFile) }

// WithUpstreamRootCAs sets the certificate authorities trusted for upstream
// TLS. Default: the system roots.
func WithUpstreamRootCAs(pool *x509.CertPool) Option {
	return func(o *options) { o.rootCAs = pool }
}

// WithUserAgent sets the User-Agent sent with jobs that set none. Empty
// values are ignored. Default [DefaultUserAgent] ("fetchd").
func WithUserAgent(ua string) Option {
	return func(o *options) {
		if ua != "" {
			o.userAgent = ua
		}
	}
}

// WithMetrics registers the server's fetch metrics with reg: jobs by
// outcome (fetchd_jobs_total{code}), fetch durations, fetches in flight,
// time waiting for a pool slot, bytes fetched, egress blocks and streams in
// flight. [New] panics, as [prometheus.Registerer.MustRegister] does, if
// they are registered already. Default: not exported.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(o *options) { o.registerer = reg }
}

// WithTracerProvider traces every upstream request as an HTTP client span,
// a child of the gRPC call's span when the call carries one, and propagates
// the trace context to the upstream (W3C traceparent). Default: no tracing.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// WithLogger sets the logger for per-stream summaries and worker panics.
// Default [slog.Default].
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// ParseCIDRs parses address ranges for [WithAllowCIDRs]: each element holds
// one or more CIDRs separated by commas or spaces; a bare address is a
// single-address range.
func ParseCIDRs(list ...string) ([]netip.Prefix, error) { return egress.ParseCIDRs(list...) }
