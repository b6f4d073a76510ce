package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testbuf"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// Observability: Prometheus metrics, the per-stream log line, and tracing
// from the OTEL_* environment.

// metricsListening matches the log line of the metrics server.
var metricsListening = regexp.MustCompile(`msg="metrics listening" addr=(127\.0\.0\.1:\d+)`)

// metricsHTTP is the HTTP client of the tests of the metrics server: no
// proxy, and no connection kept open after a request.
var metricsHTTP = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// scrapeMetrics gets http://addr/metrics and parses it.
func scrapeMetrics(ctx context.Context, tb testing.TB, addr string) map[string]*dto.MetricFamily {
	tb.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := metricsHTTP.Do(req)
	if err != nil {
		tb.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// metricValue returns the sum over the samples of family name whose labels
// include labels (name, value pairs) of their value: a counter's or
// gauge's value, a histogram's sample count. ok is false if no sample
// matches.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	for _, m := range mfs[name].GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		ok = true
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v, ok
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// metricCheck is a condition on one metric: its value is want (op "=="),
// at least want (">="), above want (">"), or it merely exists ("exists").
type metricCheck struct {
	name   string
	labels []string
	op     string
	want   float64
}

func (c metricCheck) String() string {
	s := c.name
	if len(c.labels) > 0 {
		var ls []string
		for i := 0; i+1 < len(c.labels); i += 2 {
			ls = append(ls, fmt.Sprintf("%s=%q", c.labels[i], c.labels[i+1]))
		}
		s += "{" + strings.Join(ls, ",") + "}"
	}
	if c.op == "exists" {
		return s + " present"
	}
	return fmt.Sprintf("%s %s %g", s, c.op, c.want)
}

// failed returns a description of how mfs fails c, or "".
func (c metricCheck) failed(mfs map[string]*dto.MetricFamily) string {
	v, ok := metricValue(mfs, c.name, c.labels...)
	switch {
	case !ok:
		return fmt.Sprintf("no sample; want %v", c)
	case c.op == "==" && v != c.want, c.op == ">=" && v < c.want, c.op == ">" && v <= c.want:
		return fmt.Sprintf("= %g; want %v", v, c)
	}
	return ""
}

// waitMetrics scrapes addr until every check holds, or fails tb after 5s
// with the checks that do not.
func waitMetrics(ctx context.Context, tb testing.TB, addr string, checks []metricCheck) map[string]*dto.MetricFamily {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mfs := scrapeMetrics(ctx, tb, addr)
		var failures []string
		for _, c := range checks {
			if f := c.failed(mfs); f != "" {
				failures = append(failures, f)
			}
		}
		if len(failures) == 0 {
			return mfs
		}
		if time.Now().After(deadline) {
			tb.Errorf("/metrics after 5s:\n\t%s", strings.Join(failures, "\n\t"))
			return mfs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMetrics(t *testing.T) {
	up := testupstream.New(t)
	r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-metrics-listen", "127.0.0.1:0")
	m := metricsListening.FindStringSubmatch(r.log.String())
	if m == nil {
		t.Fatalf("run log lacks the metrics address:\n%s", r.log.String())
	}
	maddr := m[1]
	ctx := testctx.WithTimeout(t, 20*time.Second)

	// Before any call, every job code is there at zero.
	waitMetrics(ctx, t, maddr, []metricCheck{
		{name: "fetchd_jobs_total", labels: []string{"code", "OK"}, op: "==", want: 0},
		{name: "fetchd_jobs_total", labels: []string{"code", "ERROR_CODE_BLOCKED"}, op: "==", want: 0},
		{name: "fetchd_streams_in_flight", op: "==", want: 0},
		{name: "grpc_server_handled_total", labels: []string{"grpc_method", "Fetch", "grpc_code", "OK"}, op: "==", want: 0},
	})

	// Three results (a 404 is a result), an invalid job and a blocked one.
	jobs := []*fetchv1.FetchRequest{
		{Url: up.URL + "/?size=5"},
		{Url: up.URL + "/?size=7"},
		{Url: up.URL + "/?size=0&status=404"},
		{Url: "ftp://example.com/"},
		{Url: "http://169.254.169.254/latest/meta-data/"},
	}
	stream, err := fetchv1.NewFetchServiceClient(dial(t, r.addr)).Fetch(ctx)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	for _, j := range jobs {
		if err := stream.Send(j); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	for range jobs {
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("Recv: %v", err)
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream end = %v, want io.EOF", err)
	}
	// And one through FetchBatch.
	batch, err := fetchv1.NewFetchServiceClient(dial(t, r.addr)).FetchBatch(ctx, &fetchv1.FetchBatchRequest{})
	if err != nil {
		t.Fatalf("FetchBatch: %v", err)
	}
	if _, err := batch.Recv(); err != io.EOF {
		t.Fatalf("empty FetchBatch = %v, want io.EOF", err)
	}

	mfs := waitMetrics(ctx, t, maddr, []metricCheck{
		{name: "fetchd_jobs_total", labels: []string{"code", "OK"}, op: "==", want: 3},
		{name: "fetchd_jobs_total", labels: []string{"code", "ERROR_CODE_INVALID_REQUEST"}, op: "==", want: 1},
		{name: "fetchd_jobs_total", labels: []string{"code", "ERROR_CODE_BLOCKED"}, op: "==", want: 1},
		{name: "fetchd_jobs_total", op: "==", want: 5},
		{name: "fetchd_egress_blocked_total", op: "==", want: 1},
		{name: "fetchd_fetch_duration_seconds", labels: []string{"outcome", "ok"}, op: "==", want: 3},
		{name: "fetchd_fetch_duration_seconds", op: ">=", want: 3},
		{name: "fetchd_fetched_bytes_total", op: "==", want: 12},
		{name: "fetchd_pool_wait_seconds", op: ">=", want: 3},
		{name: "fetchd_fetches_in_flight", op: "==", want: 0},
		{name: "fetchd_streams_in_flight", op: "==", want: 0},
		{name: "grpc_server_started_total", labels: []string{"grpc_method", "Fetch"}, op: "==", want: 1},
		{name: "grpc_server_started_total", labels: []string{"grpc_method", "FetchBatch"}, op: "==", want: 1},
		{name: "grpc_server_handled_total", labels: []string{"grpc_method", "Fetch", "grpc_code", "OK"}, op: "==", want: 1},
		{name: "grpc_server_handled_total", labels: []string{"grpc_method", "FetchBatch", "grpc_code", "OK"}, op: "==", want: 1},
		{name: "grpc_server_handling_seconds", labels: []string{"grpc_method", "Fetch"}, op: "==", want: 1},
		{name: "go_goroutines", op: ">", want: 0},
		{name: "process_start_time_seconds", op: ">", want: 0},
	})
	for _, name := range []string{"fetchd_jobs_total", "fetchd_fetch_duration_seconds", "fetchd_pool_wait_seconds", "fetchd_fetches_in_flight", "fetchd_streams_in_flight"} {
		if mfs[name].GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
	}

	// The metrics server serves /metrics and nothing else.
	for _, path := range []string{"/", "/debug/pprof/", "/debug/vars", "/metrics/x"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+maddr+path, nil)
		resp, err := metricsHTTP.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the metrics server = %s, want 404", path, resp.Status)
		}
	}

	// The gauges while a job is in flight.
	hang := up.URL + "/?hang=1"
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err = fetchv1.NewFetchServiceClient(dial(t, r.addr)).Fetch(sctx)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if err := stream.Send(&fetchv1.FetchRequest{Url: hang}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	testctx.WaitFor(t, 10*time.Second, "the job to reach the upstream", func() bool { return up.InFlight() == 1 })
	waitMetrics(ctx, t, maddr, []metricCheck{
		{name: "fetchd_fetches_in_flight", op: "==", want: 1},
		{name: "fetchd_streams_in_flight", op: "==", want: 1},
	})
	cancel()
	waitMetrics(ctx, t, maddr, []metricCheck{
		{name: "fetchd_fetches_in_flight", op: "==", want: 0},
		{name: "fetchd_streams_in_flight", op: "==", want: 0},
		{name: "fetchd_jobs_total", labels: []string{"code", "OK"}, op: "==", want: 3},
	})

	// The metrics server stops with fetchd.
	if err := r.Stop(t, 10*time.Second); err != nil {
		t.Errorf("run = %v, want nil", err)
	}
	checkGone(t, r.addr)
	sctx, cancel = context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, "http://"+maddr+"/metrics", nil)
	if resp, err := metricsHTTP.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("GET /metrics after run returned = %s, want an error", resp.Status)
	}
}

func TestMetricsOff(t *testing.T) {
	r := startRun(t, env(nil))
	fetchOne(t, r.addr, "ftp://example.com/")
	if err := r.Stop(t, 10*time.Second); err != nil {
		t.Errorf("run = %v, want nil", err)
	}
	if log := r.log.String(); strings.Contains(log, "metrics") {
		t.Errorf("run without -metrics-listen logged %q, want no metrics server", log)
	}

	// A metrics address that cannot be used is an error before serving.
	ctx := testctx.WithTimeout(t, 5*time.Second)
	var stderr testbuf.Buffer
	err := run(ctx, []string{"-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:99999"}, env(nil), io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "metrics listen") {
		t.Errorf("run -metrics-listen 127.0.0.1:99999 = %v, want a metrics listen error", err)
	}
	if strings.Contains(stderr.String(), "fetchd listening") {
		t.Errorf("run -metrics-listen 127.0.0.1:99999 started serving")
	}
}

// logLine is the part of a JSON log line the tests read.
type logLine struct {
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	Jobs   *int   `json:"jobs"`
	OK     *int   `json:"ok"`
	Errors *int   `json:"errors"`
	Status string `json:"status"`
}

func TestJSONLogs(t *testing.T) {
	up := testupstream.New(t)
	r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-log-format", "json")
	ctx := testctx.WithTimeout(t, 20*time.Second)
	conn := dial(t, r.addr)

	// A 50-job stream, all OK, and a small one with errors.
	var big []*fetchv1.FetchRequest
	for i := range 50 {
		big = append(big, &fetchv1.FetchRequest{Url: fmt.Sprintf("%s/?size=1&tag=json-%d", up.URL, i)})
	}
	small := []*fetchv1.FetchRequest{
		{Url: up.URL + "/?tag=json-small"},
		{Url: "ftp://example.com/"},
		{Url: "http://169.254.169.254/"},
	}
	for _, jobs := range [][]*fetchv1.FetchRequest{big, small} {
		stream, err := fetchv1.NewFetchServiceClient(conn).Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		for _, j := range jobs {
			if err := stream.Send(j); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}
		stream.CloseSend()
		for range jobs {
			if _, err := stream.Recv(); err != nil {
				t.Fatalf("Recv: %v", err)
			}
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("stream end = %v, want io.EOF", err)
		}
	}

	var finished []logLine
	testctx.WaitFor(t, 5*time.Second, "two stream finished lines", func() bool {
		finished = finished[:0]
		for _, line := range strings.Split(strings.TrimSpace(r.log.String()), "\n") {
			var l logLine
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "stream finished" {
				finished = append(finished, l)
			}
		}
		return len(finished) >= 2
	})
	want := []struct{ jobs, ok, errors int }{{50, 50, 0}, {3, 1, 2}}
	if len(finished) != len(want) {
		t.Fatalf("%d stream finished lines, want %d (one per stream)", len(finished), len(want))
	}
	for i, l := range finished {
		if l.Jobs == nil || l.OK == nil || l.Errors == nil || *l.Jobs != want[i].jobs || *l.OK != want[i].ok || *l.Errors != want[i].errors ||
			l.Level != "INFO" || l.Status != "OK" {
			t.Errorf("stream finished line %d = %+v, want level INFO, jobs %d, ok %d, errors %d, status OK",
				i, l, want[i].jobs, want[i].ok, want[i].errors)
		}
	}

	// Nothing per job or per call at info level: a line per stream, and the
	// startup line.
	for _, line := range strings.Split(strings.TrimSpace(r.log.String()), "\n") {
		var l logLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Errorf("log line %q is not JSON: %v", line, err)
			continue
		}
		if l.Msg != "stream finished" && l.Msg != "fetchd listening" {
			t.Errorf("unexpected log line at level %s: %s", l.Level, line)
		}
		if strings.Contains(line, "json-") {
			t.Errorf("log line names a job: %s", line)
		}
	}
}

// traceparent matches a W3C traceparent header and captures its trace ID.
var traceparent = regexp.MustCompile(`^00-([0-9a-f]{32})-[0-9a-f]{16}-0[01]$`)

// headerRecorder is an upstream on loopback that records, per tag, the
// traceparent and baggage headers it received.
type headerRecorder struct {
	*httptest.Server
	mu      sync.Mutex          // guards headers
	headers map[string][]string // tag: traceparent, baggage
}

func newHeaderRecorder(tb testing.TB) *headerRecorder {
	tb.Helper()
	h := &headerRecorder{headers: map[string][]string{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.headers[r.URL.Query().Get("tag")] = []string{r.Header.Get("traceparent"), r.Header.Get("baggage")}
		h.mu.Unlock()
		io.WriteString(w, "ok\n")
	}))
	tb.Cleanup(h.Close)
	return h
}

