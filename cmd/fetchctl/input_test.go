package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testbuf"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

func TestParseLine(t *testing.T) {
	p := &jobParser{method: "PUT", headers: []*fetchv1.Header{{Name: "A", Value: "b"}}}
	tests := []struct {
		line    string
		want    *client.Job // nil: skipped, or an error
		wantErr string
	}{
		{line: ""},
		{line: "   \t"},
		{line: "# comment"},
		{line: "  # indented comment"},
		{line: "https://example.com/a?b=c", want: &client.Job{Url: "https://example.com/a?b=c", Method: "PUT",
			Headers: []*fetchv1.Header{{Name: "A", Value: "b"}}}},
		{line: "  http://127.0.0.1:8000/x  ", want: &client.Job{Url: "http://127.0.0.1:8000/x", Method: "PUT",
			Headers: []*fetchv1.Header{{Name: "A", Value: "b"}}}},
		{line: "ftp://example.com/", want: &client.Job{Url: "ftp://example.com/", Method: "PUT",
			Headers: []*fetchv1.Header{{Name: "A", Value: "b"}}}}, // fetchd judges the scheme
		{line: `{"url":"https://example.com/","method":"POST","headers":[{"name":"X","value":"y"}],"body":"aGk=","timeout":"2s","id":"x"}`,
			want: &client.Job{Url: "https://example.com/", Method: "POST", Headers: []*fetchv1.Header{{Name: "X", Value: "y"}},
				Body: []byte("hi"), Timeout: durationpb.New(2 * time.Second), Id: "x"}},
		{line: `{"url":"https://example.com/"}`, want: &client.Job{Url: "https://example.com/"}},
		{line: "example.com", wantErr: `not a URL or a JSON job: "example.com"`},
		{line: "/relative/path", wantErr: "not a URL or a JSON job"},
		{line: "http://[::1", wantErr: "not a URL or a JSON job"},
		{line: "{", wantErr: "bad JSON job: "},
		{line: `{"url":"x","body":"not base64!"}`, wantErr: "bad JSON job: "},
		{line: `{"url":"x","stream_options":{}}`, wantErr: "stream_options is not a job field"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := p.parse(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parse(%q) = %v, %v; want error %q", tt.line, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !proto.Equal(got, tt.want) {
				t.Errorf("parse(%q) = %v, %v; want %v", tt.line, got, err, tt.want)
			}
		})
	}
}

// lineGen is an endless-looking input: n distinct lines of the same
// length, made as they are read, counting the bytes read.
type lineGen struct {
	prefix string // each line is prefix, a 9-digit number, padding, "\n"
	len    int    // of each line
	n      int64
	read   atomic.Int64 // bytes read so far
	cur    []byte       // the line being read
	curIdx int64        // its number, from 1; 0 for none
}

func (g *lineGen) Read(p []byte) (int, error) {
	off, total := g.read.Load(), int64(g.len)*g.n
	if off >= total {
		return 0, io.EOF
	}
	k := 0
	for ; k < len(p) && off+int64(k) < total; k++ {
		pos := off + int64(k)
		if idx := pos/int64(g.len) + 1; idx != g.curIdx {
			l := fmt.Sprintf("%s%09d&pad=", g.prefix, idx)
			g.cur = []byte(l + strings.Repeat("x", g.len-len(l)-1) + "\n")
			g.curIdx = idx
		}
		p[k] = g.cur[pos%int64(g.len)]
	}
	g.read.Add(int64(k))
	return k, nil
}

// linesStarted returns how many lines have been read, whole or in part.
func (g *lineGen) linesStarted() int64 {
	l := int64(g.len)
	return (g.read.Load() + l - 1) / l
}

// aheadWriter checks, at each result line written, how far the input has
// been read ahead of the results printed.
type aheadWriter struct {
	in      *lineGen
	printed int64
	maxAhed int64
}

func (w *aheadWriter) Write(p []byte) (int, error) {
	w.printed += int64(strings.Count(string(p), "\n"))
	w.maxAhed = max(w.maxAhed, w.in.linesStarted()-w.printed)
	return len(p), nil
}

// TestRunBoundedInput checks that stdin is read as the client takes jobs,
// not slurped: the lines read ahead of the results printed stay within
// the window plus the read-ahead buffers, whatever the input's length.
func TestRunBoundedInput(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	const lineLen, n, window = 256, 2000, 16
	in := &lineGen{prefix: up.URL + "/?tag=bounded&n=", len: lineLen, n: n}
	out := &aheadWriter{in: in}
	var stderr testbuf.Buffer
	err := run(testctx.WithTimeout(t, 60*time.Second), []string{"-addr", addr, "-window", "16"}, in, out, &stderr, func(string) string { return "" })
	if err != nil {
		t.Fatalf("run = %v\n%s", err, stderr.String())
	}
	if out.printed != n || up.Tag("bounded") != n {
		t.Fatalf("printed %d results, upstream saw %d requests, want %d", out.printed, up.Tag("bounded"), n)
	}
	// The client's window, the parsed jobs waiting for it, the scanner's
	// 64 KiB buffer, and a line in each hand.
	bound := int64(window + readAhead + (64<<10)/lineLen + 8)
	t.Logf("input read at most %d lines ahead of the results (bound %d)", out.maxAhed, bound)
	if out.maxAhed > bound {
		t.Errorf("input read up to %d lines ahead of the results, want at most %d", out.maxAhed, bound)
	}
}

// TestRunInterrupt checks that cancelling run's context (as SIGINT does)
// ends it promptly while a job hangs and stdin is still open.
func TestRunInterrupt(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	stdin, w := io.Pipe()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		io.WriteString(w, up.URL+"/?hang=1\n"+up.URL+"/\n")
	}()
	t.Cleanup(func() {
		w.Close() // ends the reader goroutine, blocked in Read
		<-wrote
	})
	ctx, cancel := context.WithCancel(testctx.WithTimeout(t, 30*time.Second))
	done := make(chan *ctlRun, 1)
	go func() { done <- runCtlCtx(ctx, t, stdin, nil, "-addr", addr, "-ordered") }()
	testctx.WaitFor(t, 10*time.Second, "the hanging job to reach the upstream", func() bool { return up.InFlight() == 1 })
	cancel()
	var r *ctlRun
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of its context's end")
	}
	r.wantCode(t, 1)
	for _, want := range []string{"fetchctl: interrupted\n", "fetchctl: 2 jobs got no result from fetchd\n"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if r.stdout != "" {
		t.Errorf("fetchctl -ordered printed %q, want nothing (job 0 never finished)", r.stdout)
	}
	testctx.WaitFor(t, 10*time.Second, "the hanging request to be cancelled", func() bool { return up.InFlight() == 0 })
}
