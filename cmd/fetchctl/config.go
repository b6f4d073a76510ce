package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// config is fetchctl's configuration, from flags and FETCHCTL_* variables.
type config struct {
	addr           string
	ordered        bool
	concurrency    uint
	timeout        time.Duration
	window         int
	maxJobBytes    int
	maxAttempts    int
	retryBudget    int
	connectTimeout time.Duration
	spread         bool
	method         string
	headers        []*fetchv1.Header
	inputFile      string
	body           bool
	outDir         string
	digest         bool
	discard        bool
	failOnError    bool
	progress       string
	tls            bool
	tlsCA          string
	tlsCert        string
	tlsKey         string
	tlsServerName  string
	tokenFile      string
	urls           []string // the arguments
}

// usageError is a mistake on the command line: fetchctl exits 2.
type usageError struct {
	err   error
	shown bool // the flag package has already printed it, with the usage
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// headerList is a repeatable flag of "Name: value" headers; one value may
// hold several, one per line.
type headerList struct{ headers *[]*fetchv1.Header }

func (h headerList) String() string {
	if h.headers == nil {
		return ""
	}
	parts := make([]string, len(*h.headers))
	for i, hd := range *h.headers {
		parts[i] = hd.GetName() + ": " + hd.GetValue()
	}
	return strings.Join(parts, "\n")
}

func (h headerList) Set(s string) error {
	for line := range strings.SplitSeq(s, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return fmt.Errorf("%q: want \"Name: value\"", line)
		}
		*h.headers = append(*h.headers, &fetchv1.Header{Name: name, Value: strings.TrimSpace(value)})
	}
	return nil
}

// envName is the environment fallback of a flag: FETCHCTL_ and its name in
// upper case with dashes as underscores.
func envName(flagName string) string {
	return "FETCHCTL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

const usageHead = `Usage: fetchctl [flags] [URL...]

fetchctl sends fetch jobs to fetchd and prints one JSON line per result on
stdout, in completion order (or input order with -ordered), and a summary on
stderr. The jobs are the URL arguments or, without any, the lines of -i FILE
or of stdin, read as they are needed: a URL (fetched with -method and -H), or
a fetch.v1.FetchRequest in protobuf JSON, such as
  {"url":"https://example.com/","method":"POST","headers":[{"name":"A","value":"b"}],"body":"aGk=","timeout":"2s","id":"x"}
Blank lines and lines starting with # are skipped.

Exit status: 0 when every job got a result (a per-job error is a result);
1 when fetchd cannot be reached (at once when the first connection fails:
refused, or no answer within -connect-timeout), the input is malformed,
jobs got no result or no answer from fetchd, a per-job error happened with
-fail-on-error, or on SIGINT/SIGTERM; 2 on a usage error, such as an -addr
that is not host:port, a comma-separated list of them, or dns:///host:port.

Examples:
  fetchctl https://example.com/ https://example.org/
  fetchctl -addr fetchd:50051 -ordered -c 32 -timeout 10s -out bodies < urls.txt > results.jsonl
  fetchctl -discard -digest < links.txt    # status, size and SHA-256 of each, no bodies
  fetchctl -out dl -digest https://example.com/big.iso   # any size, streamed to dl/0.body

Every flag may also be set by the environment variable shown; a flag on the
command line wins (for -H, both add up).

`

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("fetchctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "localhost:50051", "fetchd `target`: host:port, a comma-separated list of replicas, or dns:///name:port")
	fs.BoolVar(&cfg.ordered, "ordered", false, "print results in input order instead of completion order")
	fs.UintVar(&cfg.concurrency, "c", 0, "most jobs of this run fetched at once (0: the server's limit)")
	fs.DurationVar(&cfg.timeout, "timeout", 0, "timeout of jobs that set none (0: the server's default)")
	fs.IntVar(&cfg.window, "window", client.DefaultWindow, "most jobs read ahead and not yet printed; bounds memory and the -ordered reorder buffer")
	fs.IntVar(&cfg.maxJobBytes, "max-job-bytes", client.DefaultMaxJobBytes, "largest job message sent; set it to fetchd's -max-recv-msg-bytes. A larger job gets ERROR_CODE_INVALID_REQUEST instead of ending the stream")
	fs.IntVar(&cfg.maxAttempts, "max-attempts", client.DefaultMaxAttempts, "times one job may be sent in all when streams break")
	fs.IntVar(&cfg.retryBudget, "retry-budget", client.DefaultRetryBudget, "failed attempts in a row to reach a fetchd again, after it was reached, before giving it up")
	fs.DurationVar(&cfg.connectTimeout, "connect-timeout", client.DefaultConnectTimeout, "most time to connect to a fetchd; when the first connection to each fails, fetchctl exits at once")
	fs.BoolVar(&cfg.spread, "spread", false, "with several replicas, send each job to whichever is free first instead of every job of a host to one replica: for one internal host without a cap. A host then gets up to the replicas times fetchd's -host-concurrency")
	fs.StringVar(&cfg.method, "method", "GET", "HTTP `method` of URL lines")
	fs.Var(headerList{&cfg.headers}, "H", "request `header` of URL lines, \"Name: value\" (repeatable; in FETCHCTL_H, one per line)")
	fs.StringVar(&cfg.inputFile, "i", "", "read jobs from `FILE` (- for stdin) instead of stdin")
	fs.BoolVar(&cfg.body, "body", false, "put each body in its line: \"body\" if UTF-8, else \"body_base64\" (held in memory; with -out, read back from its file)")
	fs.StringVar(&cfg.outDir, "out", "", "stream each body, of any size, to `DIR`/<index>.body (DIR is created) as it arrives, and name it in \"file\": "+
		"written to DIR/.<index>.body.tmp, renamed when the result has a response (a status, even truncated), to DIR/<index>.body.partial if the body failed part way, removed otherwise")
	fs.BoolVar(&cfg.digest, "digest", false, "ask fetchd for the SHA-256 of each body it read and put it in \"sha256\" (lowercase hex)")
	fs.BoolVar(&cfg.discard, "discard", false, "ask fetchd to read and count each body but return none; \"bytes\" is the count (not with -out or -body)")
	fs.BoolVar(&cfg.failOnError, "fail-on-error", false, "exit 1 if any job has an error")
	fs.StringVar(&cfg.progress, "progress", "auto", "progress bar on stderr: auto (when stderr is a terminal), always or never")
	fs.BoolVar(&cfg.tls, "tls", false, "connect to fetchd over TLS, with the system roots")
	fs.StringVar(&cfg.tlsCA, "tls-ca", "", "verify fetchd with the PEM roots in `FILE` (implies -tls)")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "client certificate PEM `FILE`, for mTLS (needs -tls-key; implies -tls)")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "client key PEM `FILE`, for mTLS (needs -tls-cert)")
	fs.StringVar(&cfg.tlsServerName, "tls-server-name", "", "`name` to verify fetchd's certificate against, instead of the host of -addr (implies -tls)")
	fs.StringVar(&cfg.tokenFile, "token-file", "", "send the bearer token in `FILE` (read once, trimmed); needs TLS")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			if name != "" {
				name = " " + name
			}
			fmt.Fprintf(fs.Output(), "  -%s%s\n    \t%s (env %s", f.Name, name, usage, envName(f.Name))
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
				fmt.Fprintf(fs.Output(), "; default %s", f.DefValue)
			}
			fmt.Fprintln(fs.Output(), ")")
		})
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = usagef("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{err: err, shown: true}
	}
	cfg.urls = fs.Args()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// check reports flag values that make no sense, as usage errors.