// get returns the traceparent and baggage headers of the request tagged
// tag, and whether there was one.
func (h *headerRecorder) get(tag string) (traceparent, baggage string, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.headers[tag]
	if !ok {
		return "", "", false
	}
	return v[0], v[1], true
}

// TestTracingEnv runs the binary with tracing from the OTEL_* environment
// (the console exporter writes spans to the binary's standard output, which
// the test discards) and checks that a caller's trace context reaches the
// upstream only when tracing is on.
func TestTracingEnv(t *testing.T) {
	up := newHeaderRecorder(t)
	const (
		callerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerParent = "00-" + callerTrace + "-00f067aa0ba902b7-01"
	)
	tests := []struct {
		name    string
		env     []string
		tracing bool
	}{
		{"console", []string{"OTEL_TRACES_EXPORTER=console"}, true},
		{"none", []string{"OTEL_TRACES_EXPORTER=none", "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1"}, false},
		{"unset", []string{"OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startFetchdEnv(t, tt.env, "-allow-cidr", "127.0.0.0/8")
			if got := strings.Contains(p.Log(), `msg="tracing on" exporter=console`); got != tt.tracing {
				t.Errorf("log = %q; tracing on logged: %v, want %v", p.Log(), got, tt.tracing)
			}
			ctx := testctx.WithTimeout(t, 10*time.Second)
			u := up.URL + "/?tag=" + tt.name
			res, err := fetchWithMD(ctx, dial(t, p.addr), u, "traceparent", callerParent, "baggage", "tenant=blue")
			if err != nil || res.GetStatusCode() != 200 {
				t.Fatalf("Fetch(%q) = %v, %v; want status 200", u, res, err)
			}
			tp, bg, ok := up.get(tt.name)
			if !ok {
				t.Fatalf("upstream saw no request tagged %s", tt.name)
			}
			m := traceparent.FindStringSubmatch(tp)
			switch {
			case tt.tracing && (m == nil || m[1] != callerTrace):
				t.Errorf("upstream traceparent = %q, want one in the caller's trace %s", tp, callerTrace)
			case tt.tracing && tp == callerParent:
				t.Errorf("upstream traceparent = the caller's %q, want a span of fetchd's as parent", tp)
			case !tt.tracing && (tp != "" || bg != ""):
				t.Errorf("upstream traceparent = %q, baggage = %q without tracing, want none", tp, bg)
			}
		})
	}
}
