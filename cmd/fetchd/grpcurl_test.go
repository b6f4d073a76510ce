package main

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// The shell path: grpcurl against the real binary, through server
// reflection, with the JSON that people type.

func TestGrpcurl(t *testing.T) {
	up := testupstream.New(t)
	p := startFetchd(t, "-allow-cidr", "127.0.0.0/8")

	t.Run("list", func(t *testing.T) {
		out, err := grpcurl(t, "-plaintext", p.addr, "list")
		if err != nil {
			t.Fatalf("grpcurl list: %v", err)
		}
		got := strings.Fields(out)
		for _, want := range []string{"fetch.v1.FetchService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
			if !slices.Contains(got, want) {
				t.Errorf("grpcurl list = %q, want it to include %s", got, want)
			}
		}
	})

	t.Run("describe", func(t *testing.T) {
		tests := []struct {
			symbol string
			want   []string
		}{
			{"fetch.v1.FetchRequest", []string{"message FetchRequest {", "string url = 1;", ".fetch.v1.StreamOptions stream_options = 7;"}},
			{"fetch.v1.FetchService", []string{"service FetchService {", "rpc Fetch (", "rpc FetchBatch ("}},
			{"fetch.v1.ErrorCode", []string{"enum ErrorCode {", "ERROR_CODE_BLOCKED = 2;"}},
		}
		for _, tt := range tests {
			out, err := grpcurl(t, "-plaintext", p.addr, "describe", tt.symbol)
			if err != nil {
				t.Fatalf("grpcurl describe %s: %v", tt.symbol, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("grpcurl describe %s = %q, want it to contain %q", tt.symbol, out, w)
				}
			}
		}
	})

	t.Run("Fetch", func(t *testing.T) {
		u := up.URL + "/?size=5&tag=single"
		out, err := grpcurl(t, "-plaintext", "-d", `{"url":"`+u+`","id":"a"}`, p.addr, "fetch.v1.FetchService/Fetch")
		if err != nil {
			t.Fatalf("grpcurl Fetch: %v", err)
		}
		// Check the JSON names themselves once, as a shell user sees them.
		var raw map[string]any
		if err := json.Unmarshal([]byte(out), &raw); err != nil {
			t.Fatalf("grpcurl Fetch output %q: %v", out, err)
		}
		if raw["statusCode"] != float64(200) || raw["body"] != "eHh4eHg=" || raw["id"] != "a" || raw["url"] != u {
			t.Errorf("grpcurl Fetch = %s, want statusCode 200, body eHh4eHg= (xxxxx), id a, url %s", out, u)
		}
		got := decodeAll(t, out, func() *fetchv1.FetchResponse { return new(fetchv1.FetchResponse) })
		// An old-style call (no digest, no discard): as before, plus body_length.
		if raw["bodyLength"] != "5" || raw["bodySha256"] != nil {
			t.Errorf("grpcurl Fetch = %s, want bodyLength \"5\" and no bodySha256", out)
		}
		want := []*fetchv1.FetchResponse{{Id: "a", Url: u, FinalUrl: u, StatusCode: 200, Body: []byte("xxxxx"), BodyLength: 5}}
		checkResults(t, "Fetch", got, want)
		if n := up.Tag("single"); n != 1 {
			t.Errorf("upstream saw %d requests, want 1", n)
		}
	})

	t.Run("Fetch digest", func(t *testing.T) {
		// The README's example: a digested, discarded fetch.
		u := up.URL + "/?size=5&tag=digest"
		out, err := grpcurl(t, "-plaintext", "-d", `{"url":"`+u+`","streamOptions":{"digest":true,"discardBody":true}}`,
			p.addr, "fetch.v1.FetchService/Fetch")
		if err != nil {
			t.Fatalf("grpcurl Fetch: %v", err)
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(out), &raw); err != nil {
			t.Fatalf("grpcurl Fetch output %q: %v", out, err)
		}
		// sha256("xxxxx"), base64 as protojson prints bytes.
		const wantSum = "6vFrwHlo4BPz+UqxNCRyQ0o5/DR18RzzQabDlll0+Ok="
		if raw["bodyLength"] != "5" || raw["bodySha256"] != wantSum || raw["body"] != nil {
			t.Errorf("grpcurl Fetch = %s, want bodyLength \"5\", bodySha256 %s and no body", out, wantSum)
		}
		got := decodeAll(t, out, func() *fetchv1.FetchResponse { return new(fetchv1.FetchResponse) })
		want := []*fetchv1.FetchResponse{{Url: u, FinalUrl: u, StatusCode: 200, BodyLength: 5, BodySha256: sha([]byte("xxxxx"))}}
		checkResults(t, "Fetch", got, want)
	})

	t.Run("Fetch several jobs", func(t *testing.T) {
		// grpcurl leaves out fields with zero values, index 0 among them,
		// unless -emit-defaults; protojson decoding reads both forms.
		for _, emitDefaults := range []bool{false, true} {
			name := "plain"
			if emitDefaults {
				name = "emit-defaults"
			}
			t.Run(name, func(t *testing.T) {
				tag := "several-" + name
				ok, notFound := up.URL+"/?size=5&tag="+tag, up.URL+"/?size=0&status=404&tag="+tag
				forbidden := up.URL + "/?tag=forbidden-" + name
				jobs := []*fetchv1.FetchRequest{
					{Url: ok, Id: "ok", StreamOptions: &fetchv1.StreamOptions{MaxBodyBytes: 4}},
					{Url: "ftp://x", Id: "bad-scheme"},
					{Url: "http://169.254.169.254/latest/meta-data/", Id: "metadata"},
					{Url: notFound, Id: "missing"},
					{Url: forbidden, Id: "host-header", Headers: []*fetchv1.Header{{Name: "Host", Value: "example.com"}}},
					{Url: forbidden, Id: "long-timeout", Timeout: durationpb.New(time.Hour)},
					{Url: forbidden, Id: "late-options", StreamOptions: &fetchv1.StreamOptions{Concurrency: 1}},
				}
				args := []string{"-plaintext", "-d", requestsJSON(t, jobs...)}
				if emitDefaults {
					args = append(args, "-emit-defaults")
				}
				out, err := grpcurl(t, append(args, p.addr, "fetch.v1.FetchService/Fetch")...)
				if err != nil {
					t.Fatalf("grpcurl Fetch: %v", err)
				}
				if n, want := strings.Count(out, `"index"`), len(jobs)-1; emitDefaults {
					if n != len(jobs) {
						t.Errorf("grpcurl -emit-defaults printed %d index fields, want %d:\n%s", n, len(jobs), out)
					}
				} else if n != want {
					t.Errorf("grpcurl printed %d index fields, want %d (none for index 0):\n%s", n, want, out)
				}
				got := decodeAll(t, out, func() *fetchv1.FetchResponse { return new(fetchv1.FetchResponse) })
				want := []*fetchv1.FetchResponse{
					{Index: 0, Id: "ok", Url: ok, FinalUrl: ok, StatusCode: 200, Body: []byte("xxxx"), BodyLength: 4, Truncated: true},
					errResult(1, "bad-scheme", "ftp://x", fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST),
					errResult(2, "metadata", "http://169.254.169.254/latest/meta-data/", fetchv1.ErrorCode_ERROR_CODE_BLOCKED),
					{Index: 3, Id: "missing", Url: notFound, FinalUrl: notFound, StatusCode: 404},
					errResult(4, "host-header", forbidden, fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST),
					errResult(5, "long-timeout", forbidden, fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST),
					errResult(6, "late-options", forbidden, fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST),
				}
				checkResults(t, "Fetch", got, want)
				if n := up.Tag(tag); n != 2 {
					t.Errorf("upstream saw %d requests tagged %s, want 2", n, tag)
				}
				if n := up.Tag("forbidden-" + name); n != 0 {
					t.Errorf("upstream saw %d requests of invalid jobs, want 0", n)
				}
			})
		}
	})

	t.Run("FetchBatch", func(t *testing.T) {
		ok := up.URL + "/?size=5&tag=batch"
		tests := []struct {
			name string
			req  *fetchv1.FetchBatchRequest
			want []*fetchv1.FetchResponse
		}{
			{
				name: "jobs",
				req: &fetchv1.FetchBatchRequest{Jobs: []*fetchv1.FetchRequest{
					{Url: ok, Id: "ok"},
					{Url: "ftp://x", Id: "bad-scheme"},
					{Url: "http://169.254.169.254/", Id: "metadata"},
					{Url: ok, Id: "job-options", StreamOptions: &fetchv1.StreamOptions{MaxBodyBytes: 1}},
				}},
				want: []*fetchv1.FetchResponse{
					{Index: 0, Id: "ok", Url: ok, FinalUrl: ok, StatusCode: 200, Body: []byte("xxxxx"), BodyLength: 5},
					errResult(1, "bad-scheme", "ftp://x", fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST),
					errResult(2, "metadata", "http://169.254.169.254/", fetchv1.ErrorCode_ERROR_CODE_BLOCKED),
					errResult(3, "job-options", ok, fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST),
				},
			},
			{
				name: "options",
				req: &fetchv1.FetchBatchRequest{
					Jobs:    []*fetchv1.FetchRequest{{Url: ok}, {Url: ok, Id: "second"}},
					Options: &fetchv1.StreamOptions{MaxBodyBytes: 3},
				},
				want: []*fetchv1.FetchResponse{
					{Index: 0, Url: ok, FinalUrl: ok, StatusCode: 200, Body: []byte("xxx"), BodyLength: 3, Truncated: true},
					{Index: 1, Id: "second", Url: ok, FinalUrl: ok, StatusCode: 200, Body: []byte("xxx"), BodyLength: 3, Truncated: true},
				},
			},
			{
				name: "digest and discard",
				req: &fetchv1.FetchBatchRequest{
					Jobs:    []*fetchv1.FetchRequest{{Url: ok}},
					Options: &fetchv1.StreamOptions{Digest: true, DiscardBody: true, MaxBodyBytes: 3},
				},
				want: []*fetchv1.FetchResponse{
					{Index: 0, Url: ok, FinalUrl: ok, StatusCode: 200, BodyLength: 5, BodySha256: sha([]byte("xxxxx"))},
				},
			},
			{
				name: "empty",
				req:  &fetchv1.FetchBatchRequest{},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				out, err := grpcurl(t, "-plaintext", "-d", marshalJSON(t, tt.req), p.addr, "fetch.v1.FetchService/FetchBatch")
				if err != nil {
					t.Fatalf("grpcurl FetchBatch: %v", err)
				}
				var got []*fetchv1.FetchResponse
				for _, r := range decodeAll(t, out, func() *fetchv1.FetchBatchResponse { return new(fetchv1.FetchBatchResponse) }) {
					if r.GetResult() == nil {
						t.Errorf("FetchBatch sent %v, want a result", r)
					}
					got = append(got, r.GetResult())
				}
				checkResults(t, "FetchBatch", got, tt.want)
			})
		}
	})

	t.Run("health", func(t *testing.T) {
		for _, service := range []string{"", "fetch.v1.FetchService"} {
			out, err := grpcurl(t, "-plaintext", "-d", `{"service":"`+service+`"}`, p.addr, "grpc.health.v1.Health/Check")
			if err != nil {
				t.Fatalf("grpcurl Health/Check %q: %v", service, err)
			}
			got := decodeAll(t, out, func() *healthpb.HealthCheckResponse { return new(healthpb.HealthCheckResponse) })
			if len(got) != 1 || got[0].GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Health/Check(%q) = %s, want SERVING", service, out)
			}
		}
	})
}

