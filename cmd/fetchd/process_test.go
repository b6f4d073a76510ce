package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/testctx"
)

// fetchd's startup log line, in text and in JSON, with its address.
var (
	listeningText = regexp.MustCompile(`msg="fetchd listening" addr=(127\.0\.0\.1:\d+)`)
	listeningJSON = regexp.MustCompile(`"msg":"fetchd listening","addr":"(127\.0\.0\.1:\d+)"`)
)

// listenAddr returns the address in fetchd's startup log line, if log
// holds it.
func listenAddr(log string) (string, bool) {
	for _, re := range []*regexp.Regexp{listeningText, listeningJSON} {
		if m := re.FindStringSubmatch(log); m != nil {
			return m[1], true
		}
	}
	return "", false
}

// process is a running fetchd binary started by startFetchd.
type process struct {
	addr string // the gRPC address, 127.0.0.1:port
	cmd  *exec.Cmd
	done chan struct{} // closed once stderr hit EOF and the process was waited for

	mu  sync.Mutex // guards log
	log strings.Builder
}

// startFetchd starts the fetchd binary on 127.0.0.1:0 with args and no
// FETCHD_* variables, and returns once it logs its address. The process is
// killed, if still running, when tb ends.
func startFetchd(tb testing.TB, args ...string) *process {
	tb.Helper()
	return startFetchdEnv(tb, nil, args...)
}

// startFetchdEnv is startFetchd with extra environment variables
// ("NAME=value").
func startFetchdEnv(tb testing.TB, env []string, args ...string) *process {
	tb.Helper()
	bin, _ := binaries(tb)
	cmd := exec.Command(bin, append([]string{"-listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = childEnv(env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start fetchd: %v", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	listening := make(chan string, 1)
	go func() {
		defer close(p.done)
		r := bufio.NewReader(stderr)
		for {
			line, err := r.ReadString('\n')
			p.mu.Lock()
			p.log.WriteString(line)
			p.mu.Unlock()
			if addr, ok := listenAddr(line); ok {
				select {
				case listening <- addr:
				default:
				}
			}
			if err != nil {
				break
			}
		}
		cmd.Wait() // the exit status is read from cmd.ProcessState
	}()
	tb.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			tb.Errorf("fetchd (pid %d) still running 10s after SIGKILL", cmd.Process.Pid)
		}
		log := p.Log()
		if strings.Contains(log, "WARNING: DATA RACE") {
			tb.Errorf("fetchd reported a data race")
		}
		if tb.Failed() {
			tb.Logf("fetchd %s log:\n%s", strings.Join(cmd.Args[1:], " "), log)
		}
	})

	select {
	case p.addr = <-listening:
	case <-p.done:
		tb.Fatalf("fetchd exited before listening (%v):\n%s", cmd.ProcessState, p.Log())
	case <-time.After(15 * time.Second):
		tb.Fatalf("fetchd did not log its address within 15s:\n%s", p.Log())
	}
	return p
}

// Log returns what the process has written to stderr so far.
func (p *process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Signal sends sig to the process.
func (p *process) Signal(tb testing.TB, sig os.Signal) {
	tb.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("signal %v: %v", sig, err)
	}
}

// Wait waits up to d for the process to exit and returns its exit code.
func (p *process) Wait(tb testing.TB, d time.Duration) int {
	tb.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		tb.Fatalf("fetchd did not exit within %v", d)
		return -1
	}
}

// WaitLog waits up to d for the log to contain s.
func (p *process) WaitLog(tb testing.TB, d time.Duration, s string) {
	tb.Helper()
	testctx.WaitFor(tb, d, "fetchd to log "+s, func() bool { return strings.Contains(p.Log(), s) })
}

// runFetchd runs the fetchd binary on 127.0.0.1:0 (unless args say
// otherwise) with env, and returns its exit code and combined output. A
// fetchd still running after d is killed and fails tb.
func runFetchd(tb testing.TB, d time.Duration, env []string, args ...string) (int, string) {
	tb.Helper()
	bin, _ := binaries(tb)
	ctx := testctx.WithTimeout(tb, d)
	args = append([]string{"-listen", "127.0.0.1:0"}, args...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv(env...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		tb.Errorf("fetchd %s (env %q) still running after %v; killed:\n%s", strings.Join(args, " "), env, d, out)
	case err != nil && !errors.As(err, &exitErr):
		tb.Fatalf("fetchd %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// grpcurl runs the grpcurl binary with args (it must finish within 30s)
// and returns its standard output; err, if any, includes its standard
// error.
func grpcurl(tb testing.TB, args ...string) (string, error) {
	tb.Helper()
	_, bin := binaries(tb)
	cmd := exec.CommandContext(testctx.WithTimeout(tb, 30*time.Second), bin, args...)
	cmd.Env = childEnv()
	cmd.WaitDelay = time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &grpcurlError{err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

type grpcurlError struct {
	err    error
	stderr string
}

func (e *grpcurlError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }
