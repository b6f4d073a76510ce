package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is a child process (the upstream or fetchd) that announced its
// listening address on stderr.
type process struct {
	name  string
	addr  string
	cmd   *exec.Cmd
	stdin io.WriteCloser // closed by stop; the upstream exits on its EOF
	done  chan struct{}  // closed once the process has exited and been waited for

	mu   sync.Mutex // guards tail
	tail []string   // the last lines of stderr, for error messages
}

const tailLines = 20

// startProcess starts bin with args and returns once a line of its stderr
// matches addrRE, whose first group is the address. The child gets
// SIGKILL if this process dies; [process.stop] ends it otherwise.
func startProcess(ctx context.Context, name, bin string, args []string, addrRE *regexp.Regexp) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if m := addrRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > tailLines {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case p.addr = <-addr:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before listening: %s", name, p.logTail())
	case <-timer.C:
		err = errors.New("not listening after 30s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.stop()
	return nil, fmt.Errorf("start %s: %w", name, err)
}

// pid returns the child's process ID.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the child has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop kills the child and waits for it, at most a few seconds.
func (p *process) stop() {
	p.stdin.Close()
	p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// logTail returns the last lines the child wrote to stderr.
func (p *process) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == 0 {
		return "(no output)"
	}
	return strings.Join(p.tail, "\n")
}

// childEnv is this process's environment without the variables that would
// change fetchd's configuration behind the benchmark's back.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FETCHD_") && !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}

// repoRoot returns the directory of fetchd's go.mod, from the working
// directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/fetchd/fetchd\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the fetchd module: run from the repository or pass -fetchd")
		}
		dir = parent
	}
}

// fetchdBuildFlags are extra flags for building fetchd: the tests add
// -race when they have it, to share the race build cache of the other
// packages' tests.
var fetchdBuildFlags []string

// buildFetchd builds ./cmd/fetchd into dir and returns the binary's path.
func buildFetchd(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "fetchd")
	args := append(append([]string{"build", "-o", bin}, fetchdBuildFlags...), "./cmd/fetchd")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/fetchd: %w", err)
	}
	return bin, nil
}