// TestGrpcurlMaxDiscardBytes: -max-discard-bytes caps a discarded body,
// which is marked truncated beyond it; -max-body-bytes does not apply.
func TestGrpcurlMaxDiscardBytes(t *testing.T) {
	up := testupstream.New(t)
	p := startFetchd(t, "-allow-cidr", "127.0.0.0/8", "-max-discard-bytes", "4", "-max-body-bytes", "2")
	long, short := up.URL+"/?size=5", up.URL+"/?size=3"
	jobs := []*fetchv1.FetchRequest{
		{Url: long, StreamOptions: &fetchv1.StreamOptions{Digest: true, DiscardBody: true}},
		{Url: short},
	}
	out, err := grpcurl(t, "-plaintext", "-d", requestsJSON(t, jobs...), p.addr, "fetch.v1.FetchService/Fetch")
	if err != nil {
		t.Fatalf("grpcurl Fetch: %v", err)
	}
	got := decodeAll(t, out, func() *fetchv1.FetchResponse { return new(fetchv1.FetchResponse) })
	want := []*fetchv1.FetchResponse{
		{Index: 0, Url: long, FinalUrl: long, StatusCode: 200, BodyLength: 4, BodySha256: sha([]byte("xxxx")), Truncated: true},
		{Index: 1, Url: short, FinalUrl: short, StatusCode: 200, BodyLength: 3, BodySha256: sha([]byte("xxx"))},
	}
	checkResults(t, "Fetch", got, want)
}

