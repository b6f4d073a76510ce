package main

import (
	"strings"
	"testing"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testbuf"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// TestRunProgress checks that the progress bar shows only when asked for
// or when stderr is a terminal (a buffer never is).
func TestRunProgress(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	tests := []struct {
		name    string
		args    []string
		stdin   bool
		wantBar bool
	}{
		{name: "auto, not a terminal"},
		{name: "never", args: []string{"-progress", "never"}},
		{name: "always, known total", args: []string{"-progress", "always"}, wantBar: true},
		{name: "always, streaming", args: []string{"-progress", "always"}, stdin: true, wantBar: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			urls := []string{up.URL + "/", up.URL + "/?delay=250ms", blockedURL}
			args := append([]string{"-addr", addr}, tt.args...)
			var r *ctlRun
			if tt.stdin {
				r = runCtl(t, strings.NewReader(strings.Join(urls, "\n")), nil, args...)
			} else {
				r = runCtl(t, nil, nil, append(args, urls...)...)
			}
			r.wantCode(t, 0)
			if got := strings.Contains(r.stderr, "\r"); got != tt.wantBar {
				t.Errorf("fetchctl %q drew a bar: %v, want %v; stderr:\n%q", r.args, got, tt.wantBar, r.stderr)
			}
			if _, err := stderrLine(r.stderr[strings.LastIndex(r.stderr, "\r")+1:], "fetchctl: 3 results"); err != nil {
				t.Errorf("stderr does not end with the summary on a line of its own:\n%q", r.stderr)
			}
		})
	}
}

// TestProgressBytes checks that the bar shows the body bytes received so
// far, counted as -out writes them, and the errors.
func TestProgressBytes(t *testing.T) {
	var out testbuf.Buffer
	p := newProgress("always", &out, 2, true)
	p.addBytes(12<<20 + 300<<10)
	p.add(&client.Result{Error: &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT}, BodyLength: 5})
	defer p.finish()
	if got := p.bar.State().Description; got != "fetching (12.3 MiB, 1 error)" {
		t.Errorf("bar description = %q, want \"fetching (12.3 MiB, 1 error)\"", got)
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {12<<20 + 300<<10, "12.3 MiB"}, {3 << 30, "3.0 GiB"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := formatBytes(tt.n); got != tt.want {
				t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
}