func (c *config) check() error {
	switch {
	case c.concurrency > math.MaxUint32:
		return usagef("-c %d: too large", c.concurrency)
	case c.timeout < 0:
		return usagef("-timeout %v: must not be negative", c.timeout)
	case c.window < 1:
		return usagef("-window %d: must be at least 1", c.window)
	case c.maxJobBytes < 1:
		return usagef("-max-job-bytes %d: must be at least 1", c.maxJobBytes)
	case c.maxAttempts < 1:
		return usagef("-max-attempts %d: must be at least 1", c.maxAttempts)
	case c.retryBudget < 1:
		return usagef("-retry-budget %d: must be at least 1", c.retryBudget)
	case c.connectTimeout <= 0:
		return usagef("-connect-timeout %v: must be positive", c.connectTimeout)
	case c.progress != "auto" && c.progress != "always" && c.progress != "never":
		return usagef("-progress %q: must be auto, always or never", c.progress)
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return usagef("-tls-cert and -tls-key go together")
	case c.tokenFile != "" && !c.useTLS():
		return usagef("-token-file needs TLS (-tls or -tls-ca): a bearer token is never sent in clear")
	case c.discard && c.outDir != "":
		return usagef("-discard asks fetchd for no bodies: there is nothing for -out to write")
	case c.discard && c.body:
		return usagef("-discard asks fetchd for no bodies: there is nothing for -body to print")
	case c.inputFile != "" && len(c.urls) > 0:
		return usagef("give URLs as arguments or -i %s, not both", c.inputFile)
	}
	return nil
}

func (c *config) useTLS() bool {
	return c.tls || c.tlsCA != "" || c.tlsCert != "" || c.tlsServerName != ""
}

// clientOptions returns the client options of the flags, reading the TLS
// and token files.
func (c *config) clientOptions() ([]client.Option, error) {
	opts := []client.Option{
		client.WithConcurrency(uint32(c.concurrency)),
		client.WithTimeout(c.timeout),
		client.WithDigest(c.digest),
		client.WithDiscardBody(c.discard),
		client.WithWindow(c.window),
		client.WithMaxJobBytes(c.maxJobBytes),
		client.WithMaxAttempts(c.maxAttempts),
		client.WithRetryBudget(c.retryBudget),
		client.WithConnectTimeout(c.connectTimeout),
		client.WithHostAffinity(!c.spread),
	}
	if c.useTLS() {
		cfg, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithTLS(cfg))
	}
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("-token-file: %w", err)
		}
		token := strings.TrimSpace(string(b))
		if token == "" {
			return nil, fmt.Errorf("-token-file %s: empty", c.tokenFile)
		}
		opts = append(opts, client.WithBearerToken(token))
	}
	return opts, nil
}

func (c *config) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: c.tlsServerName, MinVersion: tls.VersionTLS12}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("-tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-tls-ca %s: no PEM certificate in it", c.tlsCA)
		}
	}
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("-tls-cert, -tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
