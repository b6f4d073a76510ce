package client

import (
	"crypto/tls"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
)

// Defaults of the [Option] values.
const (
	DefaultWindow          = 1024
	DefaultMaxAttempts     = 3
	DefaultRetryBudget     = 10
	DefaultBackoffBase     = 100 * time.Millisecond
	DefaultBackoffMax      = 5 * time.Second
	DefaultMaxRecvMsgBytes = 16 << 20
	DefaultConnectTimeout  = 5 * time.Second
	DefaultMaxJobBytes     = 4 << 20
	DefaultChunkBytes      = 256 << 10
)

type options struct {
	creds             credentials.TransportCredentials
	insecure          bool // creds chosen by WithInsecure
	token             string
	concurrency       uint32
	timeout           time.Duration
	maxBodyBytes      uint64
	digest            bool
	discardBody       bool
	window            int
	maxAttempts       int
	retryBudget       int
	backoffBase       time.Duration
	backoffMax        time.Duration
	resubmitAnyMethod bool
	spread            bool
	resolver          resolver.Builder
	resolveInterval   time.Duration
	maxRecvMsgBytes   int
	connectTimeout    time.Duration
	maxJobBytes       int
	chunkBytes        uint32
	bodyWriter        func(index uint64) (BodyWriter, error)
	dialOptions       []grpc.DialOption
}

var defaultOptions = options{
	window:          DefaultWindow,
	maxAttempts:     DefaultMaxAttempts,
	retryBudget:     DefaultRetryBudget,
	backoffBase:     DefaultBackoffBase,
	backoffMax:      DefaultBackoffMax,
	maxRecvMsgBytes: DefaultMaxRecvMsgBytes,
	connectTimeout:  DefaultConnectTimeout,
	resolveInterval: DefaultResolveInterval,
	maxJobBytes:     DefaultMaxJobBytes,
}

// Option configures a [Client].
type Option func(*options)

// WithInsecure connects without TLS, as to a fetchd on loopback. This is the
// default when neither [WithTLS] nor [WithTransportCredentials] is given.
func WithInsecure() Option {
	return func(o *options) { o.creds, o.insecure = insecure.NewCredentials(), true }
}

// WithTLS connects over TLS with cfg; a nil cfg uses the system roots.
// Default: no TLS.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.creds, o.insecure = credentials.NewTLS(cfg), false }
}

// WithTransportCredentials connects with creds, for example mTLS
// credentials. Default: no TLS.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(o *options) { o.creds, o.insecure = creds, false }
}

// WithBearerToken sends "authorization: Bearer token" on every call. It
// needs TLS ([WithTLS], [WithTransportCredentials]); to send it in
// plaintext, as to a fetchd on loopback, say [WithInsecure] explicitly.
// Default: none.
func WithBearerToken(token string) Option {
	return func(o *options) { o.token = token }
}

// WithConcurrency asks fetchd to fetch at most n jobs of each stream at
// once; it can only lower the server's limit. Default 0: the server's.
func WithConcurrency(n uint32) Option {
	return func(o *options) { o.concurrency = n }
}

// WithTimeout sets the timeout of jobs that set none, below the server's
// maximum. Default 0: the server's default.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithMaxBodyBytes asks fetchd to return at most n body bytes per result;
// it can only lower the server's cap. Default 0: the server's cap.
func WithMaxBodyBytes(n uint64) Option {
	return func(o *options) { o.maxBodyBytes = n }
}

// WithDigest asks fetchd to set body_sha256 on every result of the call:
// the SHA-256 of the body as fetchd read it (decoded, up to the cap),
// whether returned or discarded ([WithDiscardBody]). A truncated body's
// digest is that of the truncated bytes. Result.BodyLength is set either
// way. A fetchd older than the option ignores it and sets no digest.
// Default false.
func WithDigest(on bool) Option {
	return func(o *options) { o.digest = on }
}

