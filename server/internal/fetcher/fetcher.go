package fetcher

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/egress"
	"github.com/fetchd/fetchd/server/internal/h1"
)

// Fetcher performs jobs over one shared HTTP transport. It is safe for
// concurrent use.
type Fetcher struct {
	client       *http.Client
	transport    *http.Transport
	lean         *h1.Transport // nil with EngineNetHTTP
	policy       *egress.Policy
	maxRedirects int
	userAgent    string
	idleRead     time.Duration // 0: no idle-read deadline
	hide         bool          // keep addresses out of result messages
	log          *slog.Logger  // for the errors hide keeps from results
}

// New returns a Fetcher for cfg.
func New(cfg Config) *Fetcher {
	cfg.resolve()
	dialer := &net.Dialer{
		Timeout:        cfg.DialTimeout,
		KeepAlive:      30 * time.Second,
		ControlContext: cfg.Policy.Control,
		Resolver:       cfg.Resolver,
	}
	// net/http's connections: an answer sent before a reset beats the
	// write error (replyConn), and silence is timed (idleConn, outermost).
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		if d := cfg.IdleReadTimeout; d > 0 {
			return &idleConn{Conn: newReplyConn(c), timeout: d}, nil
		}
		return newReplyConn(c), nil
	}
	// Both engines pool connections alike.
	idleConns, idleConnTimeout := max(cfg.Conns, 100), 90*time.Second
	tr := &http.Transport{
		Proxy:                  nil, // never from the environment: the guard must see the target
		DialContext:            dial,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
		TLSHandshakeTimeout:    cfg.TLSHandshakeTimeout,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           idleConns,
		MaxIdleConnsPerHost:    cfg.Conns,
		IdleConnTimeout:        idleConnTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: cfg.MaxResponseHeaderBytes,
	}
	f := &Fetcher{
		transport:    tr,
		policy:       cfg.Policy,
		maxRedirects: cfg.MaxRedirects,
		userAgent:    cfg.UserAgent,
		idleRead:     cfg.IdleReadTimeout,
		hide:         cfg.HideAddresses,
		log:          cfg.Logger,
	}
	var rt http.RoundTripper = tr
	if f.idleRead > 0 {
		rt = idleReadTransport{tr}
	}
	rt = stdTransport{rt}
	if cfg.Engine == EngineLean {
		f.lean = &h1.Transport{
			DialContext:            dialer.DialContext,
			MaxIdleConns:           idleConns,
			MaxIdleConnsPerHost:    cfg.Conns,
			IdleConnTimeout:        idleConnTimeout,
			IdleReadTimeout:        cfg.IdleReadTimeout,
			ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
			MaxResponseHeaderBytes: cfg.MaxResponseHeaderBytes,
		}
		rt = router{lean: f.lean, std: rt}
	}
	if cfg.TracerProvider != nil {
		rt = otelhttp.NewTransport(rt,
			otelhttp.WithTracerProvider(cfg.TracerProvider),
			// traceparent only: the caller's baggage is not for upstreams.
			otelhttp.WithPropagators(propagation.TraceContext{}))
	}
	f.client = &http.Client{Transport: rt, CheckRedirect: f.checkRedirect}
	return f
}

// Close closes idle connections. In-flight fetches are not affected.
func (f *Fetcher) Close() {
	f.transport.CloseIdleConnections()
	if f.lean != nil {
		f.lean.CloseIdleConnections()
	}
}

// router sends each request through the lean engine if it can carry it,
// else through net/http.
type router struct {
	lean *h1.Transport
	std  http.RoundTripper
}

func (r router) RoundTrip(req *http.Request) (*http.Response, error) {
	if h1.Supports(req) == nil {
		return r.lean.RoundTrip(req)
	}
	return r.std.RoundTrip(req)
}

// errJobTimeout is the cause of a job context whose timeout expired.
var errJobTimeout = errors.New("job timeout expired")

// Fetch performs job, which it may modify (it sets a default User-Agent and
// drops Accept-Encoding), and fills in result: status,
// headers, body (or, with job.Discard, only its count), body_length,
// body_sha256 (with job.Digest), truncated, final URL, duration and, when
// no complete response was obtained, error. With job.Chunk a long body goes
// to job.Sink in chunks instead, and result.Streamed is set. It returns when
// the body has been read or the job failed; ctx cancels it. It returns the
// bytes of the job.Memory budget that result.Body holds, for the caller to
// release once it has sent the result.
//
// The host and port of the job's URL and of every redirect must pass the
// policy's URL checks ([egress.Policy.CheckHost], [egress.Policy.CheckPort])
// before anything is resolved, else the job fails with ERROR_CODE_BLOCKED.
//
// A caller's Accept-Encoding is dropped: the transport asks for gzip itself
// and decodes it, so the body is returned decoded and the body cap always
// applies to the decoded size (a gzip bomb is small on the wire). An
// encoding the upstream sends unasked is returned as received, capped.
func (f *Fetcher) Fetch(ctx context.Context, job *Job, result *fetchv1.FetchResponse) (held int64) {
	start := time.Now()
	held, err := f.fetch(ctx, job, result)
	result.Duration = durationpb.New(time.Since(start))
	if err != nil {
		result.Error = f.callerError(ctx, job, Classify(ctx, err))
	}
	return held
}

