package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/testbuf"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// The binary, built once per test run into binDir, which TestMain removes.

var binDir string

var fetchctlBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "fetchctl-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "fetchctl")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goCommand(), "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// goCommand returns the go command: the one on PATH, where go test puts its
// own GOROOT/bin first, or else the one of the GOROOT the test was built
// with.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// childEnv returns the test's environment without FETCHCTL_* variables and
// proxy settings, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(name)
		if strings.HasPrefix(upper, "FETCHCTL_") || strings.HasSuffix(upper, "_PROXY") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// startBinary starts the fetchctl binary with args; its stdin is a pipe
// the caller writes and closes.
func startBinary(tb testing.TB, ctx context.Context, env []string, args ...string) (cmd *exec.Cmd, stdin io.WriteCloser, stdout, stderr *testbuf.Buffer) {
	tb.Helper()
	bin, err := fetchctlBinary()
	if err != nil {
		tb.Fatalf("building fetchctl: %v", err)
	}
	cmd = exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv(env...)
	stdout, stderr = &testbuf.Buffer{}, &testbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if stdin, err = cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, stdin, stdout, stderr
}

// runBinary runs the fetchctl binary with stdin and returns what it printed
// and its exit status.
func runBinary(tb testing.TB, stdin string, env []string, args ...string) *ctlRun {
	tb.Helper()
	ctx := testctx.WithTimeout(tb, 60*time.Second)
	start := time.Now()
	cmd, in, stdout, stderr := startBinary(tb, ctx, env, args...)
	io.WriteString(in, stdin)
	in.Close()
	return waitBinary(tb, cmd, args, stdout, stderr, start)
}

func waitBinary(tb testing.TB, cmd *exec.Cmd, args []string, stdout, stderr *testbuf.Buffer, start time.Time) *ctlRun {
	tb.Helper()
	err := cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		tb.Fatalf("fetchctl %q: %v", args, err)
	}
	return &ctlRun{args: args, stdout: stdout.String(), stderr: stderr.String(),
		code: cmd.ProcessState.ExitCode(), elapsed: time.Since(start)}
}

func TestBinaryStdin(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	stdin := "# URLs\n" + up.URL + "/?size=5\n\n" + up.URL + "/?status=404\n" + blockedURL + "\n"
	r := runBinary(t, stdin, []string{"FETCHCTL_ADDR=" + addr}, "-ordered")
	r.wantCode(t, 0)
	lines := r.lines(t)
	if got := indexes(lines); len(got) != 3 || got[0] != 0 || got[1] != 1 || got[2] != 2 {
		t.Fatalf("fetchctl -ordered indexes = %v, want [0 1 2]", got)
	}
	if lines[0].Status != 200 || lines[0].Bytes != 5 || lines[1].Status != 404 || lines[2].Error == nil ||
		lines[2].Error.Code != "ERROR_CODE_BLOCKED" {
		t.Errorf("results = %+v, want 200 (5 bytes), 404, ERROR_CODE_BLOCKED", lines)
	}
	if _, err := stderrLine(r.stderr, "fetchctl: 3 results in "); err != nil {
		t.Errorf("stderr lacks the summary:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "\r") {
		t.Errorf("stderr is a pipe, yet fetchctl drew a progress bar:\n%q", r.stderr)
	}
}

func TestBinaryExitCodes(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantErr  string // in stderr
	}{
		{name: "ok", args: []string{"-addr", addr, up.URL + "/"}, wantCode: 0, wantErr: "fetchctl: 1 result in "},
		{name: "job error", args: []string{"-addr", addr, blockedURL}, wantCode: 0, wantErr: "1 error (ERROR_CODE_BLOCKED 1)"},
		{name: "fail on error", args: []string{"-addr", addr, "-fail-on-error", blockedURL}, wantCode: 1,
			wantErr: "fetchctl: 1 job failed (-fail-on-error)"},
		{name: "unreachable", args: []string{"-addr", closedAddr(t), up.URL + "/"}, wantCode: 1,
			wantErr: "fetchctl: cannot reach fetchd at "},
		{name: "URL as addr", args: []string{"-addr", "http://localhost:50051", up.URL + "/"}, wantCode: 2,
			wantErr: "want host:port, a comma-separated list of them, or dns:///host:port"},
		{name: "malformed", args: []string{"-addr", addr}, stdin: up.URL + "/\n{oops\n", wantCode: 1, wantErr: "fetchctl: stdin:2: bad JSON job"},
		{name: "unknown flag", args: []string{"-nope"}, wantCode: 2, wantErr: "flag provided but not defined: -nope"},
		{name: "bad flag value", args: []string{"-progress", "maybe"}, wantCode: 2, wantErr: `fetchctl: -progress "maybe": must be auto, always or never`},
		{name: "help", args: []string{"-h"}, wantCode: 0, wantErr: "Usage: fetchctl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBinary(t, tt.stdin, nil, tt.args...)
			r.wantCode(t, tt.wantCode)
			if !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("fetchctl %q stderr lacks %q:\n%s", tt.args, tt.wantErr, r.stderr)
			}
		})
	}
}

// TestBinaryInterrupt checks that SIGINT and SIGTERM end a run whose job
// hangs and whose stdin is still open, with status 1.
func TestBinaryInterrupt(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx := testctx.WithTimeout(t, 60*time.Second)
			args := []string{"-addr", addr}
			start := time.Now()
			inFlight := up.InFlight()
			cmd, stdin, stdout, stderr := startBinary(t, ctx, nil, args...)
			defer stdin.Close()
			io.WriteString(stdin, up.URL+"/?hang=1\n")
			testctx.WaitFor(t, 20*time.Second, "the job to reach the upstream", func() bool { return up.InFlight() > inFlight })
			cmd.Process.Signal(sig)
			r := waitBinary(t, cmd, args, stdout, stderr, start)
			r.wantCode(t, 1)
			for _, want := range []string{"fetchctl: interrupted\n", "fetchctl: 1 job got no result from fetchd\n", "fetchctl: 0 results in "} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
	testctx.WaitFor(t, 10*time.Second, "the upstream to see the hanging jobs cancelled", func() bool { return up.InFlight() == 0 })
}
