package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
)

// traceUpstream is an upstream on loopback that records the traceparent
// header of each request by path. /redirect redirects to /a; /missing
// answers 404.
type traceUpstream struct {
	*httptest.Server
	mu           sync.Mutex        // guards traceparents
	traceparents map[string]string // by request path
}

func newTraceUpstream(tb testing.TB) *traceUpstream {
	tb.Helper()
	u := &traceUpstream{traceparents: map[string]string{}}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.traceparents[r.URL.Path] = r.Header.Get("traceparent")
		u.mu.Unlock()
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/a", http.StatusFound)
		case "/missing":
			http.NotFound(w, r)
		default:
			fmt.Fprintln(w, "ok")
		}
	}))
	tb.Cleanup(u.Close)
	return u
}

// traceparent returns the traceparent header of the request for path, and
// whether there was a request.
func (u *traceUpstream) traceparent(path string) (string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	tp, ok := u.traceparents[path]
	return tp, ok
}

// newRecorder returns a tracer provider that records ended spans in the
// returned exporter.
func newRecorder(tb testing.TB) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	tb.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tb.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, exp
}

// clientSpans returns the HTTP client spans recorded, by url.full.
func clientSpans(tb testing.TB, exp *tracetest.InMemoryExporter) map[string][]tracetest.SpanStub {
	tb.Helper()
	out := map[string][]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		if s.SpanKind != trace.SpanKindClient {
			continue
		}
		u := attr(s, "url.full").AsString()
		out[u] = append(out[u], s)
	}
	return out
}

func attr(s tracetest.SpanStub, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// wantTraceparent is the traceparent header that span s sends.
func wantTraceparent(s tracetest.SpanStub) string {
	return fmt.Sprintf("00-%s-%s-%s", s.SpanContext.TraceID(), s.SpanContext.SpanID(), s.SpanContext.TraceFlags())
}

func TestTracing(t *testing.T) {
	up := newTraceUpstream(t)
	tp, exp := newRecorder(t)
	c, _ := startServer(t, WithTracerProvider(tp))

	jobs := []*fetchv1.FetchRequest{
		job(up.URL + "/ok"),
		job(up.URL + "/missing"),
		job(up.URL + "/redirect"),
		job("ftp://example.com/"),          // invalid: never fetched, no span
		job("http://169.254.169.254/meta"), // blocked at dial time
	}
	res, err := fetchAll(testctx.New(t), t, c, jobs)
	if err != nil || len(res) != len(jobs) {
		t.Fatalf("Fetch = %d results, %v; want %d, nil", len(res), err, len(jobs))
	}
	spans := clientSpans(t, exp)

	tests := []struct {
		url, path  string // path at the upstream; "" if it is never reached
		wantStatus int64  // http.response.status_code; 0 if none
		wantError  bool   // span status Error
	}{
		{up.URL + "/ok", "/ok", 200, false},
		{up.URL + "/missing", "/missing", 404, true},
		{up.URL + "/redirect", "/redirect", 302, false},
		{up.URL + "/a", "/a", 200, false}, // the redirect's second hop: a span of its own
		{"http://169.254.169.254/meta", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			ss := spans[tt.url]
			if len(ss) != 1 {
				t.Fatalf("%d client spans with url.full %q, want 1 (all: %v)", len(ss), tt.url, spans)
			}
			s := ss[0]
			if got := attr(s, "http.request.method").AsString(); got != "GET" {
				t.Errorf("span %q http.request.method = %q, want GET", s.Name, got)
			}
			if got, want := attr(s, "server.address").AsString(), mustParse(t, tt.url).Hostname(); got != want {
				t.Errorf("span %q server.address = %q, want %q", s.Name, got, want)
			}
			if got := attr(s, "http.response.status_code").AsInt64(); got != tt.wantStatus {
				t.Errorf("span %q http.response.status_code = %d, want %d", s.Name, got, tt.wantStatus)
			}
			if got := s.Status.Code == codes.Error; got != tt.wantError {
				t.Errorf("span %q status = %v, want error %v", s.Name, s.Status, tt.wantError)
			}
			if s.Parent.IsValid() {
				t.Errorf("span %q has parent %v, want a root span (the call carries no trace)", s.Name, s.Parent)
			}
			if tt.path == "" {
				return
			}
			got, ok := up.traceparent(tt.path)
			if !ok {
				t.Fatalf("upstream saw no request for %s", tt.path)
			}
			if want := wantTraceparent(s); got != want {
				t.Errorf("upstream traceparent for %s = %q, want %q (the client span's)", tt.path, got, want)
			}
		})
	}
	if n := len(exp.GetSpans()); n != len(tests) {
		t.Errorf("%d spans recorded, want %d (one per upstream request or dial)", n, len(tests))
	}
}