func (f *Fetcher) fetch(parent context.Context, job *Job, result *fetchv1.FetchResponse) (int64, error) {
	if err := f.checkURL(job.URL); err != nil {
		return 0, &Error{Code: fetchv1.ErrorCode_ERROR_CODE_BLOCKED, Err: err}
	}
	ctx, cancel := context.WithTimeoutCause(parent, job.Timeout, errJobTimeout)
	defer cancel()

	var body io.Reader
	if len(job.Body) > 0 {
		body = bytes.NewReader(job.Body)
	}
	// The URL is parsed already: the request gets a copy of it rather than
	// its string to parse again.
	req, err := http.NewRequestWithContext(ctx, job.Method, "", body)
	if err != nil {
		return 0, &Error{Code: fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST, Err: err}
	}
	u := *job.URL
	u.Host = strings.TrimSuffix(u.Host, ":") // as NewRequest does: "host:" is "host"
	req.URL, req.Host = &u, u.Host
	req.Header = job.Header
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{f.userAgent}
	}
	// With no Accept-Encoding of ours the transport asks for gzip and
	// decodes it, so that the cap below counts decoded bytes.
	delete(req.Header, "Accept-Encoding")
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, withCause(ctx, err)
	}
	defer resp.Body.Close()

	result.StatusCode = int32(resp.StatusCode)
	result.FinalUrl = resp.Request.URL.String()
	result.Headers = headersProto(resp.Header)
	held, err := readBody(ctx, job.Memory, resp.Body, resp.ContentLength, job, result)
	if err != nil {
		return held, withCause(ctx, fmt.Errorf("read body: %w", err))
	}
	return held, nil
}

// withCause adds the job context's cause to err, so that [Classify] can
// tell a job timeout from a cancelled caller.
func withCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}

// headersProto converts h to repeated headers sorted by name, keeping every
// value of a repeated field in the order received. Bytes that are not UTF-8
// are read as ISO-8859-1 ([headerText]).
func headersProto(h http.Header) []*fetchv1.Header {
	n := 0
	keys := make([]string, 0, len(h))
	for k, vs := range h {
		keys = append(keys, k)
		n += len(vs)
	}
	slices.Sort(keys)
	out := make([]*fetchv1.Header, 0, n)
	backing := make([]fetchv1.Header, n)
	i := 0
	for _, k := range keys {
		for _, v := range h[k] {
			backing[i].Name, backing[i].Value = headerText(k), headerText(v)
			out = append(out, &backing[i])
			i++
		}
	}
	return out
}

// keptOnHostChange are the request headers still sent after a redirect to
// another host; every other caller-supplied header is dropped.
var keptOnHostChange = map[string]bool{"Accept": true, "Accept-Language": true, "User-Agent": true}

// checkRedirect caps redirect hops, refuses schemes other than http and
// https and hosts or ports the policy refuses, and, when the host changes,
// drops caller headers and refuses to resend a request body. Each hop dials
// anew through the egress guard.
func (f *Fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > f.maxRedirects {
		return &Error{Code: fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED,
			Err: fmt.Errorf("stopped after %d redirects", f.maxRedirects)}
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return &Error{Code: fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED,
			Err: fmt.Errorf("redirect to scheme %q refused", req.URL.Scheme)}
	}
	if err := f.checkURL(req.URL); err != nil {
		return &Error{Code: fetchv1.ErrorCode_ERROR_CODE_BLOCKED, Err: fmt.Errorf("redirect: %w", err)}
	}
	if req.URL.Host != via[0].URL.Host {
		if req.Body != nil && req.Body != http.NoBody {
			return &Error{Code: fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED,
				Err: fmt.Errorf("%s redirect to another host %q would resend the request body", req.Response.Status, req.URL.Host)}
		}
		for k := range req.Header {
			if !keptOnHostChange[k] {
				delete(req.Header, k)
			}
		}
	}
	return nil
}

// checkURL applies the policy's URL checks to u, before any name is
// resolved: the host name lists, then the port (the scheme's default if u
// names none). A port that does not parse is left to the transport to
// refuse.
func (f *Fetcher) checkURL(u *url.URL) error {
	if err := f.policy.CheckHost(u.Hostname()); err != nil {
		return err
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil
	}
	return f.policy.CheckPort(uint16(n))
}
