package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/fetchd/fetchd/server/internal/egress"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

// options are a [Config]'s resolved values that the server and its
// streams read: no zero left that means a default. A cap or limit of 0 is
// off.
type options struct {
	concurrency      int
	streamWindow     int
	streamQueue      int
	maxBodyBytes     int64
	maxDiscardBytes  int64
	maxStreamBytes   int64
	bodyMemory       int64
	jobMemory        int64
	requestMemory    int64
	maxRecvMsgBytes  int64
	defaultTimeout   time.Duration
	maxTimeout       time.Duration
	hostConcurrency  int     // 0: no cap
	hostRate         float64 // 0: no limit
	dedup            bool
	dedupAcross      bool                             // dedup across callers too
	caller           func(ctx context.Context) string // names a stream's caller, for dedup
	retryAttempts    int
	maxRetryAttempts int
	retryBackoff     time.Duration
	maxRetryBackoff  time.Duration
	maxRetryAfter    time.Duration
	logger           *slog.Logger
}

// ErrConfig is what the error of [NewFromConfig] wraps for a Config it
// refuses.
var ErrConfig = errors.New("invalid server config")

// resolve validates c and returns its resolved values.
func (c *Config) resolve() (options, error) {
	if err := c.validate(); err != nil {
		return options{}, err
	}
	o := options{
		concurrency:      orDefault(c.Concurrency, DefaultConcurrency),
		maxBodyBytes:     orDefault(c.MaxBodyBytes, DefaultMaxBodyBytes),
		maxDiscardBytes:  orDefault(c.MaxDiscardBytes, DefaultMaxDiscardBytes),
		maxStreamBytes:   orDefault(c.MaxStreamBodyBytes, DefaultMaxStreamBodyBytes),
		maxTimeout:       orDefault(c.MaxTimeout, DefaultMaxTimeout),
		hostConcurrency:  orOff(c.HostConcurrency, DefaultHostConcurrency),
		hostRate:         c.HostRate,
		dedup:            !c.DisableDedup,
		dedupAcross:      c.DedupAcrossCallers,
		caller:           c.Caller,
		retryAttempts:    orDefault(c.RetryAttempts, DefaultRetryAttempts),
		maxRetryAttempts: orDefault(c.MaxRetryAttempts, DefaultMaxRetryAttempts),
		retryBackoff:     orDefault(c.RetryBackoff, DefaultRetryBackoff),
		maxRetryBackoff:  orDefault(c.MaxRetryBackoff, DefaultMaxRetryBackoff),
		maxRetryAfter:    orOff(c.MaxRetryAfter, DefaultMaxRetryAfter),
		logger:           c.Logger,
	}
	o.defaultTimeout = orDefault(c.DefaultTimeout, min(DefaultTimeout, o.maxTimeout))
	o.streamWindow = orDefault(c.StreamWindow, max(DefaultStreamWindow, 2*o.concurrency))
	o.streamQueue = orDefault(c.StreamQueue, max(DefaultStreamQueue, 16*o.streamWindow))
	o.bodyMemory = orDefault(c.BodyMemory, max(DefaultBodyMemory, 2*(o.maxBodyBytes+1)))
	o.jobMemory = orDefault(c.JobMemory, DefaultJobMemory)
	o.maxRecvMsgBytes = orDefault(c.MaxRecvMsgBytes, DefaultMaxRecvMsgBytes)
	o.requestMemory = orDefault(c.RequestMemory, max(DefaultRequestMemory, o.maxRecvMsgBytes))
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.caller == nil {
		o.caller = PeerCaller
	}
	switch {
	case o.defaultTimeout > o.maxTimeout:
		return options{}, fmt.Errorf("%w: DefaultTimeout %v is over MaxTimeout %v", ErrConfig, o.defaultTimeout, o.maxTimeout)
	case o.retryAttempts > o.maxRetryAttempts:
		return options{}, fmt.Errorf("%w: RetryAttempts %d is over MaxRetryAttempts %d", ErrConfig, o.retryAttempts, o.maxRetryAttempts)
	case o.requestMemory < o.maxRecvMsgBytes:
		return options{}, fmt.Errorf("%w: RequestMemory %d cannot hold one request at MaxRecvMsgBytes %d", ErrConfig, o.requestMemory, o.maxRecvMsgBytes)
	case o.bodyMemory <= o.maxBodyBytes:
		return options{}, fmt.Errorf("%w: BodyMemory %d cannot hold one body at MaxBodyBytes %d; make it at least %d", ErrConfig, o.bodyMemory, o.maxBodyBytes, o.maxBodyBytes+1)
	}
	return o, nil
}

