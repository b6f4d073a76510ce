package server

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/fetchd/fetchd/server/internal/fetcher"
)

// Defaults of the [Config] fields left zero. The stream window and queue
// follow the concurrency unless set: the window is the larger of
// [DefaultStreamWindow] and 2 x the concurrency, the queue the larger of
// [DefaultStreamQueue] and 16 x the window (512 and 8192 at the default
// concurrency of 256). The fetch defaults are the fetcher's, which applies
// them.
const (
	DefaultConcurrency            = 256
	DefaultStreamWindow           = 512 // the least default window; see [Config.StreamWindow]
	DefaultMaxBodyBytes           = 3 << 20
	DefaultMaxDiscardBytes        = 1 << 30
	DefaultMaxStreamBodyBytes     = 1 << 30
	DefaultBodyMemory             = 128 << 20
	DefaultJobMemory              = 64 << 20
	DefaultRequestMemory          = 64 << 20
	DefaultMaxRecvMsgBytes        = 4 << 20
	MinChunkBytes                 = 16 << 10 // the least chunk a stream may ask for (chunk_bytes)
	DefaultTimeout                = 30 * time.Second
	DefaultMaxTimeout             = 5 * time.Minute
	DefaultMaxRedirects           = fetcher.DefaultMaxRedirects
	DefaultMaxResponseHeaderBytes = fetcher.DefaultMaxResponseHeaderBytes
	DefaultUserAgent              = fetcher.DefaultUserAgent
	DefaultStreamQueue            = 8192 // the least default queue; see [Config.StreamQueue]
	DefaultIdleReadTimeout        = fetcher.DefaultIdleReadTimeout
	DefaultHostConcurrency        = 16
	DefaultRetryAttempts          = 3
	DefaultMaxRetryAttempts       = 10
	DefaultRetryBackoff           = 250 * time.Millisecond
	DefaultMaxRetryBackoff        = 10 * time.Second
	DefaultMaxRetryAfter          = 30 * time.Second
)