// sha returns the SHA-256 of b.
func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// TestGrpcurlBlockedByDefault checks that, without -allow-cidr, loopback
// upstreams are refused before any connection is made.
func TestGrpcurlBlockedByDefault(t *testing.T) {
	up := testupstream.New(t)
	p := startFetchd(t)
	port := strings.TrimPrefix(up.URL, "http://127.0.0.1:")
	urls := []string{
		up.URL + "/?tag=blocked",
		"http://localhost:" + port + "/",
		"http://[::1]:" + port + "/",
		"http://127.0.0.2:" + port + "/",
		"http://0.0.0.0:" + port + "/",
	}
	var jobs []*fetchv1.FetchRequest
	var want []*fetchv1.FetchResponse
	for i, u := range urls {
		jobs = append(jobs, &fetchv1.FetchRequest{Url: u, Id: u})
		want = append(want, errResult(uint64(i), u, u, fetchv1.ErrorCode_ERROR_CODE_BLOCKED))
	}
	out, err := grpcurl(t, "-plaintext", "-d", requestsJSON(t, jobs...), p.addr, "fetch.v1.FetchService/Fetch")
	if err != nil {
		t.Fatalf("grpcurl Fetch: %v", err)
	}
	got := decodeAll(t, out, func() *fetchv1.FetchResponse { return new(fetchv1.FetchResponse) })
	checkResults(t, "Fetch", got, want)
	if n := up.Hits(); n != 0 {
		t.Errorf("upstream saw %d requests, want 0", n)
	}
}

