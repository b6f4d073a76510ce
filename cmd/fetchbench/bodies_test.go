package main

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fetchd/fetchd/client"
)

// TestBodiesCheck runs both sides of the bodies workload through the real
// fetchd binary against the real upstream, once expecting the size the
// upstream serves and once a size it does not: a wrong byte count must
// fail the run, streamed (over one chunk) or inline.
func TestBodiesCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts fetchd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := buildFetchd(ctx, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newUpstream())
	defer srv.Close()
	b := &bench{sz: shortSizes, fetchd: bin, upstream: srv.URL, log: io.Discard}

	tests := []struct {
		name       string
		size, want int64
		fetchdErr  string // "" for no error
		baseErr    string
	}{
		{"streamed", 3 << 20, 3 << 20, "", ""},
		{"inline", 1000, 1000, "", ""},
		{"streamed, one byte short of want", 3 << 20, 3<<20 + 1, "body_length 3145728, want 3145729", "3145728 body bytes, want 3145729"},
		{"inline, one byte over want", 1000, 999, "body_length 1000, want 999", "1000 body bytes, want 999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const jobs, conc = 3, 2
			url := b.streamURL(tt.size)
			var s side
			err := b.withFetchd(ctx, conc, func(_ *client.Client, fd *process) error {
				var err error
				s, err = b.fetchdBodies(ctx, fd, url, tt.want, jobs)
				return err
			})
			checkBodiesErr(t, "fetchd", err, tt.fetchdErr)
			if err == nil && (s.jobs != jobs || s.bytes != jobs*tt.size) {
				t.Errorf("fetchd side = %d jobs, %d bytes, want %d, %d", s.jobs, s.bytes, jobs, jobs*tt.size)
			}
			err = b.withBaseline(ctx, conc, func(bl *baseline) error {
				var err error
				s, err = b.baselineBodies(ctx, bl, url, tt.want, jobs)
				return err
			})
			checkBodiesErr(t, "baseline", err, tt.baseErr)
			if err == nil && (s.jobs != jobs || s.bytes != jobs*tt.size) {
				t.Errorf("baseline side = %d jobs, %d bytes, want %d, %d", s.jobs, s.bytes, jobs, jobs*tt.size)
			}
		})
	}
}

func checkBodiesErr(tb testing.TB, who string, err error, want string) {
	tb.Helper()
	switch {
	case want == "" && err != nil:
		tb.Errorf("%s side: %v, want no error", who, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		tb.Errorf("%s side: %v, want an error with %q", who, err, want)
	}
}
