package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/retry"
	"github.com/fetchd/fetchd/server/internal/fetcher"
	"github.com/fetchd/fetchd/server/internal/hostlimit"
)

// Server implements [fetchv1.FetchServiceServer]. Create it with [New],
// register it with [Server.Register], and call [Server.Close] after the gRPC
// server has stopped.
type Server struct {
	fetchv1.UnimplementedFetchServiceServer

	opts    options
	pool    *semaphore.Weighted // the global worker pool; FIFO
	bodies  *budget             // body memory, in bytes ([Config.BodyMemory])
	jobs    *budget             // job memory, in bytes ([Config.JobMemory])
	reqs    *budget             // FetchBatch requests held, in bytes ([Config.RequestMemory])
	fetcher *fetcher.Fetcher
	log     *slog.Logger
	metrics *metrics
	hosts   *hostlimit.Registry // per-host caps, rates and pauses, shared by all streams
	runner  *runner             // warm goroutines for fetch workers
	flights flights             // identical jobs in flight, for dedup

	drainOnce sync.Once
	draining  chan struct{} // closed by Drain

	// receivers tracks receive goroutines. A stream's receiver blocked in
	// Recv when its handler returns (on drain) ends as soon as gRPC closes
	// the stream; Close waits for it.
	receivers sync.WaitGroup

	// testHookFetch, when set by tests, replaces the fetcher; its results
	// hold no body memory.
	testHookFetch func(ctx context.Context, job *fetcher.Job, resp *fetchv1.FetchResponse)
}

var _ fetchv1.FetchServiceServer = (*Server)(nil)

// TrailerUnstarted is the trailer key fetchd sets, with value "true", on a
// stream that ends because the server is draining: every job of that
// stream without a result was never started, so a client may resubmit it
// elsewhere even if its method is not idempotent.
const TrailerUnstarted = retry.TrailerUnstarted

// HeaderConcurrency and HeaderHostConcurrency are the header keys of the
// pool size and the per-host cap (0: none) that every Fetch stream
// announces as it opens, before it reads a job: the Go client sends each
// replica only about twice these, so that the jobs it has not sent can
// still go to another replica.
const (
	HeaderConcurrency     = retry.HeaderConcurrency
	HeaderHostConcurrency = retry.HeaderHostConcurrency
)

// New returns a Server configured by opts, each setting one [Config]
// field. It panics, with a "server: " prefix, only if the metrics of
// [WithMetrics] are registered already; use [NewFromConfig] for an error
// instead.
func New(opts ...Option) *Server {
	var cfg Config
	for _, opt := range opts {
		opt(&cfg)
	}
	// The options' leniency: a default timeout over the maximum is cut.
	if maxT := orDefault(cfg.MaxTimeout, DefaultMaxTimeout); cfg.DefaultTimeout > maxT {
		cfg.DefaultTimeout = maxT
	}
	s, err := NewFromConfig(cfg)
	if err != nil {
		panic("server: " + err.Error())
	}
	return s
}

// NewFromConfig returns a Server configured by cfg. Its error wraps
// [ErrConfig] for a field out of range, or is the registerer's if
// [Config.Metrics] has the metrics registered already.
func NewFromConfig(cfg Config) (*Server, error) {
	o, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	m := newMetrics()
	if cfg.Metrics != nil {
		if err := register(cfg.Metrics, m.collectors()); err != nil {
			return nil, err
		}
	}
	policy := cfg.egressPolicy()
	if policy.PrivateAllowed() {
		o.logger.Warn("egress policy opens the private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7): callers can reach internal services")
	}
	return &Server{
		opts:     o,
		pool:     semaphore.NewWeighted(int64(o.concurrency)),
		bodies:   newBudget(o.bodyMemory, max(o.bodyMemory/2, o.maxBodyBytes+1)),
		jobs:     newBudget(o.jobMemory, o.jobMemory/2),
		reqs:     newBudget(o.requestMemory, max(o.requestMemory/2, o.maxRecvMsgBytes)),
		fetcher:  fetcher.New(cfg.fetcherConfig(o.concurrency, policy)),
		log:      o.logger,
		metrics:  m,
		hosts:    hostlimit.NewRegistry(o.hostConcurrency, o.hostRate),
		runner:   newRunner(),
		draining: make(chan struct{}),
	}, nil
}