// WithDiscardBody asks fetchd to read and count every body of the call
// (Result.BodyLength, and Result.BodySha256 with [WithDigest]) but return
// none of it: for link checkers and probes that want only the status,
// headers, size and time. fetchd reads a discarded body up to its own cap
// for bodies it does not return (-max-discard-bytes, default 1 GiB) and
// marks it truncated beyond; [WithMaxBodyBytes] does not apply. A fetchd
// older than the option ignores it and returns the bodies. Default false.
func WithDiscardBody(on bool) Option {
	return func(o *options) { o.discardBody = on }
}

// WithWindow sets the most jobs a call has taken from its input and not yet
// handed to the caller, across all backends. It bounds the client's memory,
// and in input order the reorder buffer: when the head job is slow and the
// window is full, no new job is sent until it arrives. Values below 1 are
// ignored. Default [DefaultWindow] (1024).
func WithWindow(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.window = n
		}
	}
}

// WithMaxAttempts sets how many times one job may be sent in all, first
// try included, when streams break before its result arrives. A job that
// runs out gets an ERROR_CODE_UNAVAILABLE result. Values below 1 are
// ignored. Default [DefaultMaxAttempts] (3).
func WithMaxAttempts(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxAttempts = n
		}
	}
}

// WithRetryBudget sets how many times in a row a call may fail to get a
// working stream from one backend it has reached before (connect failures,
// and streams that break before any result) before it gives that backend
// up. When every backend is given up the call ends with an error. A backend
// whose first connection in a call fails is not retried at all (see
// [ErrUnreachable]). Values below 1 are ignored. Default
// [DefaultRetryBudget] (10): with the default backoff, about half a
// minute of a backend being unreachable.
func WithRetryBudget(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.retryBudget = n
		}
	}
}

// WithBackoff sets the exponential backoff, with jitter, between attempts to
// reopen a broken stream. Default [DefaultBackoffBase] (100ms) doubling up
// to [DefaultBackoffMax] (5s).
func WithBackoff(base, max time.Duration) Option {
	return func(o *options) {
		if base > 0 {
			o.backoffBase = base
		}
		if max >= o.backoffBase {
			o.backoffMax = max
		}
	}
}

// WithResubmitNonIdempotent lets the client resubmit jobs whose method is
// not idempotent (POST, PATCH) after a stream broke with their outcome
// unknown; they may then be fetched twice. Without it they get an
// ERROR_CODE_OUTCOME_UNKNOWN result instead. Jobs of a stream that fetchd
// ended by draining were never started and are always resubmitted. Default
// false.
func WithResubmitNonIdempotent(ok bool) Option {
	return func(o *options) { o.resubmitAnyMethod = ok }
}

// WithHostAffinity chooses how a call with several backends spreads its
// jobs. On (the default), every job of a host (its URL's host name) goes
// to one backend, the same for every client that sees the same backends
// (rendezvous hashing), so that fetchd's per-host cap, rate and pauses,
// which each replica keeps for itself, hold across replicas: three
// replicas still fetch a host at most -host-concurrency at a time. A call
// over many hosts spreads evenly; a call whose jobs are all for one host
// stays on one backend, since that host's cap is the limit anyway.
//
// Off, each job goes to a backend with room, as for one internal host
// that has no cap: a call then gets every replica's pool, and a host gets
// up to the number of replicas times its cap.
//
// Either way a backend holds only what it can start soon (about twice the
// pool and host cap it announces); the rest waits in the client, free to
// go to another backend.
func WithHostAffinity(on bool) Option {
	return func(o *options) { o.spread = !on }
}

// WithResolver resolves targets of b's scheme ("scheme:///name") with b,
// as dns:/// targets are with gRPC's DNS resolver: every address b reports
// is a backend, and running calls follow its changes (see Many backends
// in the package doc). For service discovery other than DNS, and for
// tests (google.golang.org/grpc/resolver/manual).
func WithResolver(b resolver.Builder) Option {
	return func(o *options) { o.resolver = b }
}

// WithResolveInterval sets how often a running call asks the resolver of
// a dns:/// or [WithResolver] target to look again, besides when a backend
// fails; gRPC's DNS resolver looks at most every 30 s whatever this is.
// Default [DefaultResolveInterval].
func WithResolveInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.resolveInterval = d
		}
	}
}

