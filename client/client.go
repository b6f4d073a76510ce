package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// Job is one fetch job: the fetch.v1 FetchRequest. The client never
// modifies a Job it is given.
type Job = fetchv1.FetchRequest

// Result is the result of one job: the fetch.v1 FetchResponse, with Index
// set to the job's position in the caller's input, from 0.
type Result = fetchv1.FetchResponse

// Get returns a GET job for url.
func Get(url string) *Job { return &Job{Url: url} }

// ErrClosed is returned by calls on a closed [Client].
var ErrClosed = errors.New("client: closed")

// ErrBadTarget is what [New] returns, wrapped, for a target it cannot use,
// such as "http://localhost:50051" or "localhost" without a port.
var ErrBadTarget = errors.New("client: bad target")

// targetForms is the end of every ErrBadTarget message.
const targetForms = "want host:port, a comma-separated list of them, or dns:///host:port"

// Client sends jobs to one or more fetchd backends. It is safe for
// concurrent use; each call of [Client.Fetch] or [Client.FetchOrdered] has
// its own streams.
type Client struct {
	opts     options
	dialOpts []grpc.DialOption
	static   []string // backend addresses, unless members is set
	members  *members // for a dns:/// or WithResolver target: the backends, followed live

	mu      sync.Mutex             // guards conns, retired and closed
	conns   map[string]*pooledConn // by address: the static ones, or the last resolution's
	retired map[*pooledConn]bool   // dropped by a resolution, still used by a call
	closed  bool

	engine *engine // the in-process backend of NewEmbedded; nil otherwise
}

// New returns a client for target, which names one or more fetchd
// backends:
//
//   - one gRPC target, such as "localhost:50051" or "unix:///run/fetchd.sock";
//   - a comma-separated list of addresses, "10.0.0.1:50051,10.0.0.2:50051";
//   - "dns:///name:port", resolved by gRPC's DNS resolver, each address a
//     backend (a Kubernetes headless Service, for example), which running
//     calls follow as it changes (see Many backends in the package doc);
//   - "scheme:///name" for the scheme of a [WithResolver] resolver, alike.
//
// An address is host:port with a numeric port, or a URI whose scheme has a
// registered gRPC resolver ("unix:///path", "dns://server/name:port",
// "passthrough:///host:port"). Anything else, such as a URL
// ("http://host:port", which gRPC would try to dial as a host name) or a
// host without a port, is refused with an error wrapping [ErrBadTarget].
//
// A call opens one stream per backend and spreads its jobs over them. New
// does no I/O; connections are made when first used.
func New(target string, opts ...Option) (*Client, error) {
	o := defaultOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.creds == nil {
		if o.token != "" {
			return nil, errors.New("client: WithBearerToken needs WithTLS or WithTransportCredentials (or an explicit WithInsecure)")
		}
		o.creds = insecure.NewCredentials()
	}
	c := &Client{opts: o, conns: map[string]*pooledConn{}, retired: map[*pooledConn]bool{}}
	c.dialOpts = []grpc.DialOption{
		grpc.WithTransportCredentials(o.creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.maxRecvMsgBytes)),
		// A backend that stops answering altogether (a partition, a
		// frozen host) is dropped within about 20s and its hosts move:
		// pings every 15s while streams are open (fetchd lets a client
		// ping every 10s), 5s to answer.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 15 * time.Second, Timeout: 5 * time.Second}),
		// Reconnect on the client's own backoff schedule, not gRPC's
		// default (1s growing to 2m), so a restarted backend is found again
		// within the retry budget.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  o.backoffBase,
				Multiplier: 2,
				Jitter:     0.2,
				MaxDelay:   o.backoffMax,
			},
			MinConnectTimeout: o.connectTimeout,
		}),
	}
	if o.token != "" {
		c.dialOpts = append(c.dialOpts, grpc.WithPerRPCCredentials(bearerToken{token: o.token, requireTLS: !o.insecure}))
	}
	c.dialOpts = append(c.dialOpts, o.dialOptions...)

	target = strings.TrimSpace(target)
	switch {
	case target == "":
		return nil, errors.New("client: empty target")
	case o.resolver != nil && strings.HasPrefix(target, o.resolver.Scheme()+":"):
		c.members = newMembers(target, o.resolver, c.resolved)
	case strings.HasPrefix(target, "dns:///"):
		if _, _, err := splitHostPort(strings.TrimPrefix(target, "dns:///")); err != nil {
			return nil, fmt.Errorf("%w %q: %w; %s", ErrBadTarget, target, err, targetForms)
		}
		c.members = newMembers(target, resolver.Get("dns"), c.resolved)
	default:
		for _, a := range strings.Split(target, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if err := checkAddr(a); err != nil {
				return nil, fmt.Errorf("%w %q: %w; %s", ErrBadTarget, a, err, targetForms)
			}
			c.static = append(c.static, a)
		}
	}
	for _, a := range c.static {
		if _, err := c.connLocked(a); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// checkAddr reports why gRPC could not dial addr, one address of a target:
// it must be host:port or a URI with a registered resolver's scheme. gRPC
// itself takes an unknown scheme ("http://host:port") as part of a host
// name to pass through to the dialer, which then fails on every attempt.
func checkAddr(addr string) error {
	if u, err := url.Parse(addr); err == nil && u.Scheme != "" && resolver.Get(u.Scheme) != nil {
		return nil
	}
	if scheme, _, ok := strings.Cut(addr, "://"); ok {
		return fmt.Errorf("no gRPC resolver for scheme %q (fetchd is not reached by a URL)", scheme)
	}
	_, _, err := splitHostPort(addr)
	return err
}

// splitHostPort splits host:port and checks that the port is a number from
// 1 to 65535.
func splitHostPort(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", err
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return host, port, nil
}

// Close closes every connection. Calls in progress fail. For a client of
// [NewEmbedded] it stops the engine, as NewEmbedded says.
func (c *Client) Close() error {
	if c.members != nil {
		c.members.close() // first: its resolver may report, taking c.mu
	}
	if c.engine != nil {
		defer c.engine.stop() // after c.mu is released
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for a, pc := range c.conns {
		errs = append(errs, pc.cc.Close())
		delete(c.conns, a)
	}
	for pc := range c.retired {
		errs = append(errs, pc.cc.Close())
		delete(c.retired, pc)
	}
	return errors.Join(errs...)
}

// bearerToken sends a bearer token on every call, over TLS unless the
// caller chose WithInsecure.
type bearerToken struct {
	token      string
	requireTLS bool
}

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}

func (t bearerToken) RequireTransportSecurity() bool { return t.requireTLS }
