package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// cannedBody is what the canned fetchd read for one URL: body (when it is
// returned), length (body_length) and sha (body_sha256).
type cannedBody struct {
	body      []byte
	length    uint64
	sha       []byte
	truncated bool
}

// newCanned returns the cannedBody of a body fetchd read in full.
func newCanned(body string) cannedBody {
	sum := sha256.Sum256([]byte(body))
	return cannedBody{body: []byte(body), length: uint64(len(body)), sha: sum[:]}
}

// canned is a tiny fetchd on a real gRPC server that answers each job from
// a table by URL, applying the stream's digest and discard_body options as
// the contract says (body_length always, body_sha256 only with digest, no
// body with discard_body), and records the first message of each stream.
type canned struct {
	fetchv1.UnimplementedFetchServiceServer
	bodies map[string]cannedBody // by URL; not modified once serving

	mu     sync.Mutex // guards firsts
	firsts []*fetchv1.FetchRequest
}

// startCanned serves a canned fetchd of bodies on loopback and returns it
// and its address; it stops when tb ends.
func startCanned(tb testing.TB, bodies map[string]cannedBody) (*canned, string) {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c := &canned{bodies: bodies}
	gs := grpc.NewServer()
	fetchv1.RegisterFetchServiceServer(gs, c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gs.Serve(lis)
	}()
	tb.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return c, lis.Addr().String()
}

// Fetch answers the jobs of one stream.
func (c *canned) Fetch(st fetchv1.FetchService_FetchServer) error {
	var opts *fetchv1.StreamOptions
	for i := uint64(0); ; i++ {
		job, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if i == 0 {
			opts = job.GetStreamOptions()
			c.mu.Lock()
			c.firsts = append(c.firsts, job)
			c.mu.Unlock()
		}
		b, ok := c.bodies[job.GetUrl()]
		if !ok {
			b = newCanned("not in the table\n")
		}
		r := &fetchv1.FetchResponse{Index: i, Id: job.GetId(), Url: job.GetUrl(), FinalUrl: job.GetUrl(),
			StatusCode: 200, Truncated: b.truncated, BodyLength: b.length}
		if !opts.GetDiscardBody() {
			r.Body = b.body
		}
		if opts.GetDigest() {
			r.BodySha256 = b.sha
		}
		if err := st.Send(r); err != nil {
			return err
		}
	}
}

// streamOptions returns the stream options of the first message of each
// stream so far.
func (c *canned) streamOptions() []*fetchv1.StreamOptions {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*fetchv1.StreamOptions, len(c.firsts))
	for i, f := range c.firsts {
		out[i] = f.GetStreamOptions()
	}
	return out
}

