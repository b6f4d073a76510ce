package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fetchd/fetchd/internal/testupstream"
)

const blockedURL = "http://169.254.169.254/latest/meta-data/"

func TestRunURLArgs(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	urls := []string{up.URL + "/a?tag=args", up.URL + "/b?tag=args&status=404", up.URL + "/c?tag=args&size=1000"}
	r := runCtl(t, nil, nil, append([]string{"-addr", addr}, urls...)...)
	r.wantCode(t, 0)
	got := byIndex(t, r.lines(t))
	if len(got) != len(urls) {
		t.Fatalf("fetchctl %q printed %d results, want %d:\n%s", r.args, len(got), len(urls), r.stdout)
	}
	wantStatus := []int32{200, 404, 200}
	wantBytes := []int{3, 3, 1000}
	for i, u := range urls {
		l := got[uint64(i)]
		if l.URL != u || l.Status != wantStatus[i] || l.Bytes != wantBytes[i] || l.Error != nil || l.DurationMS <= 0 {
			t.Errorf("result %d = %+v, want url %q, status %d, %d bytes, no error, a duration", i, l, u, wantStatus[i], wantBytes[i])
		}
	}
	if n := up.Tag("args"); n != 3 {
		t.Errorf("upstream saw %d requests, want 3", n)
	}
}

// TestRunLineFormat checks the fields of a line, their order, and that
// final_url, error, body and file appear only when they should.
func TestRunLineFormat(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	e := startEcho(t)
	tests := []struct {
		name string
		args []string
		url  string
		want []string // keys, in order
	}{
		{name: "ok", url: up.URL + "/", want: []string{"index", "id", "url", "status", "bytes", "truncated", "duration_ms"}},
		{name: "redirect", url: e.URL + "/redirect",
			want: []string{"index", "id", "url", "final_url", "status", "bytes", "truncated", "duration_ms"}},
		{name: "error", url: blockedURL, want: []string{"index", "id", "url", "status", "bytes", "truncated", "duration_ms", "error"}},
		{name: "body", args: []string{"-body"}, url: up.URL + "/",
			want: []string{"index", "id", "url", "status", "bytes", "truncated", "duration_ms", "body"}},
		{name: "out", args: []string{"-out", t.TempDir()}, url: up.URL + "/",
			want: []string{"index", "id", "url", "status", "bytes", "truncated", "duration_ms", "file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCtl(t, nil, nil, append(append([]string{"-addr", addr}, tt.args...), tt.url)...)
			r.wantCode(t, 0)
			if got := jsonKeys(t, r.stdout); !slices.Equal(got, tt.want) {
				t.Errorf("fetchctl %q printed keys %q, want %q", r.args, got, tt.want)
			}
		})
	}
}

func TestRunStdin(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	stdin := "# a comment\n\n" + up.URL + "/?tag=stdin\n   \n  # indented comment\n" + up.URL + "/?tag=stdin&status=500\n"
	r := runCtl(t, strings.NewReader(stdin), nil, "-addr", addr, "-ordered")
	r.wantCode(t, 0)
	lines := r.lines(t)
	if got := indexes(lines); !slices.Equal(got, []uint64{0, 1}) {
		t.Fatalf("fetchctl -ordered indexes = %v, want [0 1]\n%s", got, r.stdout)
	}
	if lines[0].Status != 200 || lines[1].Status != 500 {
		t.Errorf("statuses = %d, %d, want 200, 500", lines[0].Status, lines[1].Status)
	}
	if n := up.Tag("stdin"); n != 2 {
		t.Errorf("upstream saw %d requests, want 2", n)
	}
}

