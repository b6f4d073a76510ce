package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/fetchd/fetchd/cmd/fetchd/internal/callerlimit"
	"github.com/fetchd/fetchd/cmd/fetchd/internal/peers"
	"github.com/fetchd/fetchd/cmd/fetchd/internal/recvlimit"
	"github.com/fetchd/fetchd/server"
)

// config is fetchd's configuration, from flags and FETCHD_* variables:
// the server's [server.Config], onto whose fields the server's flags bind,
// and the command's own settings.
type config struct {
	srv server.Config

	// The flag values of the server's settings that flags spell another
	// way, kept for the checks of the values given.
	maxRedirects    offInt
	hostConcurrency offInt
	idleReadTimeout offDuration
	maxRetryAfter   offDuration

	listen               string
	upstreamCAFile       string
	drainTimeout         time.Duration
	maxRecvMsgBytes      int
	recvMemory           int64
	maxConcurrentStreams uint
	metricsListen        string
	healthListen         string
	httpListen           string
	pprofListen          string
	tlsCert              string
	tlsKey               string
	tlsClientCA          string
	authTokenFile        string
	rateLimit            float64
	rateBurst            int
	maxConnections       int
	maxConnectionsPerIP  int
	logFormat            string
	logLevel             slog.Level
	peers                string // -peers: the DNS name, from dns:///NAME:PORT
	peersInterval        time.Duration
}