// TestRunDigestDiscard checks what -digest and -discard ask of fetchd and
// how the lines show body_length ("bytes") and body_sha256 ("sha256").
func TestRunDigestDiscard(t *testing.T) {
	const small = "http://127.0.0.1:1/small"
	const huge = "http://127.0.0.1:1/huge"
	const capped = "http://127.0.0.1:1/capped"
	hugeSum := sha256.Sum256([]byte("stands for 200 MiB"))
	cappedSum := sha256.Sum256([]byte("stands for the first GiB"))
	bodies := map[string]cannedBody{
		small:  newCanned("hello\n"),
		huge:   {length: 200 << 20, sha: hugeSum[:]}, // only ever discarded
		capped: {length: 1 << 30, sha: cappedSum[:], truncated: true},
	}
	smallSum := sha256.Sum256([]byte("hello\n"))
	tests := []struct {
		name      string
		args      []string
		url       string
		want      *fetchv1.StreamOptions // on the first message; nil: none
		wantKeys  []string
		wantBytes int
		wantSHA   string
		wantTrunc bool
	}{
		{name: "neither", url: small,
			wantKeys:  []string{"index", "id", "url", "status", "bytes", "truncated", "duration_ms"},
			wantBytes: 6},
		{name: "digest", args: []string{"-digest"}, url: small, want: &fetchv1.StreamOptions{Digest: true},
			wantKeys:  []string{"index", "id", "url", "status", "bytes", "truncated", "sha256", "duration_ms"},
			wantBytes: 6, wantSHA: hex.EncodeToString(smallSum[:])},
		{name: "discard", args: []string{"-discard"}, url: huge, want: &fetchv1.StreamOptions{DiscardBody: true},
			wantKeys:  []string{"index", "id", "url", "status", "bytes", "truncated", "duration_ms"},
			wantBytes: 200 << 20},
		{name: "discard digest", args: []string{"-discard", "-digest"}, url: huge,
			want:      &fetchv1.StreamOptions{Digest: true, DiscardBody: true},
			wantKeys:  []string{"index", "id", "url", "status", "bytes", "truncated", "sha256", "duration_ms"},
			wantBytes: 200 << 20, wantSHA: hex.EncodeToString(hugeSum[:])},
		{name: "discard beyond the cap", args: []string{"-discard", "-digest", "-c", "2"}, url: capped,
			want:      &fetchv1.StreamOptions{Digest: true, DiscardBody: true, Concurrency: 2},
			wantKeys:  []string{"index", "id", "url", "status", "bytes", "truncated", "sha256", "duration_ms"},
			wantBytes: 1 << 30, wantSHA: hex.EncodeToString(cappedSum[:]), wantTrunc: true},
		{name: "digest from env", args: []string{"-discard"}, url: huge,
			want:      &fetchv1.StreamOptions{Digest: true, DiscardBody: true},
			wantKeys:  []string{"index", "id", "url", "status", "bytes", "truncated", "sha256", "duration_ms"},
			wantBytes: 200 << 20, wantSHA: hex.EncodeToString(hugeSum[:])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fd, addr := startCanned(t, bodies)
			var env map[string]string
			if tt.name == "digest from env" {
				env = map[string]string{"FETCHCTL_DIGEST": "true"}
			}
			r := runCtl(t, nil, env, append(append([]string{"-addr", addr}, tt.args...), tt.url)...)
			r.wantCode(t, 0)
			if got := fd.streamOptions(); len(got) != 1 || !proto.Equal(got[0], tt.want) {
				t.Errorf("fetchctl %q sent stream_options %v, want [%v]", r.args, got, tt.want)
			}
			if got := jsonKeys(t, r.stdout); !slices.Equal(got, tt.wantKeys) {
				t.Errorf("fetchctl %q printed keys %q, want %q", r.args, got, tt.wantKeys)
			}
			l := r.lines(t)
			if len(l) != 1 || l[0].Bytes != tt.wantBytes || l[0].SHA256 != tt.wantSHA || l[0].Truncated != tt.wantTrunc {
				t.Fatalf("fetchctl %q printed %+v, want one line with bytes %d, sha256 %q, truncated %v",
					r.args, l, tt.wantBytes, tt.wantSHA, tt.wantTrunc)
			}
		})
	}
}

// TestRunDigestOut checks that with -digest and -out the file written
// hashes to the line's sha256, and -body shows the same bytes.
func TestRunDigestOut(t *testing.T) {
	const u = "http://127.0.0.1:1/page"
	body := "<html>a page</html>\n"
	_, addr := startCanned(t, map[string]cannedBody{u: newCanned(body)})
	dir := t.TempDir()
	r := runCtl(t, nil, nil, "-addr", addr, "-digest", "-out", dir, "-body", u)
	r.wantCode(t, 0)
	l := r.lines(t)
	if len(l) != 1 || l[0].File == "" || l[0].Body == nil {
		t.Fatalf("fetchctl %q printed %+v, want one line with a file and a body", r.args, l)
	}
	b, err := os.ReadFile(l[0].File)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != l[0].SHA256 || string(b) != body || *l[0].Body != body {
		t.Errorf("file %s holds %q with sha256 %s; line says sha256 %s, body %q; want %q",
			l[0].File, b, got, l[0].SHA256, *l[0].Body, body)
	}
	if l[0].Bytes != len(body) {
		t.Errorf("line bytes = %d, want %d", l[0].Bytes, len(body))
	}
}