// WithMaxRecvMsgBytes sets the largest result message accepted; keep it
// above fetchd's -max-body-bytes plus 64 KiB of headers. Default
// [DefaultMaxRecvMsgBytes] (16 MiB).
func WithMaxRecvMsgBytes(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxRecvMsgBytes = n
		}
	}
}

// WithMaxJobBytes sets the largest job message the client sends; set it to
// the -max-recv-msg-bytes of the fetchd it calls. fetchd, as every gRPC
// server, ends the whole stream (RESOURCE_EXHAUSTED) when a message is over
// its limit, and every job in flight on it would be resubmitted or lost
// with it; the client instead answers such a job ERROR_CODE_INVALID_REQUEST
// without sending it. Values below 1 are ignored. Default
// [DefaultMaxJobBytes] (4 MiB, fetchd's default -max-recv-msg-bytes).
func WithMaxJobBytes(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxJobBytes = n
		}
	}
}

// WithDialOptions adds gRPC dial options, applied after the client's own.
// Default: none.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}

// WithConnectTimeout bounds each attempt to connect to a backend: the TCP
// (or unix socket) connect, the TLS handshake and the HTTP/2 preface. A
// connection refused fails at once; an address that drops packets fails
// after d. When the first connection of a call to every backend fails the
// call ends with [ErrUnreachable]. Values below 1 are ignored. Default
// [DefaultConnectTimeout] (5s).
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.connectTimeout = d
		}
	}
}

// WithChunkBytes asks fetchd to stream every body longer than n bytes in
// chunks of at most n bytes (fetch.v1 StreamOptions.chunk_bytes; fetchd
// raises n to 16 KiB and lowers it to its inline body cap,
// -max-body-bytes). A streamed body is capped by fetchd's cap for streamed
// bodies (-max-stream-body-bytes, 1 GiB by default) or the lower
// [WithMaxBodyBytes], not by the inline cap; a shorter body still comes
// inline in its result. Without [WithBodyWriter] the client reassembles
// each streamed body and yields one Result with the whole Body, Streamed
// true, and BodyLength, BodySha256 and Truncated as fetchd sent them.
// Reassembly holds whole bodies in memory, those of every job in flight
// (up to the window times the streamed cap): for large downloads use
// [WithBodyWriter], which holds none. Default 0: no chunks, every body
// inline and cut at the inline cap; with [WithBodyWriter],
// [DefaultChunkBytes] (256 KiB).
func WithChunkBytes(n uint32) Option {
	return func(o *options) { o.chunkBytes = n }
}

// WithBodyWriter sends every body of the call, streamed or inline, to a
// [BodyWriter] instead of Result.Body, which is then nil (the other fields
// are unchanged). It implies chunked bodies, in chunks of
// [WithChunkBytes] or [DefaultChunkBytes] (256 KiB): each chunk is written
// as it arrives and not held, so a call holds at most its window's
// results and one chunk per stream, whatever the body sizes; in input
// order, a later job's body is written as it arrives and only its Result
// waits in the reorder buffer.
//
// open is called lazily, once per attempt of a job, at the job's first
// chunk or, for a body that came inline, when its result arrives, if it
// has a response (Result.StatusCode != 0) or body bytes: a job that got no
// response (an error such as ERROR_CODE_BLOCKED, or a result the client
// set) opens no writer, and with [WithDiscardBody] none is opened. open
// may be called from several goroutines at once; each writer is used by
// one goroutine at a time. An error from open, Write or Finish fails the
// call: its iterator yields, after the results already delivered, an
// error wrapping [ErrBodyWriter] and the writer's error, and every writer
// still open is aborted before it returns. Default: none, bodies in
// Result.Body.
func WithBodyWriter(open func(index uint64) (BodyWriter, error)) Option {
	return func(o *options) { o.bodyWriter = open }
}

// streamChunkBytes returns the chunk_bytes of the call's streams: 0 for
// none.
func (o *options) streamChunkBytes() uint32 {
	if o.chunkBytes == 0 && o.bodyWriter != nil {
		return DefaultChunkBytes
	}
	return o.chunkBytes
}