// envName is the environment fallback of a flag: FETCHD_ and its name in
// upper case with dashes as underscores.
func envName(flagName string) string {
	return "FETCHD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("fetchd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.listen, "listen", "localhost:50051", "`address` to serve gRPC on")
	fs.IntVar(&cfg.srv.Concurrency, "concurrency", server.DefaultConcurrency, "most fetches in flight at once, across all streams (the worker pool)")
	fs.IntVar(&cfg.srv.StreamWindow, "stream-window", 0, fmt.Sprintf("most jobs one stream may have in flight plus results waiting to be sent; below -concurrency, one stream cannot use the whole pool (0: 2 x -concurrency, at least %d)", server.DefaultStreamWindow))
	fs.Var(cidrList{&cfg.srv.AllowCIDRs}, "allow-cidr", "open a `CIDR` range the egress policy denies by default, e.g. 127.0.0.0/8 (repeatable, or comma-separated). A cloud metadata address opens only to itself, e.g. 168.63.129.16/32, never to a wider range")
	fs.Var(cidrList{&cfg.srv.DenyCIDRs}, "deny-cidr", "refuse a `CIDR` range even if public or allowed (repeatable, or comma-separated)")
	fs.BoolVar(&cfg.srv.AllowPrivate, "allow-private", false, "open the private ranges 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7 (not loopback, link-local or the cloud metadata addresses inside them, such as 100.100.100.200 and fd00:ec2::/32): only for internal deployments")
	fs.Var(portList{&cfg.srv.AllowPorts}, "allow-port", "refuse every destination `port` but these (repeatable, or comma-separated; default: all)")
	fs.Var(hostList{&cfg.srv.AllowHosts}, "allow-host", "refuse every host name but these `patterns`: example.com, *.example.com (repeatable, or comma-separated; default: all)")
	fs.Var(hostList{&cfg.srv.DenyHosts}, "deny-host", "refuse host names matching these `patterns`, even if allowed (repeatable, or comma-separated)")
	fs.Var(cfg.idleReadTimeout.bind(&cfg.srv.IdleReadTimeout, server.DefaultIdleReadTimeout), "idle-read-timeout", "fail a job whose upstream sends nothing for this long (0: off)")
	fs.Var(notBool{&cfg.srv.NetHTTP}, "lean-http", "fetch plain-http upstreams with the lean HTTP/1.1 engine (about half of net/http's CPU per request); false: net/http for everything. https always uses net/http")
	fs.StringVar(&cfg.upstreamCAFile, "upstream-ca-file", "", "trust the CA certificates in this PEM `file` for upstream TLS, besides the system roots")
	fs.Int64Var(&cfg.srv.MaxBodyBytes, "max-body-bytes", server.DefaultMaxBodyBytes, "response body cap per job; longer bodies are truncated. Keep it below the callers' gRPC receive limit (4 MiB by default)")
	fs.Int64Var(&cfg.srv.MaxDiscardBytes, "max-discard-bytes", server.DefaultMaxDiscardBytes, "cap of a body read but not returned (streams with discard_body): it is counted and digested through a small buffer, never held, and marked truncated beyond this; -max-body-bytes does not apply to it")
	fs.Int64Var(&cfg.srv.MaxStreamBodyBytes, "max-stream-body-bytes", server.DefaultMaxStreamBodyBytes, "cap of a body sent in chunks (streams with chunk_bytes): it is read and sent one chunk at a time, never held whole, and marked truncated beyond this")
	fs.Int64Var(&cfg.srv.BodyMemory, "body-memory", 0, fmt.Sprintf("budget of body bytes held at once across all streams (bodies read whole, chunks on their way, results not yet sent; a body's first 64 KiB does not count): a fetch whose body would go over it waits, reading nothing, until results are sent (0: %d MiB, or 2 x (-max-body-bytes + 1) if more)", server.DefaultBodyMemory>>20))
	fs.Int64Var(&cfg.srv.JobMemory, "job-memory", server.DefaultJobMemory, "budget of the jobs held at once across all streams (read and not yet answered: URL, headers, request body): a stream whose next job would go over it stops being read, and HTTP/2 flow control holds its caller. One caller (its token, else its IP) holds at most half of it, and of -body-memory")
	fs.DurationVar(&cfg.srv.DefaultTimeout, "default-timeout", server.DefaultTimeout, "timeout of a job that sets none")
	fs.DurationVar(&cfg.srv.MaxTimeout, "max-timeout", server.DefaultMaxTimeout, "longest timeout a job may ask for")
	fs.Var(cfg.maxRedirects.bind(&cfg.srv.MaxRedirects, server.DefaultMaxRedirects), "max-redirects", "most redirects followed per job (0: none)")
	fs.DurationVar(&cfg.drainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM or SIGINT, how long in-flight jobs may take to finish before the server stops")
	fs.IntVar(&cfg.maxRecvMsgBytes, "max-recv-msg-bytes", 4<<20, "largest gRPC request message accepted (a job, or a whole FetchBatch request). gRPC holds a message's bytes as they arrive until it is whole, outside -job-memory: -recv-memory bounds them")
	fs.Int64Var(&cfg.srv.RequestMemory, "batch-memory", server.DefaultRequestMemory, "budget of the FetchBatch requests held by their calls (each is one message, up to -max-recv-msg-bytes, held while its jobs are read from it): a batch takes -max-recv-msg-bytes of its caller's half before its request is read, so a caller's batches beyond it wait unread. At least -max-recv-msg-bytes")
	fs.Int64Var(&cfg.recvMemory, "recv-memory", recvlimit.DefaultBudget, "budget of the request bytes gRPC holds in messages not yet whole, across all connections (counted after TLS as they arrive, before -job-memory sees them): when it is over, the connection holding the most is closed. At least -max-recv-msg-bytes")
	fs.UintVar(&cfg.maxConcurrentStreams, "max-concurrent-streams", 100, "most concurrent gRPC streams per client connection (a client queues the streams beyond it)")
	fs.StringVar(&cfg.srv.UserAgent, "user-agent", server.DefaultUserAgent, "User-Agent sent with jobs that set none")
	fs.IntVar(&cfg.srv.StreamQueue, "stream-queue", 0, fmt.Sprintf("most jobs one stream may have read and not yet started (waiting for a busy or rate-limited host) (0: 16 x -stream-window, at least %d)", server.DefaultStreamQueue))
	fs.Var(cfg.hostConcurrency.bind(&cfg.srv.HostConcurrency, server.DefaultHostConcurrency), "host-concurrency", "most fetches in flight to one host, across all streams (0: no cap)")
	fs.Float64Var(&cfg.srv.HostRate, "host-rate", 0, "most requests per second to one host, across all streams (0: no limit)")
	fs.Var(notBool{&cfg.srv.DisableDedup}, "dedup", "identical GET/HEAD jobs of one caller in flight at the same time share one fetch; each keeps its own timeout")
	fs.BoolVar(&cfg.srv.DedupAcrossCallers, "dedup-across-callers", false, "let identical jobs of different callers (token identities, else IP addresses) share a fetch too; shared: true then tells a caller that another fetched the same URL")
	fs.BoolVar(&cfg.srv.HideAddresses, "hide-addresses", false, "keep resolved addresses out of result messages: a refused destination and a name that does not resolve both get BLOCKED with one message; the details are logged at debug level")
	fs.IntVar(&cfg.srv.RetryAttempts, "retry-attempts", server.DefaultRetryAttempts, "attempts per job, the first included, for jobs that set no retry policy (1: no retries)")
	fs.IntVar(&cfg.srv.MaxRetryAttempts, "max-retry-attempts", server.DefaultMaxRetryAttempts, "most attempts a job may ask for")
	fs.DurationVar(&cfg.srv.RetryBackoff, "retry-backoff", server.DefaultRetryBackoff, "first backoff before a retry, doubled each attempt, with jitter")
	fs.DurationVar(&cfg.srv.MaxRetryBackoff, "max-retry-backoff", server.DefaultMaxRetryBackoff, "longest backoff between attempts")
	fs.Var(cfg.maxRetryAfter.bind(&cfg.srv.MaxRetryAfter, server.DefaultMaxRetryAfter), "max-retry-after", "longest Retry-After honoured; longer ones are cut to this")
	fs.StringVar(&cfg.metricsListen, "metrics-listen", "", "`address` to serve Prometheus metrics on, at /metrics (empty: off)")
	fs.StringVar(&cfg.healthListen, "health-listen", "", "`address` to also serve grpc.health.v1 on, in plaintext and without auth, for probes that cannot speak TLS (empty: off)")
	fs.StringVar(&cfg.httpListen, "http-listen", "", "`address` to also serve FetchBatch on as HTTP/JSON, HTTP/1.1 and HTTP/2: POST /v1/fetch with a protobuf-JSON FetchBatchRequest streams back one JSON result per line; TLS, auth, rate limit and limits as on -listen (empty: off)")
	fs.StringVar(&cfg.pprofListen, "pprof-listen", "", "`address` to serve Go's /debug/pprof profiles on, for diagnosis; keep it on loopback (empty: off)")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "serve gRPC over TLS with this certificate `file` (PEM; needs -tls-key)")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "private key `file` for -tls-cert (PEM)")
	fs.StringVar(&cfg.tlsClientCA, "tls-client-ca", "", "require client certificates signed by a CA in this `file` (PEM): mutual TLS")
	fs.StringVar(&cfg.authTokenFile, "auth-token-file", "", "require \"authorization: Bearer TOKEN\" with a token from this `file` (one per line; health stays open)")
	fs.Float64Var(&cfg.rateLimit, "rate-limit", 0, "most calls (streams) per second per caller: its token identity, else its IP (0: no limit)")
	fs.IntVar(&cfg.rateBurst, "rate-burst", 20, "calls a caller may make at once above -rate-limit")
	fs.IntVar(&cfg.maxConnections, "max-connections", 1024, "most client connections open at once; when full, a new connection takes the slot of the one idle longest (no fetch stream in progress; those that never began a call first), and is refused only if every one has a fetch in progress. The -http-listen port has its own count of the same size, without eviction: a connection over it is closed at once (0: no limit)")
	fs.IntVar(&cfg.maxConnectionsPerIP, "max-connections-per-ip", 0, "most client connections open at once from one IP address, with the same eviction as -max-connections (0: a quarter of -max-connections, at least 1; no limit if -max-connections is 0)")
	fs.Func("peers", "share each host's -host-concurrency and -host-rate with the other replicas: this `dns:///NAME:PORT` (a headless Service) has one address per replica, and each allows max(1, cap/N) in flight and rate/N per host, N the number of addresses, looked up before serving and every -peers-interval (empty: off, N = 1)", func(v string) error {
		if v == "" {
			cfg.peers = "" // off, over FETCHD_PEERS too
			return nil
		}
		name, err := peers.ParseTarget(v)
		cfg.peers = name
		return err
	})
	fs.DurationVar(&cfg.peersInterval, "peers-interval", peers.DefaultInterval, "how often -peers is looked up again; a failed lookup keeps the last N")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "log format: text or json")
	fs.TextVar(&cfg.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: fetchd [flags]\n\nfetchd serves fetch.v1.FetchService over gRPC: it fetches URLs for its callers.\nEvery flag may also be set by the environment variable shown; a flag on the\ncommand line replaces its variable, list flags included (repeats of a list\nflag on the command line add up).\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			if v, ok := f.Value.(interface{ typeName() string }); ok && name == "value" {
				name = v.typeName() // as the flag package names its own types
			}
			fmt.Fprintf(fs.Output(), "  -%s %s\n    \t%s (env %s", f.Name, name, usage, envName(f.Name))
			if f.DefValue != "" {
				fmt.Fprintf(fs.Output(), "; default %s", f.DefValue)
			}
			fmt.Fprintln(fs.Output(), ")")
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	// Environment fallbacks for the flags not on the command line. A flag
	// given on the command line replaces its variable, list flags too:
	// adding the two up would widen an allow list the operator narrowed.
	// Repeats of a list flag on the command line add up among themselves.
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if onCommandLine[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case cfg.srv.Concurrency < 1:
		return nil, fmt.Errorf("-concurrency %d: must be at least 1", cfg.srv.Concurrency)
	case cfg.srv.StreamWindow < 0:
		return nil, fmt.Errorf("-stream-window %d: must not be negative (0: derived from -concurrency)", cfg.srv.StreamWindow)
	case cfg.srv.MaxBodyBytes < 1:
		return nil, fmt.Errorf("-max-body-bytes %d: must be at least 1", cfg.srv.MaxBodyBytes)
	case cfg.srv.MaxDiscardBytes < 1:
		return nil, fmt.Errorf("-max-discard-bytes %d: must be at least 1", cfg.srv.MaxDiscardBytes)
	case cfg.srv.MaxStreamBodyBytes < 1:
		return nil, fmt.Errorf("-max-stream-body-bytes %d: must be at least 1", cfg.srv.MaxStreamBodyBytes)
	case cfg.srv.JobMemory < 1:
		return nil, fmt.Errorf("-job-memory %d: must be at least 1", cfg.srv.JobMemory)
	case cfg.srv.BodyMemory < 0:
		return nil, fmt.Errorf("-body-memory %d: must not be negative (0: the default)", cfg.srv.BodyMemory)
	case cfg.srv.BodyMemory != 0 && cfg.srv.BodyMemory <= cfg.srv.MaxBodyBytes:
		return nil, fmt.Errorf("-body-memory %d cannot hold one body at -max-body-bytes %d: make it at least %d", cfg.srv.BodyMemory, cfg.srv.MaxBodyBytes, cfg.srv.MaxBodyBytes+1)
	case cfg.srv.DefaultTimeout <= 0 || cfg.srv.MaxTimeout <= 0:
		return nil, fmt.Errorf("-default-timeout and -max-timeout must be positive")
	case cfg.srv.DefaultTimeout > cfg.srv.MaxTimeout:
		return nil, fmt.Errorf("-default-timeout %v is over -max-timeout %v", cfg.srv.DefaultTimeout, cfg.srv.MaxTimeout)
	case cfg.maxRedirects.given < 0:
		return nil, fmt.Errorf("-max-redirects %d: must not be negative", cfg.maxRedirects.given)
	case cfg.drainTimeout < 0:
		return nil, fmt.Errorf("-drain-timeout %v: must not be negative", cfg.drainTimeout)
	case cfg.idleReadTimeout.given < 0:
		return nil, fmt.Errorf("-idle-read-timeout %v: must not be negative", cfg.idleReadTimeout.given)
	case cfg.srv.StreamQueue < 0:
		return nil, fmt.Errorf("-stream-queue %d: must not be negative (0: derived from -stream-window)", cfg.srv.StreamQueue)
	case cfg.hostConcurrency.given < 0 || cfg.srv.HostRate < 0:
		return nil, fmt.Errorf("-host-concurrency and -host-rate must not be negative")
	case cfg.srv.RetryAttempts < 1 || cfg.srv.MaxRetryAttempts < cfg.srv.RetryAttempts:
		return nil, fmt.Errorf("-retry-attempts %d and -max-retry-attempts %d: need 1 <= retry-attempts <= max-retry-attempts", cfg.srv.RetryAttempts, cfg.srv.MaxRetryAttempts)
	case cfg.srv.RetryBackoff <= 0 || cfg.srv.MaxRetryBackoff < cfg.srv.RetryBackoff || cfg.maxRetryAfter.given < 0:
		return nil, fmt.Errorf("-retry-backoff must be positive and at most -max-retry-backoff; -max-retry-after must not be negative")
	case cfg.maxRecvMsgBytes < 1:
		return nil, fmt.Errorf("-max-recv-msg-bytes %d: must be at least 1", cfg.maxRecvMsgBytes)
	case cfg.srv.RequestMemory < int64(cfg.maxRecvMsgBytes):
		return nil, fmt.Errorf("-batch-memory %d cannot hold one request at -max-recv-msg-bytes %d: make it at least %d", cfg.srv.RequestMemory, cfg.maxRecvMsgBytes, cfg.maxRecvMsgBytes)
	case cfg.recvMemory < int64(cfg.maxRecvMsgBytes):
		return nil, fmt.Errorf("-recv-memory %d cannot hold one message at -max-recv-msg-bytes %d: make it at least %d", cfg.recvMemory, cfg.maxRecvMsgBytes, cfg.maxRecvMsgBytes)
	case cfg.maxConcurrentStreams < 1:
		return nil, fmt.Errorf("-max-concurrent-streams %d: must be at least 1", cfg.maxConcurrentStreams)
	case (cfg.tlsCert == "") != (cfg.tlsKey == ""):
		return nil, fmt.Errorf("-tls-cert and -tls-key go together")
	case cfg.tlsClientCA != "" && cfg.tlsCert == "":
		return nil, fmt.Errorf("-tls-client-ca needs -tls-cert and -tls-key")
	case cfg.rateLimit < 0 || cfg.rateBurst < 1:
		return nil, fmt.Errorf("-rate-limit must not be negative and -rate-burst must be at least 1")
	case cfg.maxConnections < 0:
		return nil, fmt.Errorf("-max-connections %d: must not be negative", cfg.maxConnections)
	case cfg.maxConnectionsPerIP < 0:
		return nil, fmt.Errorf("-max-connections-per-ip %d: must not be negative", cfg.maxConnectionsPerIP)
	case cfg.peersInterval <= 0:
		return nil, fmt.Errorf("-peers-interval %v: must be positive", cfg.peersInterval)
	case cfg.logFormat != "text" && cfg.logFormat != "json":
		return nil, fmt.Errorf("-log-format %q: must be text or json", cfg.logFormat)
	}
	return cfg, nil
}

// perIPConnections returns the per-IP connection limit:
// -max-connections-per-ip, or a quarter of -max-connections (0: none).
func (c *config) perIPConnections() int {
	if c.maxConnectionsPerIP > 0 || c.maxConnections == 0 {
		return c.maxConnectionsPerIP
	}
	return max(1, c.maxConnections/4)
}

func (c *config) logger(w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: c.logLevel}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// serverConfig returns the server's configuration: the flags' fields, the
// CA file loaded, and logger.
func (c *config) serverConfig(logger *slog.Logger) (server.Config, error) {
	sc := c.srv
	sc.Logger = logger
	// A caller is its token identity when auth is on, else its IP, as
	// for -rate-limit: dedup stays within it.
	sc.Caller = callerlimit.Key
	sc.MaxRecvMsgBytes = int64(c.maxRecvMsgBytes) // what a FetchBatch takes of -batch-memory before it is read
	if c.upstreamCAFile != "" {
		pool, err := server.LoadRootCAs(c.upstreamCAFile)
		if err != nil {
			return server.Config{}, fmt.Errorf("-upstream-ca-file: %w", err)
		}
		sc.UpstreamRootCAs = pool
	}
	return sc, nil
}
