package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// startAPI serves a real fetch server's FetchBatch through a Handler on an
// httptest server, with interceptors around each call.
func startAPI(tb testing.TB, maxBytes int64, interceptors ...grpc.StreamServerInterceptor) *httptest.Server {
	tb.Helper()
	fs := server.New(server.WithAllowCIDRs(loopback...), server.WithLogger(slog.New(slog.DiscardHandler)))
	h, err := New(Config{Register: fs.Register, Interceptors: interceptors, MaxRequestBytes: maxBytes})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(h)
	tb.Cleanup(func() {
		ts.Close()
		fs.Close()
	})
	return ts
}

// post sends body to /v1/fetch with contentType and returns the response.
func post(tb testing.TB, url, contentType, body string) *http.Response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url+Path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", Path, err)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readStatus decodes a whole-call status body.
func readStatus(tb testing.TB, resp *http.Response) (code float64, msg string) {
	tb.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("status Content-Type = %q, want application/json", ct)
	}
	var st struct {
		Code    float64 `json:"code"`
		Message string  `json:"message"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &st); err != nil {
		tb.Fatalf("status body %q: %v", b, err)
	}
	return st.Code, st.Message
}

// TestStream: results come one protojson FetchResponse per line, in
// completion order, each flushed as its job finishes: the fast job's line
// is read while the slow job is still in flight.
func TestStream(t *testing.T) {
	up := testupstream.New(t)
	ts := startAPI(t, 0)
	slow, fast := up.URL+"/?delay=2s&tag=slow", up.URL+"/?size=3"
	body := `{"jobs":[{"url":"` + slow + `","id":"slow"},{"url":"` + fast + `","id":"fast"},{"url":"ftp://x/","id":"bad"}]}`
	resp := post(t, ts.URL, "application/json", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ContentTypeNDJSON {
		t.Errorf("Content-Type = %q, want %s", ct, ContentTypeNDJSON)
	}
	sc := bufio.NewScanner(resp.Body)
	var ids []string
	for sc.Scan() {
		var r fetchv1.FetchResponse
		var compact bytes.Buffer
		if err := json.Compact(&compact, sc.Bytes()); err != nil || !bytes.Equal(compact.Bytes(), sc.Bytes()) {
			t.Errorf("line %q is not compact JSON (%v)", sc.Bytes(), err)
		}
		if err := protojson.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		ids = append(ids, r.GetId())
		switch r.GetId() {
		case "fast":
			if up.InFlight() != 1 {
				t.Errorf("fast result read with %d upstream requests in flight, want 1 (the slow one): not flushed", up.InFlight())
			}
			if r.GetStatusCode() != 200 || string(r.GetBody()) != "xxx" || r.GetIndex() != 1 {
				t.Errorf("fast result = %v, want index 1, 200, body xxx", &r)
			}
		case "bad":
			if r.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST || r.GetIndex() != 2 {
				t.Errorf("bad result = %v, want index 2, ERROR_CODE_INVALID_REQUEST", &r)
			}
		case "slow":
			if r.GetStatusCode() != 200 {
				t.Errorf("slow result = %v, want 200", &r)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || ids[2] != "slow" {
		t.Errorf("result ids in order %q, want 3 with slow last", ids)
	}
}

// TestRefused: whole-call errors are a JSON status with the HTTP status of
// its gRPC code.
func TestRefused(t *testing.T) {
	ts := startAPI(t, 64)
	big := `{"jobs":[{"url":"http://127.0.0.1/` + strings.Repeat("a", 100) + `"}]}`
	tests := []struct {
		name, method, path, ctype, body string
		wantHTTP                        int
		wantCode                        codes.Code
	}{
		{"bad JSON", http.MethodPost, Path, "application/json", `{"jobs":[`, http.StatusBadRequest, codes.InvalidArgument},
		{"unknown field", http.MethodPost, Path, "application/json", `{"job":[]}`, http.StatusBadRequest, codes.InvalidArgument},
		{"too large", http.MethodPost, Path, "application/json", big, http.StatusRequestEntityTooLarge, codes.ResourceExhausted},
		{"GET", http.MethodGet, Path, "", "", http.StatusMethodNotAllowed, codes.Unimplemented},
		{"other path", http.MethodPost, "/v1/other", "application/json", `{}`, http.StatusNotFound, codes.NotFound},
		{"protobuf body", http.MethodPost, Path, "application/proto", `{}`, http.StatusUnsupportedMediaType, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, ts.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantHTTP {
				t.Errorf("%s %s = HTTP %d, want %d", tt.method, tt.path, resp.StatusCode, tt.wantHTTP)
			}
			if code, msg := readStatus(t, resp); codes.Code(code) != tt.wantCode || msg == "" {
				t.Errorf("%s %s status = code %v %q, want %v with a message", tt.method, tt.path, code, msg, tt.wantCode)
			}
		})
	}
}

// TestContentTypes: what curl -d sends, and no Content-Type, are read as
// JSON too.
func TestContentTypes(t *testing.T) {
	ts := startAPI(t, 0)
	for _, ct := range []string{"", "application/json; charset=utf-8", "application/x-www-form-urlencoded"} {
		t.Run(ct, func(t *testing.T) {
			resp := post(t, ts.URL, ct, `{"jobs":[]}`)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("Content-Type %q: status %d, want 200", ct, resp.StatusCode)
			}
		})
	}
}

// TestInterceptors: the interceptors see the call as gRPC would show it:
// its method, the peer's address, the bearer token as metadata; an error
// of theirs is the call's status.
func TestInterceptors(t *testing.T) {
	var seen struct {
		method, auth string
		peer         bool
	}
	refuse := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		seen.method = info.FullMethod
		md, _ := metadata.FromIncomingContext(ss.Context())
		seen.auth = strings.Join(md.Get("authorization"), ",")
		p, ok := peer.FromContext(ss.Context())
		seen.peer = ok && strings.HasPrefix(p.Addr.String(), "127.0.0.1:")
		if seen.auth != "Bearer good" {
			return status.Error(codes.Unauthenticated, "no token")
		}
		return handler(srv, ss)
	}
	ts := startAPI(t, 0, refuse)
	resp := post(t, ts.URL, "", `{"jobs":[]}`)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a token: HTTP %d, want 401", resp.StatusCode)
	}
	if code, _ := readStatus(t, resp); codes.Code(code) != codes.Unauthenticated {
		t.Errorf("without a token: code %v, want Unauthenticated", code)
	}
	if seen.method != "/fetch.v1.FetchService/FetchBatch" || !seen.peer {
		t.Errorf("interceptor saw method %q, peer on loopback %v; want FetchBatch and the peer", seen.method, seen.peer)
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+Path, strings.NewReader(`{"jobs":[]}`))
	req.Header.Set("Authorization", "Bearer good")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusOK {
		t.Errorf("with a token: HTTP %d, want 200", resp2.StatusCode)
	}
}

// TestLateError: an error after results were sent is a last line
// {"status":{...}}.
func TestLateError(t *testing.T) {
	up := testupstream.New(t)
	failLate := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := handler(srv, ss); err != nil {
			return err
		}
		return status.Error(codes.Internal, "late")
	}
	ts := startAPI(t, 0, failLate)
	resp := post(t, ts.URL, "", `{"jobs":[{"url":"`+up.URL+`/"}]}`)
	b, _ := io.ReadAll(resp.Body)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if resp.StatusCode != http.StatusOK || len(lines) != 2 {
		t.Fatalf("HTTP %d, body %q; want 200 and 2 lines", resp.StatusCode, b)
	}
	var last struct {
		Status struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &last); err != nil || codes.Code(last.Status.Code) != codes.Internal || last.Status.Message != "late" {
		t.Errorf("last line %q (%v), want {\"status\":{\"code\":13,\"message\":\"late\"}}", lines[1], err)
	}
}

// TestDisconnect: a caller who goes away cancels its jobs' upstream
// requests.
func TestDisconnect(t *testing.T) {
	up := testupstream.New(t)
	ts := startAPI(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+Path, strings.NewReader(`{"jobs":[{"url":"`+up.URL+`/?hang=1"}]}`))
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	testctx.WaitFor(t, 10*time.Second, "the upstream request", func() bool { return up.InFlight() == 1 })
	cancel()
	<-done
	testctx.WaitFor(t, 10*time.Second, "the upstream request to be cancelled", func() bool { return up.Cancelled() > 0 })
	if up.Cancelled() != 1 {
		t.Errorf("upstream saw %d requests cancelled, want 1", up.Cancelled())
	}
}