// serveTraced is serveOn with the gRPC server traced by tp, as fetchd
// serves it, so that a call's trace context reaches the Server.
func serveTraced(tb testing.TB, s *Server, tp trace.TracerProvider) fetchv1.FetchServiceClient {
	tb.Helper()
	return serveOn(tb, s, grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
	)))
}

// TestTracingParent checks that an upstream request's span is a child of
// the gRPC call's span, in the caller's trace.
func TestTracingParent(t *testing.T) {
	up := newTraceUpstream(t)
	tp, exp := newRecorder(t)
	s := New(WithAllowCIDRs(loopback), WithLogger(quiet), WithTracerProvider(tp))
	c := serveTraced(t, s, tp)

	const (
		callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpan  = "00f067aa0ba902b7"
	)
	ctx := metadata.AppendToOutgoingContext(testctx.New(t), "traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	jobs := []*fetchv1.FetchRequest{job(up.URL + "/one"), job(up.URL + "/two")}
	if res, err := fetchAll(ctx, t, c, jobs); err != nil || len(res) != len(jobs) {
		t.Fatalf("Fetch = %d results, %v; want %d, nil", len(res), err, len(jobs))
	}
	// The server span ends after the handler returns, just after the
	// client has seen the end of the stream.
	var call tracetest.SpanStub
	testctx.WaitFor(t, 10*time.Second, "the call's server span", func() bool {
		for _, s := range exp.GetSpans() {
			if s.SpanKind == trace.SpanKindServer {
				call = s
				return true
			}
		}
		return false
	})
	if got := call.SpanContext.TraceID().String(); got != callerTrace {
		t.Errorf("call span trace %s, want the caller's %s", got, callerTrace)
	}
	if got := call.Parent.SpanID().String(); got != callerSpan || !call.Parent.IsRemote() {
		t.Errorf("call span parent %s (remote %v), want the caller's %s", got, call.Parent.IsRemote(), callerSpan)
	}
	spans := clientSpans(t, exp)
	for _, path := range []string{"/one", "/two"} {
		ss := spans[up.URL+path]
		if len(ss) != 1 {
			t.Fatalf("%d client spans for %s, want 1", len(ss), path)
		}
		if ss[0].Parent.SpanID() != call.SpanContext.SpanID() || ss[0].SpanContext.TraceID() != call.SpanContext.TraceID() {
			t.Errorf("span for %s has parent %v, want the call's span %v", path, ss[0].Parent, call.SpanContext)
		}
		if got, want := mustTraceparent(t, up, path), wantTraceparent(ss[0]); got != want {
			t.Errorf("upstream traceparent for %s = %q, want %q", path, got, want)
		}
	}
}

func mustParse(tb testing.TB, raw string) *url.URL {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

func mustTraceparent(tb testing.TB, up *traceUpstream, path string) string {
	tb.Helper()
	tp, ok := up.traceparent(path)
	if !ok {
		tb.Fatalf("upstream saw no request for %s", path)
	}
	return tp
}

// TestNoTracing checks that without WithTracerProvider no trace context
// goes to upstreams, not even one the caller sent.
func TestNoTracing(t *testing.T) {
	up := newTraceUpstream(t)
	c, _ := startServer(t)
	ctx := metadata.AppendToOutgoingContext(testctx.New(t), "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	jobs := []*fetchv1.FetchRequest{job(up.URL + "/plain"), job(up.URL + "/redirect")}
	if res, err := fetchAll(ctx, t, c, jobs); err != nil || len(res) != len(jobs) {
		t.Fatalf("Fetch = %d results, %v; want %d, nil", len(res), err, len(jobs))
	}
	for _, path := range []string{"/plain", "/redirect", "/a"} {
		if got := mustTraceparent(t, up, path); got != "" {
			t.Errorf("upstream traceparent for %s = %q without tracing, want none", path, got)
		}
	}
}
