package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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

// TestRunUnreachable checks that a fetchd that cannot be reached fails the
// run quickly, with a clear message, and counts the lost jobs.
func TestRunUnreachable(t *testing.T) {
	up := testupstream.New(t)
	addr := closedAddr(t)
	urls := []string{up.URL + "/?tag=lost", up.URL + "/?tag=lost", up.URL + "/?tag=lost"}
	tests := []struct {
		name  string
		stdin bool
		want  []string // lines of stderr after the summary
	}{
		{name: "args", want: []string{"fetchctl: cannot reach fetchd at " + addr + ": client: no fetchd backend available",
			"fetchctl: 3 jobs got no result from fetchd"}},
		{name: "stdin", stdin: true, want: []string{"fetchctl: cannot reach fetchd at " + addr + ": client: no fetchd backend available",
			"fetchctl: stdin: stopped reading after line "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-addr", addr, "-retry-budget", "1"}
			var r *ctlRun
			if tt.stdin {
				r = runCtl(t, strings.NewReader(strings.Join(urls, "\n")), nil, args...)
			} else {
				r = runCtl(t, nil, nil, append(args, urls...)...)
			}
			r.wantCode(t, 1)
			if r.elapsed > 5*time.Second {
				t.Errorf("fetchctl %q took %v, want under 5s", r.args, r.elapsed)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			for _, l := range r.lines(t) {
				if l.Error == nil || l.Error.Code != "ERROR_CODE_UNAVAILABLE" {
					t.Errorf("result %+v, want ERROR_CODE_UNAVAILABLE", l)
				}
			}
			if n := up.Tag("lost"); n != 0 {
				t.Errorf("upstream saw %d requests, want 0", n)
			}
		})
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