// register registers cs with reg, all or none.
func register(reg prometheus.Registerer, cs []prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// Register registers s on r as the fetch.v1.FetchService. Register it this
// way rather than with [fetchv1.RegisterFetchServiceServer]: then a
// FetchBatch job that does not decode (a string that is not UTF-8) gets its
// own error result instead of failing the whole call, as a Fetch job always
// does.
func (s *Server) Register(r grpc.ServiceRegistrar) { r.RegisterService(&serviceDesc, s) }

// serviceDesc is fetch.v1.FetchService as the generated
// [fetchv1.FetchService_ServiceDesc] describes it, but for a FetchBatch
// handler that receives the request as bytes and decodes it itself.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: fetchv1.FetchService_ServiceDesc.ServiceName,
	HandlerType: (*fetchv1.FetchServiceServer)(nil),
	Streams: []grpc.StreamDesc{
		{
			StreamName:    "Fetch",
			Handler:       fetchHandler,
			ServerStreams: true,
			ClientStreams: true,
		},
		{
			StreamName:    "FetchBatch",
			Handler:       fetchBatchHandler,
			ServerStreams: true,
		},
	},
	Metadata: fetchv1.FetchService_ServiceDesc.Metadata,
}

func fetchHandler(srv any, stream grpc.ServerStream) error {
	return srv.(*Server).Fetch(&grpc.GenericServerStream[fetchv1.FetchRequest, fetchv1.FetchResponse]{ServerStream: stream})
}

func fetchBatchHandler(srv any, stream grpc.ServerStream) error {
	s := srv.(*Server)
	// The request is one message, held for the whole call (its jobs are
	// decoded from it as they are read). It is taken from the caller's
	// share of the request memory before it is read, so that a caller's
	// many batches at once wait unread rather than pile up. The request
	// budget is its own: a batch holding it never waits for job memory
	// from the same one.
	rm := s.reqs.caller(s.opts.caller(stream.Context()))
	defer rm.done()
	held := s.opts.maxRecvMsgBytes
	if err := rm.Acquire(stream.Context(), held); err != nil {
		return status.FromContextError(err).Err()
	}
	raw := rawMessage()
	err := stream.RecvMsg(raw)
	if n := int64(len(rawBytes(raw))); err == nil && n < held {
		rm.Release(held - n) // keep what the request holds
		held = n
	}
	defer rm.Release(held)
	if err != nil {
		return err
	}
	jobs, opts, err := decodeBatch(rawBytes(raw))
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "FetchBatch: %v", err)
	}
	return s.fetchBatch(jobs, opts, stream)
}

// Concurrency returns the size of the worker pool.
func (s *Server) Concurrency() int { return s.opts.concurrency }

// BodyMemory returns the body memory budget in bytes ([Config.BodyMemory],
// resolved).
func (s *Server) BodyMemory() int64 { return s.opts.bodyMemory }

// JobMemory returns the job memory budget in bytes ([Config.JobMemory],
// resolved).
func (s *Server) JobMemory() int64 { return s.opts.jobMemory }

// RequestMemory returns the FetchBatch request budget in bytes
// ([Config.RequestMemory], resolved).
func (s *Server) RequestMemory() int64 { return s.opts.requestMemory }

// HostConcurrency returns the per-host cap in force now, with the share of
// [Server.SetHostShare] applied; 0 means no cap.
func (s *Server) HostConcurrency() int { return s.hosts.Cap() }

// SetHostShare makes the server's per-host limits this replica's share of
// n replicas that fetch for the same callers: each host's cap becomes
// max(1, [Config.HostConcurrency]/n) fetches in flight and its rate
// [Config.HostRate]/n, so that n replicas together keep within the limits
// while n is at most HostConcurrency. n below 1 counts as 1, the whole
// limits, as before any call. It applies to the next fetch to start, on
// streams running and new: fetches in flight above a lowered cap go on,
// nothing is cancelled. A stream's own host_concurrency and host_rate still
// apply on top. The share is exported as fetchd_host_share.
func (s *Server) SetHostShare(n int) {
	n = max(n, 1)
	s.hosts.SetShare(n)
	s.metrics.hostShare.Set(float64(n))
}

// Drain makes every stream, current and future, stop reading jobs, fetch
// and answer every job it has read (started or queued), and end: with OK if
// its caller had half-closed, else with codes.Unavailable and the
// [TrailerUnstarted] trailer, since its unread jobs were never started. It
// does not wait; stop the gRPC server with GracefulStop, bounded by a
// deadline after which Stop cancels what is left.
func (s *Server) Drain() { s.drainOnce.Do(func() { close(s.draining) }) }

// Close waits for the goroutines of finished streams and closes idle
// upstream connections. Call it after the gRPC server has stopped; calling
// it again does nothing more.
func (s *Server) Close() {
	s.receivers.Wait()
	s.runner.close()
	s.fetcher.Close()
}

