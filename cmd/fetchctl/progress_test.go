package main

import (
	"strings"
	"testing"

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