// Config configures a [Server]; pass it to [NewFromConfig]. Every field's
// zero value means its default, so the zero Config is the default server:
// public addresses only, the limits below. A setting that can also be
// turned off is turned off by a negative value. A negative value of any
// other field is an error.
type Config struct {
	// Concurrency is the size of the worker pool: the most fetches in
	// flight at once, across all streams. Default [DefaultConcurrency].
	Concurrency int
	// StreamWindow is each stream's window: the most jobs one stream may
	// have in flight plus results waiting to be sent. A full window stops
	// the stream from reading more jobs, so a window below the concurrency
	// keeps one stream from using the whole pool. Default: 2 x the
	// concurrency, and at least [DefaultStreamWindow] (512).
	StreamWindow int
	// StreamQueue is how many jobs one stream may have read and not yet
	// started: jobs waiting for a busy or rate-limited host. They are cheap
	// (no goroutine, no result yet); a full queue stops the stream from
	// reading more. Default: 16 x the stream window, and at least
	// [DefaultStreamQueue] (8192).
	StreamQueue int
	// HostConcurrency caps the fetches in flight to one host (by URL host
	// name), across all streams; negative means no cap. A stream may ask
	// for a lower cap for itself. Default [DefaultHostConcurrency].
	HostConcurrency int
	// HostRate limits the requests per second sent to one host, across all
	// streams (a token bucket with a burst of one second's worth). A job
	// waiting for a token holds no pool slot. Default 0: no limit.
	HostRate float64
	// DisableDedup stops identical GET and HEAD jobs in flight at the same
	// time (same URL, headers, body cap, and digest and discard modes) from
	// sharing one fetch. Default
	// false: they share it, each still gets its own result and keeps its
	// own timeout, and a stream may turn it off for itself. Only the jobs
	// of one caller ([Config.Caller]) share a fetch, unless
	// DedupAcrossCallers.
	DisableDedup bool
	// DedupAcrossCallers lets identical jobs of different callers share a
	// fetch too. A shared result then tells a caller (shared: true) that
	// another caller fetched the same URL at the same time. Default false:
	// dedup stays within each caller.
	DedupAcrossCallers bool
	// RequestMemory is the budget of the FetchBatch requests held by their
	// calls (each is one message, held while its jobs are read from it).
	// A FetchBatch takes MaxRecvMsgBytes of its caller's share before its
	// request is read, and keeps the request's size of it until the call
	// ends: a caller's batches beyond its share (half) wait unread, and
	// HTTP/2 flow control holds them. Default [DefaultRequestMemory]
	// (64 MiB); at least MaxRecvMsgBytes.
	RequestMemory int64
	// MaxRecvMsgBytes is the receive limit of the gRPC server the Server
	// is registered on (grpc.MaxRecvMsgSize): what a FetchBatch takes of
	// RequestMemory before its request is read. Default
	// [DefaultMaxRecvMsgBytes] (4 MiB, grpc-go's default).
	MaxRecvMsgBytes int64
	// Caller names the caller of a stream from the stream's context: jobs
	// of callers with different names never share a fetch unless
	// DedupAcrossCallers, and each caller holds at most its share of
	// BodyMemory and JobMemory. fetchd names a caller by its bearer
	// token's identity when auth is on. Default [PeerCaller]: the peer's
	// IP address.
	Caller func(ctx context.Context) string

	// RetryAttempts is the attempts per job, the first included, of jobs
	// that ask for no retry policy (1: no retries). At most
	// MaxRetryAttempts. Default [DefaultRetryAttempts].
	RetryAttempts int
	// MaxRetryAttempts is the most attempts any job may ask for. Default
	// [DefaultMaxRetryAttempts].
	MaxRetryAttempts int
	// RetryBackoff is the first backoff between attempts, doubled each
	// attempt up to MaxRetryBackoff, with jitter. Default
	// [DefaultRetryBackoff].
	RetryBackoff time.Duration
	// MaxRetryBackoff is the longest backoff between attempts; it caps
	// the first one too. Default [DefaultMaxRetryBackoff].
	MaxRetryBackoff time.Duration
	// MaxRetryAfter caps the Retry-After an upstream may ask for; a longer
	// one is waited only this long; negative waits for none. Default
	// [DefaultMaxRetryAfter].
	MaxRetryAfter time.Duration

	// MaxBodyBytes caps the response body returned per job; longer bodies
	// are cut and marked truncated. Keep it below the callers' gRPC receive
	// limit (4 MiB by default in grpc-go). Default [DefaultMaxBodyBytes]
	// (3 MiB).
	MaxBodyBytes int64
	// MaxDiscardBytes caps the body of a job whose stream asked for bodies
	// to be discarded (StreamOptions.discard_body): fetchd reads, counts
	// and digests that much through a small fixed buffer, never holding
	// the body, and marks a longer one truncated. MaxBodyBytes does not
	// apply to it. Default [DefaultMaxDiscardBytes] (1 GiB).
	MaxDiscardBytes int64
	// MaxStreamBodyBytes caps the body of a job whose stream asked for
	// bodies in chunks (StreamOptions.chunk_bytes): fetchd sends that much
	// of it, one chunk at a time, and marks a longer one truncated. A
	// stream may ask for less with max_body_bytes. Default
	// [DefaultMaxStreamBodyBytes] (1 GiB).
	MaxStreamBodyBytes int64
	// BodyMemory is the budget of body bytes held at once across all
	// streams: bodies being read whole, chunks on their way to a caller,
	// and whole bodies in results not yet sent. Only what a body holds
	// beyond its first 64 KiB counts; a fetch whose body grows past that
	// takes all it may still need (its Content-Length, or else the cap) at
	// once, and waits, reading nothing more, while the budget is short.
	// It must hold at least one body at the cap: MaxBodyBytes + 1. One
	// caller ([Config.Caller]) holds at most half of it, or one body at the
	// cap if that is more. Default [DefaultBodyMemory] (128 MiB), or
	// 2 x (MaxBodyBytes + 1) if that is more.
	BodyMemory int64
	// JobMemory is the budget of the jobs held at once across all streams,
	// counted as they sit in memory (their URL, headers and request body,
	// decoded): jobs read and queued, in flight, or waiting to retry, until
	// their result is handed to the sender. A stream whose next job would
	// go over it stops reading jobs, and HTTP/2 flow control holds its
	// caller. One caller holds at most half of it. Default
	// [DefaultJobMemory] (64 MiB).
	JobMemory int64
	// DefaultTimeout is the timeout of jobs that set none; at most
	// MaxTimeout. Default [DefaultTimeout], or MaxTimeout if that is less.
	DefaultTimeout time.Duration
	// MaxTimeout is the longest timeout a job may ask for; a job asking for
	// more is an invalid request. Default [DefaultMaxTimeout].
	MaxTimeout time.Duration
	// MaxRedirects is the most redirects followed per job; negative
	// follows none. Default [DefaultMaxRedirects].
	MaxRedirects int
	// MaxResponseHeaderBytes caps the size of an upstream's response
	// header; a larger one is an ERROR_CODE_BAD_RESPONSE. Default
	// [DefaultMaxResponseHeaderBytes] (64 KiB).
	MaxResponseHeaderBytes int64
	// IdleReadTimeout fails a job with ERROR_CODE_TIMEOUT when its upstream
	// sends nothing for this long, headers or body, however long the job's
	// own timeout; negative turns it off. Default [DefaultIdleReadTimeout].
	IdleReadTimeout time.Duration
	// UserAgent is the User-Agent sent with jobs that set none. Default
	// [DefaultUserAgent].
	UserAgent string
	// UpstreamRootCAs are the certificate authorities trusted for upstream
	// TLS; see [LoadRootCAs]. Default: the system roots.
	UpstreamRootCAs *x509.CertPool
	// NetHTTP fetches plain-http upstreams with net/http instead of the
	// lean HTTP/1.1 client, which writes and reads on the worker's
	// goroutine and costs about half of net/http's CPU per request. https
	// upstreams, HTTP/2 included, always use net/http. Both engines pass the
	// same egress, redirect, timeout and hostile-upstream tests. Default
	// false: the lean client.
	NetHTTP bool

	// AllowCIDRs opens address ranges that the egress policy denies by
	// default, such as 10.0.0.0/8 for internal upstreams or 127.0.0.0/8 for
	// tests. A cloud metadata address (169.254.169.254, 168.63.129.16,
	// 100.100.100.200, fd00:ec2::/32, fd20:ce::254 and the others) opens
	// only to a range inside its own entry, such as 168.63.129.16/32, never
	// to a wider one; see [ParseCIDRs]. Default: none; only public
	// addresses.
	AllowCIDRs []netip.Prefix
	// DenyCIDRs refuses address ranges even when they are public or opened
	// by AllowCIDRs or AllowPrivate. Default: none.
	DenyCIDRs []netip.Prefix
	// AllowPrivate opens the private ranges (10/8, 172.16/12, 192.168/16,
	// CGNAT 100.64/10 and fc00::/7), but not loopback, link-local or the
	// cloud metadata addresses inside them (100.100.100.200,
	// fd00:ec2::/32, fd20:ce::254, ...), for deployments whose upstreams
	// are internal. Default false.
	AllowPrivate bool
	// AllowPorts refuses every destination port but these, on the URL and
	// on every redirect hop. Default: all ports.
	AllowPorts []uint16
	// AllowHosts refuses every host name that matches none of the patterns
	// ("example.com", or "*.example.com" for its subdomains), checked on
	// the URL and every redirect hop. Patterns must come from
	// [ParseHostPatterns]. Default: every host.
	AllowHosts []string
	// DenyHosts refuses host names matching the patterns, even when
	// AllowHosts matches them too. Patterns must come from
	// [ParseHostPatterns]. Default: none.
	DenyHosts []string
	// HideAddresses keeps resolved addresses, and the policy details that
	// would name them, out of the error messages of results: every
	// refused destination and every host name that does not resolve gets
	// ERROR_CODE_BLOCKED with one message, the same for all, so that a
	// caller cannot tell an internal name that exists from one that does
	// not; other messages (a refused connection, a DNS timeout) keep their
	// code with the addresses of the connection and of the DNS server cut
	// out. Each error so changed is logged whole at debug level. Default
	// false: messages name the address and the range that refused it.
	HideAddresses bool

	// Logger is the logger for per-stream summaries and worker panics.
	// Default [slog.Default].
	Logger *slog.Logger
	// Metrics, when set, gets the server's fetch metrics registered: jobs
	// by outcome (fetchd_jobs_total{code}), fetch durations, fetches in
	// flight, time waiting for a pool slot, bytes fetched, egress blocks
	// and streams in flight. Default: not exported.
	Metrics prometheus.Registerer
	// TracerProvider, when set, traces every upstream request as an HTTP
	// client span, a child of the gRPC call's span when the call carries
	// one, and propagates the trace context to the upstream (W3C
	// traceparent). Default: no tracing.
	TracerProvider trace.TracerProvider
}
