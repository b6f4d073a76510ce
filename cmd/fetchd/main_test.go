package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The end-to-end tests of this package run the real fetchd binary, and
// grpcurl for the shell path. Both are built once, on first use, into a
// temporary directory that TestMain removes.

// raceEnabled reports whether the tests run under the race detector; it is
// set by race_test.go, and makes the fetchd binary a race-enabled build too.
var raceEnabled bool

var (
	buildOnce  sync.Once
	binDir     string // set by buildOnce; removed by TestMain
	fetchdBin  string // set by buildOnce
	grpcurlBin string // set by buildOnce
	buildErr   error  // set by buildOnce
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// binaries returns the paths of the fetchd and grpcurl binaries, building
// them on the first call.
func binaries(tb testing.TB) (fetchd, grpcurl string) {
	tb.Helper()
	buildOnce.Do(buildBinaries)
	if buildErr != nil {
		tb.Fatalf("building the binaries: %v", buildErr)
	}
	return fetchdBin, grpcurlBin
}

func buildBinaries() {
	dir, err := os.MkdirTemp("", "fetchd-e2e-")
	if err != nil {
		buildErr = err
		return
	}
	binDir = dir
	root, err := repoRoot()
	if err != nil {
		buildErr = err
		return
	}
	goTool := goCommand()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	fetchdArgs := []string{"build", "-o", filepath.Join(dir, "fetchd")}
	if raceEnabled {
		fetchdArgs = append(fetchdArgs, "-race")
	}
	fetchdArgs = append(fetchdArgs, ".")
	var wg sync.WaitGroup
	var errFetchd, errGrpcurl error
	wg.Go(func() { errFetchd = goBuild(ctx, goTool, ".", fetchdArgs...) })
	wg.Go(func() {
		errGrpcurl = goBuild(ctx, goTool, root, "build", "-modfile="+filepath.Join(root, "tools", "go.mod"),
			"-o", filepath.Join(dir, "grpcurl"), "github.com/fullstorydev/grpcurl/cmd/grpcurl")
	})
	wg.Wait()
	if buildErr = errors.Join(errFetchd, errGrpcurl); buildErr == nil {
		fetchdBin, grpcurlBin = filepath.Join(dir, "fetchd"), filepath.Join(dir, "grpcurl")
	}
}

func goBuild(ctx context.Context, goTool, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// goCommand returns the go command: the one on PATH, where go test puts
// its own GOROOT/bin first, or else the one of the GOROOT the test was
// built with.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// repoRoot returns the directory of the main module's go.mod, walking up
// from the package directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the package directory")
		}
		dir = parent
	}
}

// childEnv returns the test's environment without FETCHD_* variables (so
// that only what a test sets configures fetchd) and without proxy
// settings (so that all traffic stays on loopback), plus extra. A
// race-enabled fetchd would sleep a second at exit; GORACE turns that off.
func childEnv(extra ...string) []string {
	env := []string{"GORACE=atexit_sleep_ms=0 " + os.Getenv("GORACE")}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(name)
		if strings.HasPrefix(upper, "FETCHD_") || strings.HasSuffix(upper, "_PROXY") || name == "GORACE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