// TestRunJSONJobs checks JSON lines (method, headers, body, id reach the
// upstream and the result), mixed with URL lines that use -method and -H.
func TestRunJSONJobs(t *testing.T) {
	addr := startBackend(t)
	e := startEcho(t)
	stdin := fmt.Sprintf(`{"url":"%s/json","method":"POST","headers":[{"name":"X-Test","value":"from-json"}],"body":"aGVsbG8=","timeout":"5s","id":"job-1"}
%s/plain
{"url": "%s/bin", "id": "binary"}
`, e.URL, e.URL, e.URL)
	r := runCtl(t, strings.NewReader(stdin), nil, "-addr", addr, "-ordered", "-body", "-method", "PUT", "-H", "X-Test: from-flag")
	r.wantCode(t, 0)
	lines := r.lines(t)
	if len(lines) != 3 {
		t.Fatalf("fetchctl printed %d lines, want 3:\n%s", len(lines), r.stdout)
	}
	tests := []struct {
		id, body string
		base64   []byte
	}{
		{id: "job-1", body: "POST hello from-json"},
		{id: "", body: "PUT  from-flag"},
		{id: "binary", base64: []byte{0xff, 0xfe, 0, 'a'}},
	}
	for i, tt := range tests {
		l := lines[i]
		if l.ID != tt.id || l.Status != 200 {
			t.Errorf("line %d = %+v, want id %q, status 200", i, l, tt.id)
		}
		if tt.base64 != nil {
			if l.Body != nil || string(l.BodyBase64) != string(tt.base64) {
				t.Errorf("line %d body %v, body_base64 %q, want only body_base64 %q", i, l.Body, l.BodyBase64, tt.base64)
			}
		} else if l.Body == nil || *l.Body != tt.body || l.BodyBase64 != nil {
			t.Errorf("line %d body = %v, want %q", i, l.Body, tt.body)
		}
	}
	want := []string{"/json: POST hello from-json", "/plain: PUT  from-flag"}
	if got := e.requests(); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("upstream saw %q, want %q", got, want)
	}
}

// TestRunOrder checks completion order against -ordered: the first job is
// the slowest, so it comes last unless -ordered.
func TestRunOrder(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	urls := []string{up.URL + "/?delay=600ms", up.URL + "/?n=1", up.URL + "/?delay=300ms", up.URL + "/?n=3"}
	tests := []struct {
		name    string
		ordered bool
	}{
		{name: "completion order"},
		{name: "input order", ordered: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-addr", addr}
			if tt.ordered {
				args = append(args, "-ordered")
			}
			r := runCtl(t, strings.NewReader(strings.Join(urls, "\n")), nil, args...)
			r.wantCode(t, 0)
			got := indexes(r.lines(t))
			if len(got) != len(urls) {
				t.Fatalf("fetchctl %q printed %d results, want %d", r.args, len(got), len(urls))
			}
			if tt.ordered {
				if !slices.Equal(got, []uint64{0, 1, 2, 3}) {
					t.Errorf("fetchctl -ordered indexes = %v, want [0 1 2 3]", got)
				}
				return
			}
			if got[len(got)-1] != 0 || got[len(got)-2] != 2 {
				t.Errorf("fetchctl indexes = %v, want the slow jobs 2 then 0 last", got)
			}
		})
	}
}

func TestRunOutDir(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	dir := filepath.Join(t.TempDir(), "bodies")
	urls := []string{up.URL + "/?size=10", up.URL + "/?size=100000&status=404", blockedURL, up.URL + "/?size=0"}
	r := runCtl(t, nil, nil, append([]string{"-addr", addr, "-ordered", "-out", dir}, urls...)...)
	r.wantCode(t, 0)
	lines := r.lines(t)
	wantSize := []int{10, 100000, -1, 0} // -1: no file
	for i, l := range lines {
		if wantSize[i] < 0 {
			if l.File != "" {
				t.Errorf("line %d (error %v) names file %q, want none", i, l.Error, l.File)
			}
			continue
		}
		wantFile := filepath.Join(dir, fmt.Sprintf("%d.body", i))
		if l.File != wantFile {
			t.Errorf("line %d file = %q, want %q", i, l.File, wantFile)
		}
		b, err := os.ReadFile(wantFile)
		if err != nil {
			t.Errorf("line %d: %v", i, err)
			continue
		}
		if want := strings.Repeat("x", wantSize[i]); string(b) != want || l.Bytes != wantSize[i] {
			t.Errorf("%s holds %d bytes (line says %d), want %d x's", wantFile, len(b), l.Bytes, wantSize[i])
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 3 {
		t.Errorf("ReadDir(%s) = %d entries, %v; want 3", dir, len(entries), err)
	}
}