// Fetch implements fetch.v1.FetchService.Fetch. It decodes each job
// message itself, so that a job that does not decode gets its own
// ERROR_CODE_INVALID_REQUEST result and the stream goes on.
func (s *Server) Fetch(stream grpc.BidiStreamingServer[fetchv1.FetchRequest, fetchv1.FetchResponse]) error {
	// Announced at once: a client reads it after its first job.
	if err := stream.SendHeader(s.announce()); err != nil {
		return err
	}
	recv := func() (inbound, error) {
		raw := rawMessage()
		if err := stream.RecvMsg(raw); err != nil {
			return inbound{}, err
		}
		return decodeJob(rawBytes(raw)), nil
	}
	return s.serve(stream.Context(), recv, stream.Send, stream.SetTrailer, nil, false)
}

// announce returns the header every Fetch stream opens with.
func (s *Server) announce() metadata.MD {
	return metadata.Pairs(
		HeaderConcurrency, strconv.Itoa(s.opts.concurrency),
		HeaderHostConcurrency, strconv.Itoa(s.HostConcurrency()),
	)
}

// FetchBatch implements fetch.v1.FetchService.FetchBatch for a request that
// gRPC has decoded. [Server.Register] registers a handler that decodes the
// request itself instead, job by job.
func (s *Server) FetchBatch(req *fetchv1.FetchBatchRequest, stream grpc.ServerStreamingServer[fetchv1.FetchBatchResponse]) error {
	return s.fetchBatch(inbounds(req.GetJobs()), req.GetOptions(), stream)
}

// fetchBatch serves a FetchBatch call of the jobs that next yields, in
// order, and options.
func (s *Server) fetchBatch(next func() (inbound, bool), opts *fetchv1.StreamOptions, stream grpc.ServerStream) error {
	recv := func() (inbound, error) {
		if in, ok := next(); ok {
			return in, nil
		}
		return inbound{}, io.EOF
	}
	send := func(r *fetchv1.FetchResponse) error {
		return stream.SendMsg(&fetchv1.FetchBatchResponse{Result: r})
	}
	if opts == nil {
		opts = &fetchv1.StreamOptions{}
	}
	return s.serve(stream.Context(), recv, send, stream.SetTrailer, opts, false)
}

// fetch runs one job, turning a panic into the job's internal error. It
// returns the body memory that resp holds, to be released once resp is
// sent.
func (s *Server) fetch(ctx context.Context, job *fetcher.Job, resp *fetchv1.FetchResponse) (held int64) {
	defer validUTF8(resp) // last, after a panic's message too
	s.metrics.inFlight.Inc()
	start := time.Now()
	defer func() {
		s.metrics.inFlight.Dec()
		s.metrics.fetched(time.Since(start), resp.GetError() != nil)
	}()
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(ctx, "panic in fetch worker", "url", resp.GetUrl(), "panic", r, "stack", string(debug.Stack()))
			clearOutcome(resp)
			resp.Error = &fetchv1.Error{
				Code:    fetchv1.ErrorCode_ERROR_CODE_INTERNAL,
				Message: fmt.Sprintf("internal error: panic: %v", r),
			}
		}
	}()
	if s.testHookFetch != nil {
		s.testHookFetch(ctx, job, resp)
		return 0
	}
	return s.fetcher.Fetch(ctx, job, resp)
}

// retryPolicy returns the policy asked for by rp on top of parent (the
// stream's), or else the server's default, within the server's maximum.
func (s *Server) retryPolicy(rp *fetchv1.RetryPolicy, parent *retry.Policy) retry.Policy {
	p := retry.Policy{
		MaxAttempts:   s.opts.retryAttempts,
		Base:          s.opts.retryBackoff,
		Max:           s.opts.maxRetryBackoff,
		MaxRetryAfter: s.opts.maxRetryAfter,
	}
	if parent != nil {
		p = *parent
	}
	if rp == nil {
		return p
	}
	if n := int(rp.GetMaxAttempts()); n > 0 {
		p.MaxAttempts = min(n, s.opts.maxRetryAttempts)
	}
	p.AnyMethod = rp.GetRetryNonIdempotent()
	return p
}

var (
	errDraining = errors.New("server is draining")
)

// clearOutcome clears what an attempt wrote into resp, keeping what
// identifies the job: its index, id and url.
func clearOutcome(resp *fetchv1.FetchResponse) {
	idx, id, url := resp.GetIndex(), resp.GetId(), resp.GetUrl()
	resp.Reset()
	resp.Index, resp.Id, resp.Url = idx, id, url
}
