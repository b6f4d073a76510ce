package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// TestRunJobErrors checks that per-job errors are data (exit 0) unless
// -fail-on-error, and the summary line.
func TestRunJobErrors(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	urls := []string{up.URL + "/", blockedURL, "ftp://127.0.0.1/file", up.URL + "/?status=503"}
	summary := regexp.MustCompile(`^fetchctl: 4 results in \d+\.\d\ds \(\d+/s\): 2 ok \(1 HTTP 4xx/5xx\), 2 errors ` +
		`\(ERROR_CODE_BLOCKED 1, ERROR_CODE_INVALID_REQUEST 1\)$`)
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		wantErr  string // the last line of stderr, when set
	}{
		{name: "errors are data", wantCode: 0},
		{name: "fail on error", args: []string{"-fail-on-error"}, wantCode: 1, wantErr: "fetchctl: 2 jobs failed (-fail-on-error)"},
		{name: "fail on error from env", env: map[string]string{"FETCHCTL_FAIL_ON_ERROR": "true"},
			wantCode: 1, wantErr: "fetchctl: 2 jobs failed (-fail-on-error)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCtl(t, nil, tt.env, append(append([]string{"-addr", addr}, tt.args...), urls...)...)
			r.wantCode(t, tt.wantCode)
			got := byIndex(t, r.lines(t))
			if c := got[1].Error; c == nil || c.Code != "ERROR_CODE_BLOCKED" || c.Message == "" {
				t.Errorf("result for %s = %+v, want ERROR_CODE_BLOCKED with a message", blockedURL, got[1])
			}
			if c := got[2].Error; c == nil || c.Code != "ERROR_CODE_INVALID_REQUEST" {
				t.Errorf("result for an ftp URL = %+v, want ERROR_CODE_INVALID_REQUEST", got[2])
			}
			if l, err := stderrLine(r.stderr, "fetchctl: 4 results"); err != nil || !summary.MatchString(l) {
				t.Errorf("summary = %q, want it to match %s\nstderr:\n%s", l, summary, r.stderr)
			}
			lastLine := strings.TrimSpace(r.stderr[strings.LastIndex(strings.TrimSpace(r.stderr), "\n")+1:])
			if tt.wantErr != "" && lastLine != tt.wantErr {
				t.Errorf("stderr ends %q, want %q", lastLine, tt.wantErr)
			}
		})
	}
}

// TestRunUnreachable checks that a fetchd that cannot be reached on the
// first connection fails the run at once, with a clear message and a
// summary whose lines agree, and that a malformed -addr is a usage error
// found before dialling. The deadline is short: before fetchctl failed fast
// these runs retried for about 15s.
func TestRunUnreachable(t *testing.T) {
	up := testupstream.New(t)
	closed := closedAddr(t)
	silent := testupstream.StartRaw(t, func(_ net.Conn, done <-chan struct{}) { <-done }).Addr
	urls := []string{up.URL + "/?tag=lost", up.URL + "/?tag=lost", up.URL + "/?tag=lost"}
	tests := []struct {
		name     string
		args     []string
		stdin    bool
		wantCode int
		want     []string // lines of stderr, each a prefix
		ran      bool     // a summary line is printed
	}{
		{name: "refused", args: []string{"-addr", closed}, wantCode: 1, ran: true,
			want: []string{"fetchctl: cannot reach fetchd at " + closed + ": connection error: ",
				"fetchctl: 3 jobs got no result from fetchd"}},
		{name: "refused stdin", args: []string{"-addr", closed}, stdin: true, wantCode: 1, ran: true,
			want: []string{"fetchctl: cannot reach fetchd at " + closed + ": connection error: ",
				"fetchctl: stdin: not read: fetchd was not reached"}},
		{name: "silent", args: []string{"-addr", silent, "-connect-timeout", "200ms"}, wantCode: 1, ran: true,
			want: []string{"fetchctl: cannot reach fetchd at " + silent + ": no answer within the 200ms connect timeout: ",
				"fetchctl: 3 jobs got no result from fetchd"}},
		{name: "URL as addr", args: []string{"-addr", "http://localhost:50051"}, wantCode: 2,
			want: []string{`fetchctl: -addr "http://localhost:50051": client: bad target "http://localhost:50051": ` +
				`no gRPC resolver for scheme "http" (fetchd is not reached by a URL); ` +
				"want host:port, a comma-separated list of them, or dns:///host:port"}},
		{name: "no port", args: []string{"-addr", "localhost"}, wantCode: 2,
			want: []string{`fetchctl: -addr "localhost": client: bad target "localhost": address localhost: missing port in address; ` +
				"want host:port, a comma-separated list of them, or dns:///host:port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testctx.WithTimeout(t, 3*time.Second)
			var r *ctlRun
			if tt.stdin {
				r = runCtlCtx(ctx, t, strings.NewReader(strings.Join(urls, "\n")), nil, tt.args...)
			} else {
				r = runCtlCtx(ctx, t, nil, nil, append(tt.args, urls...)...)
			}
			if ctx.Err() != nil {
				t.Fatalf("fetchctl %q did not fail before the test deadline:\n%s", r.args, r.stderr)
			}
			r.wantCode(t, tt.wantCode)
			for _, w := range tt.want {
				if _, err := stderrLine(r.stderr, w); err != nil {
					t.Errorf("stderr lacks a line starting %q:\n%s", w, r.stderr)
				}
			}
			if r.stdout != "" {
				t.Errorf("fetchctl %q printed %q, want nothing", r.args, r.stdout)
			}
			if _, err := stderrLine(r.stderr, "fetchctl: 0 results in "); (err == nil) != tt.ran {
				t.Errorf("fetchctl %q: summary printed = %v, want %v:\n%s", r.args, err == nil, tt.ran, r.stderr)
			}
			if n := up.Tag("lost"); n != 0 {
				t.Errorf("upstream saw %d requests, want 0", n)
			}
		})
	}
}