// validate refuses the negative values of fields where negative means
// nothing.
func (c *Config) validate() error {
	for _, f := range []struct {
		name string
		neg  bool
	}{
		{"Concurrency", c.Concurrency < 0},
		{"StreamWindow", c.StreamWindow < 0},
		{"StreamQueue", c.StreamQueue < 0},
		{"HostRate", c.HostRate < 0 || math.IsNaN(c.HostRate) || math.IsInf(c.HostRate, 0)},
		{"RetryAttempts", c.RetryAttempts < 0},
		{"MaxRetryAttempts", c.MaxRetryAttempts < 0},
		{"RetryBackoff", c.RetryBackoff < 0},
		{"MaxRetryBackoff", c.MaxRetryBackoff < 0},
		{"MaxBodyBytes", c.MaxBodyBytes < 0},
		{"MaxDiscardBytes", c.MaxDiscardBytes < 0},
		{"MaxStreamBodyBytes", c.MaxStreamBodyBytes < 0},
		{"BodyMemory", c.BodyMemory < 0},
		{"JobMemory", c.JobMemory < 0},
		{"RequestMemory", c.RequestMemory < 0},
		{"MaxRecvMsgBytes", c.MaxRecvMsgBytes < 0},
		{"DefaultTimeout", c.DefaultTimeout < 0},
		{"MaxTimeout", c.MaxTimeout < 0},
		{"MaxResponseHeaderBytes", c.MaxResponseHeaderBytes < 0},
	} {
		if f.neg {
			return fmt.Errorf("%w: %s must not be negative", ErrConfig, f.name)
		}
	}
	return nil
}

// fetcherConfig returns the fetcher's part of c. The fetcher's settings
// mean the same there as here (zero the default, negative off), and the
// fetcher resolves them with the constants above.
func (c *Config) fetcherConfig(concurrency int, policy *egress.Policy) fetcher.Config {
	engine := fetcher.EngineLean
	if c.NetHTTP {
		engine = fetcher.EngineNetHTTP
	}
	return fetcher.Config{
		Engine:                 engine,
		Policy:                 policy,
		IdleReadTimeout:        c.IdleReadTimeout,
		Conns:                  concurrency,
		MaxRedirects:           c.MaxRedirects,
		MaxResponseHeaderBytes: c.MaxResponseHeaderBytes,
		RootCAs:                c.UpstreamRootCAs,
		UserAgent:              c.UserAgent,
		TracerProvider:         c.TracerProvider,
		HideAddresses:          c.HideAddresses,
		Logger:                 c.Logger,
	}
}

// egressPolicy returns the egress policy of c.
func (c *Config) egressPolicy() *egress.Policy {
	return egress.NewPolicy(
		egress.AllowCIDRs(c.AllowCIDRs...),
		egress.DenyCIDRs(c.DenyCIDRs...),
		egress.AllowPrivate(c.AllowPrivate),
		egress.AllowPorts(c.AllowPorts...),
		egress.AllowHosts(c.AllowHosts...),
		egress.DenyHosts(c.DenyHosts...),
		egress.Named(egressNames),
	)
}

// egressNames are what a refused job's message calls the egress settings:
// the fetchd flags, which its operators set, each the counterpart of one
// field (-allow-cidr is [Config.AllowCIDRs]). A message reads "10.0.0.0/8
// (private); -allow-private or -allow-cidr opens it".
var egressNames = egress.Names{
	AllowCIDRs:   "-allow-cidr",
	DenyCIDRs:    "-deny-cidr",
	AllowPrivate: "-allow-private",
	AllowPorts:   "-allow-port",
	AllowHosts:   "-allow-host",
	DenyHosts:    "-deny-host",
}

// orDefault returns v, or def if v is zero.
func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// orOff returns v, def if v is zero, or 0 (off) if v is negative.
func orOff[T int | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}
