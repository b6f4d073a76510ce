package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/fetchd/fetchd/internal/testbuf"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/server"
)

// The tests run fetchctl against an in-process fetchd on a real loopback
// listener, with internal/testupstream (or an echoing httptest server) as
// the upstream: through run, in process, for most cases, and through the
// built binary (process_test.go) for stdin, signals and exit codes.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	}))
}

// startBackend serves an in-process fetchd on 127.0.0.1, allowed to fetch
// from loopback, and returns its address; it stops when tb ends.
func startBackend(tb testing.TB, opts ...grpc.ServerOption) string {
	tb.Helper()
	addr, _ := startStoppableBackend(tb, opts...)
	return addr
}

// startStoppableBackend is startBackend that also returns a function that
// stops the backend abruptly (its streams break), at most once.
func startStoppableBackend(tb testing.TB, opts ...grpc.ServerOption) (addr string, stop func()) {
	tb.Helper()
	return startServer(tb, opts)
}

// startServer is startStoppableBackend with options for the fetchd server
// too.
func startServer(tb testing.TB, opts []grpc.ServerOption, srvOpts ...server.Option) (addr string, stop func()) {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := server.New(append([]server.Option{server.WithAllowCIDRs(netip.MustParsePrefix("127.0.0.0/8")),
		server.WithLogger(slog.New(slog.DiscardHandler))}, srvOpts...)...)
	gs := grpc.NewServer(opts...)
	srv.Register(gs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gs.Serve(lis)
	}()
	stop = sync.OnceFunc(func() {
		gs.Stop()
		<-done
		srv.Close()
	})
	tb.Cleanup(stop)
	return lis.Addr().String(), stop
}

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(tb testing.TB) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// echo is an upstream that answers "METHOD BODY X-TEST-VALUES" and records
// the requests it got; /bin answers bytes that are not UTF-8, /redirect
// redirects to /.
type echo struct {
	*httptest.Server
	mu   sync.Mutex // guards reqs
	reqs []string
}

func startEcho(tb testing.TB) *echo {
	tb.Helper()
	e := &echo{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bin":
			w.Write([]byte{0xff, 0xfe, 0, 'a'})
			return
		case "/redirect":
			http.Redirect(w, r, "/", http.StatusFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		s := fmt.Sprintf("%s %s %s", r.Method, body, strings.Join(r.Header.Values("X-Test"), ","))
		e.mu.Lock()
		e.reqs = append(e.reqs, r.URL.Path+": "+s)
		e.mu.Unlock()
		fmt.Fprint(w, s)
	}))
	tb.Cleanup(e.Close)
	return e
}

func (e *echo) requests() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.reqs...)
}

// ctlRun is what one fetchctl run printed and its exit status.
type ctlRun struct {
	args    []string
	stdout  string
	stderr  string
	code    int
	elapsed time.Duration
}

// runCtl calls run in process with stdin and env (FETCHCTL_* variables),
// and maps its error to an exit status as main does.
func runCtl(tb testing.TB, stdin io.Reader, env map[string]string, args ...string) *ctlRun {
	tb.Helper()
	return runCtlCtx(testctx.WithTimeout(tb, 30*time.Second), tb, stdin, env, args...)
}

func runCtlCtx(ctx context.Context, tb testing.TB, stdin io.Reader, env map[string]string, args ...string) *ctlRun {
	tb.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var stdout bytes.Buffer
	var stderr testbuf.Buffer
	start := time.Now()
	err := run(ctx, args, stdin, &stdout, &stderr, func(name string) string { return env[name] })
	code := exitCode(err, &stderr)
	return &ctlRun{args: args, stdout: stdout.String(), stderr: stderr.String(), code: code, elapsed: time.Since(start)}
}

// lines decodes the result lines of stdout.
func (r *ctlRun) lines(tb testing.TB) []resultLine {
	tb.Helper()
	var out []resultLine
	for l := range strings.Lines(r.stdout) {
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		var rl resultLine
		if err := dec.Decode(&rl); err != nil {
			tb.Fatalf("fetchctl %q printed %q, not a result line: %v", r.args, l, err)
		}
		out = append(out, rl)
	}
	return out
}

// wantCode fails tb unless the run exited with code.
func (r *ctlRun) wantCode(tb testing.TB, code int) {
	tb.Helper()
	if r.code != code {
		tb.Fatalf("fetchctl %q exited %d, want %d\nstdout:\n%s\nstderr:\n%s", r.args, r.code, code, r.stdout, r.stderr)
	}
}

// byIndex returns the lines keyed by index, failing on duplicates.
func byIndex(tb testing.TB, lines []resultLine) map[uint64]resultLine {
	tb.Helper()
	m := make(map[uint64]resultLine, len(lines))
	for _, l := range lines {
		if _, dup := m[l.Index]; dup {
			tb.Fatalf("two results for index %d", l.Index)
		}
		m[l.Index] = l
	}
	return m
}

// indexes returns the index of each line, in order.
func indexes(lines []resultLine) []uint64 {
	out := make([]uint64, len(lines))
	for i, l := range lines {
		out[i] = l.Index
	}
	return out
}

// jsonKeys returns the top-level keys of a JSON object, in order.
func jsonKeys(tb testing.TB, line string) []string {
	tb.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		tb.Fatalf("%q: not a JSON object", line)
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			tb.Fatalf("%q: %v", line, err)
		}
		keys = append(keys, t.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			tb.Fatalf("%q: %v", line, err)
		}
	}
	return keys
}

var errNoLine = errors.New("no such line")

// stderrLine returns the line of stderr that starts with prefix.
func stderrLine(stderr, prefix string) (string, error) {
	for l := range strings.Lines(stderr) {
		if strings.HasPrefix(l, prefix) {
			return strings.TrimSuffix(l, "\n"), nil
		}
	}
	return "", errNoLine
}