// TestRunLostAfterReached checks a run whose fetchd was reached and then
// went away with a job in flight: the client answers the job
// ERROR_CODE_UNAVAILABLE, and every line of the summary counts it as what
// it is, a result with an error that fetchd never answered.
func TestRunLostAfterReached(t *testing.T) {
	up := testupstream.New(t)
	addr, stop := startStoppableBackend(t)
	inFlight := up.InFlight()
	go func() {
		testctx.WaitFor(t, 20*time.Second, "the job to reach the upstream", func() bool { return up.InFlight() > inFlight })
		stop()
	}()
	r := runCtl(t, nil, nil, "-addr", addr, "-retry-budget", "1", up.URL+"/?hang=1")
	r.wantCode(t, 1)
	lines := r.lines(t)
	if len(lines) != 1 || lines[0].Error == nil || lines[0].Error.Code != "ERROR_CODE_UNAVAILABLE" {
		t.Fatalf("fetchctl printed %+v, want one ERROR_CODE_UNAVAILABLE result", lines)
	}
	for _, w := range []string{
		"fetchctl: 1 result in ",
		"fetchctl: cannot reach fetchd at " + addr + ": client: no fetchd backend available: ",
		"fetchctl: 1 job got no answer from fetchd; its result is the client's error (ERROR_CODE_UNAVAILABLE 1)",
	} {
		if _, err := stderrLine(r.stderr, w); err != nil {
			t.Errorf("stderr lacks a line starting %q:\n%s", w, r.stderr)
		}
	}
	if l, _ := stderrLine(r.stderr, "fetchctl: 1 result in "); !strings.HasSuffix(l, ": 0 ok, 1 error (ERROR_CODE_UNAVAILABLE 1)") {
		t.Errorf("summary = %q, want it to count 1 error (ERROR_CODE_UNAVAILABLE 1)", l)
	}
	if strings.Contains(r.stderr, "got no result") {
		t.Errorf("stderr says a job got no result, yet it printed one:\n%s", r.stderr)
	}
}

// TestRunMalformedInput checks that a bad line stops the input: the jobs
// before it get their results, the rest is not read, and the run fails
// naming the line.
func TestRunMalformedInput(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	// Distinct URLs, so that fetchd fetches each (it may share one fetch
	// between identical jobs in flight).
	good := func(n int) string { return fmt.Sprintf("%s/?tag=before&n=%d", up.URL, n) }
	after := up.URL + "/?tag=after"
	file := filepath.Join(t.TempDir(), "jobs.txt")
	if err := os.WriteFile(file, []byte(good(0)+"\n\nnot a url\n"+after+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantJobs int // before the bad line
		want     string
	}{
		{name: "bad JSON", stdin: good(1) + "\n# c\n" + good(2) + "\n{\"url\": \n" + after + "\n", wantJobs: 2,
			want: "fetchctl: stdin:4: bad JSON job: "},
		{name: "unknown JSON field", stdin: good(3) + "\n{\"url\":\"" + after + "\",\"nope\":1}\n", wantJobs: 1,
			want: "fetchctl: stdin:2: bad JSON job: "},
		{name: "stream options", stdin: good(4) + "\n{\"url\":\"" + after + "\",\"streamOptions\":{\"concurrency\":1}}\n", wantJobs: 1,
			want: "fetchctl: stdin:2: bad JSON job: stream_options is not a job field"},
		{name: "not a URL", stdin: good(5) + "\nexample.com/path\n" + after + "\n", wantJobs: 1,
			want: `fetchctl: stdin:2: not a URL or a JSON job: "example.com/path"`},
		{name: "file", args: []string{"-i", file}, wantJobs: 1,
			want: "fetchctl: " + file + `:3: not a URL or a JSON job: "not a url"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.Tag("before")
			r := runCtl(t, strings.NewReader(tt.stdin), nil, append([]string{"-addr", addr}, tt.args...)...)
			r.wantCode(t, 1)
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, r.stderr)
			}
			lines := r.lines(t)
			if len(lines) != tt.wantJobs {
				t.Errorf("fetchctl printed %d results, want %d (the jobs before the bad line):\n%s", len(lines), tt.wantJobs, r.stdout)
			}
			for _, l := range lines {
				if l.Status != 200 {
					t.Errorf("result %+v, want status 200", l)
				}
			}
			if n := up.Tag("before") - before; n != int64(tt.wantJobs) {
				t.Errorf("upstream saw %d jobs before the bad line, want %d", n, tt.wantJobs)
			}
			if n := up.Tag("after"); n != 0 {
				t.Errorf("upstream saw %d jobs after the bad line, want 0", n)
			}
		})
	}
}

// TestRunOutWriteFails: when a body cannot be written to -out, the run
// stops with that error, exit 1, and does not blame fetchd.
func TestRunOutWriteFails(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ".0.body.tmp"), 0o755); err != nil { // in the way of the temporary file
		t.Fatal(err)
	}
	r := runCtl(t, nil, nil, "-addr", addr, "-out", dir, up.URL+"/?size=10")
	r.wantCode(t, 1)
	want := "fetchctl: body writer failed: open job 0: -out: open " + filepath.Join(dir, ".0.body.tmp") + ": is a directory"
	if _, err := stderrLine(r.stderr, want); err != nil || strings.Contains(r.stderr, "cannot reach fetchd") {
		t.Errorf("stderr:\n%s\nwant a line %q and no \"cannot reach fetchd\"", r.stderr, want)
	}
}
