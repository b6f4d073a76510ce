package client_test

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/fetchd/fetchd/server"
)

var binDir string

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	}))
}

// backend is an in-process fetchd on a real TCP listener.
type backend struct {
	addr string
	srv  *server.Server
	once sync.Once
	gs   *grpc.Server
	done chan struct{}
}

// startBackend serves an in-process fetchd on loopback, allowed to fetch
// from loopback; it stops when tb ends.
func startBackend(tb testing.TB, opts ...server.Option) *backend {
	tb.Helper()
	return startBackendAt(tb, "127.0.0.1:0", opts...)
}

// startBackendAt is startBackend on a given address.
func startBackendAt(tb testing.TB, addr string, opts ...server.Option) *backend {
	tb.Helper()
	return startBackendOn(tb, addr, nil, opts...)
}

// startBackendWith is startBackend with options for its gRPC server.
func startBackendWith(tb testing.TB, gopts []grpc.ServerOption, opts ...server.Option) *backend {
	tb.Helper()
	return startBackendOn(tb, "127.0.0.1:0", gopts, opts...)
}

func startBackendOn(tb testing.TB, addr string, gopts []grpc.ServerOption, opts ...server.Option) *backend {
	tb.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	opts = append([]server.Option{
		server.WithAllowCIDRs(netip.MustParsePrefix("127.0.0.0/8")),
		server.WithLogger(slog.New(slog.DiscardHandler)),
	}, opts...)
	b := &backend{addr: lis.Addr().String(), srv: server.New(opts...), gs: grpc.NewServer(gopts...), done: make(chan struct{})}
	b.srv.Register(b.gs)
	go func() {
		defer close(b.done)
		b.gs.Serve(lis)
	}()
	tb.Cleanup(b.kill)
	return b
}

// kill stops the backend abruptly: connections close, streams break.
func (b *backend) kill() {
	b.once.Do(func() {
		b.gs.Stop()
		<-b.done
		b.srv.Close()
	})
}

// fetchdBinary builds cmd/fetchd once per test binary.
var fetchdBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "fetchd-client-test")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "fetchd")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/fetchd").CombinedOutput()
	if err != nil {
		return "", &buildError{err, string(out)}
	}
	return bin, nil
})

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// process is a fetchd child process.
type process struct {
	cmd  *exec.Cmd
	addr string
	logs chan struct{} // closed when its stderr is drained
}

// startProcess runs the fetchd binary listening on addr ("127.0.0.1:0" for
// any port) and waits until it serves.
func startProcess(tb testing.TB, addr string, args ...string) *process {
	tb.Helper()
	bin, err := fetchdBinary()
	if err != nil {
		tb.Fatalf("build fetchd: %v", err)
	}
	args = append([]string{"-listen", addr, "-allow-cidr", "127.0.0.0/8"}, args...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &process{cmd: cmd, logs: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		defer close(p.logs)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, `msg="fetchd listening" addr=`); i >= 0 {
				f := strings.Fields(line[i+len(`msg="fetchd listening" addr=`):])
				found <- f[0]
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case p.addr = <-found:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		tb.Fatal("fetchd did not start")
	}
	tb.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL and reaps the process.
func (p *process) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	<-p.logs
}