// requestsJSON returns jobs as concatenated JSON objects, the form grpcurl
// -d takes for a client stream.
func requestsJSON(tb testing.TB, jobs ...*fetchv1.FetchRequest) string {
	tb.Helper()
	var b strings.Builder
	for _, j := range jobs {
		b.WriteString(marshalJSON(tb, j))
		b.WriteByte('\n')
	}
	return b.String()
}

func marshalJSON(tb testing.TB, m proto.Message) string {
	tb.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// decodeAll decodes grpcurl's output, a sequence of JSON objects, into
// messages.
func decodeAll[M proto.Message](tb testing.TB, out string, newMsg func() M) []M {
	tb.Helper()
	var msgs []M
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return msgs
		} else if err != nil {
			tb.Fatalf("decoding grpcurl output %q: %v", out, err)
		}
		m := newMsg()
		if err := protojson.Unmarshal(raw, m); err != nil {
			tb.Fatalf("decoding %s: %v", raw, err)
		}
		msgs = append(msgs, m)
	}
}

func errResult(index uint64, id, u string, code fetchv1.ErrorCode) *fetchv1.FetchResponse {
	return &fetchv1.FetchResponse{Index: index, Id: id, Url: u, Error: &fetchv1.Error{Code: code}}
}

// checkResults checks that got holds exactly one result per job, in any
// order, equal to want[index] once normalized: the duration, the error
// message (which must be set) and the response headers (which must
// include Content-Type) are not compared.
func checkResults(tb testing.TB, rpc string, got, want []*fetchv1.FetchResponse) {
	tb.Helper()
	seen := make(map[uint64]bool)
	for _, r := range got {
		i := r.GetIndex()
		if i >= uint64(len(want)) || seen[i] {
			tb.Errorf("%s sent an unexpected or duplicate result %v", rpc, r)
			continue
		}
		seen[i] = true
		if r.GetError() != nil && r.GetError().GetMessage() == "" {
			tb.Errorf("%s result %d has an error without a message: %v", rpc, i, r)
		}
		if r.GetStatusCode() != 0 && !hasHeader(r, "Content-Type") {
			tb.Errorf("%s result %d has no Content-Type header: %v", rpc, i, r)
		}
		n := normalize(r)
		if !proto.Equal(n, want[i]) {
			tb.Errorf("%s(%q) = %v, want %v", rpc, want[i].GetUrl(), n, want[i])
		}
	}
	for i, w := range want {
		if !seen[uint64(i)] {
			tb.Errorf("%s sent no result for job %d (%v)", rpc, i, w)
		}
	}
}

func normalize(r *fetchv1.FetchResponse) *fetchv1.FetchResponse {
	n := proto.CloneOf(r)
	n.Duration, n.Headers = nil, nil
	n.Attempts, n.Shared = 0, false // retries and dedup are the server package's tests
	if n.Error != nil {
		n.Error.Message = ""
	}
	return n
}

func hasHeader(r *fetchv1.FetchResponse, name string) bool {
	for _, h := range r.GetHeaders() {
		if h.GetName() == name {
			return true
		}
	}
	return false
}

// TestGrpcurlChunks: the README's large-body call through grpcurl. With
// chunk_bytes a body over the inline cap arrives whole, in chunk messages
// before its one result; a caller that does not ask (an old one) still
// gets its body inline, cut at the cap, and no chunk.
func TestGrpcurlChunks(t *testing.T) {
	up := testupstream.New(t)
	p := startFetchd(t, "-allow-cidr", "127.0.0.0/8", "-max-body-bytes", "20000")
	const size = 50000
	url := up.URL + "/?size=50000"
	body := []byte(strings.Repeat("x", size))

	t.Run("chunk_bytes", func(t *testing.T) {
		req := `{"jobs": [{"url": "` + url + `"}], "options": {"chunk_bytes": 16384, "digest": true}}`
		out, err := grpcurl(t, "-plaintext", "-d", req, p.addr, "fetch.v1.FetchService/FetchBatch")
		if err != nil {
			t.Fatalf("grpcurl FetchBatch: %v", err)
		}
		msgs := decodeAll(t, out, func() *fetchv1.FetchBatchResponse { return new(fetchv1.FetchBatchResponse) })
		var got []byte
		for i, m := range msgs {
			r := m.GetResult()
			if i < len(msgs)-1 {
				c := r.GetChunk()
				if c == nil || c.GetOffset() != uint64(len(got)) || (i == 0) != (c.GetHead().GetStatusCode() == 200) {
					t.Fatalf("message %d = %v; want a chunk at offset %d, with the head on the first only", i, r, len(got))
				}
				got = append(got, c.GetData()...)
				continue
			}
			want := &fetchv1.FetchResponse{Url: url, FinalUrl: url, StatusCode: 200, BodyLength: size, BodySha256: sha(body), Streamed: true}
			checkResults(t, "FetchBatch", []*fetchv1.FetchResponse{r}, []*fetchv1.FetchResponse{want})
		}
		if len(msgs) != 5 || string(got) != string(body) {
			t.Errorf("%d messages, %d body bytes in chunks; want 4 chunks of 16384 at most and a result, %d bytes", len(msgs), len(got), size)
		}
	})
	t.Run("old caller", func(t *testing.T) {
		out, err := grpcurl(t, "-plaintext", "-d", `{"jobs": [{"url": "`+url+`"}]}`, p.addr, "fetch.v1.FetchService/FetchBatch")
		if err != nil {
			t.Fatalf("grpcurl FetchBatch: %v", err)
		}
		msgs := decodeAll(t, out, func() *fetchv1.FetchBatchResponse { return new(fetchv1.FetchBatchResponse) })
		want := &fetchv1.FetchResponse{Url: url, FinalUrl: url, StatusCode: 200, Body: body[:20000], BodyLength: 20000, Truncated: true}
		if len(msgs) != 1 {
			t.Fatalf("%d messages, want 1", len(msgs))
		}
		checkResults(t, "FetchBatch", []*fetchv1.FetchResponse{msgs[0].GetResult()}, []*fetchv1.FetchResponse{want})
	})
}
