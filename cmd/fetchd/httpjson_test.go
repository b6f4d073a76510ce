package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// The HTTP/JSON port (-http-listen), through the fetchd binary and curl.

// httpListening matches the log line of the HTTP/JSON port.
var httpListening = regexp.MustCompile(`msg="http listening" addr=(127\.0\.0\.1:\d+)`)

// httpAddr waits for p to log the address of its HTTP/JSON port.
func httpAddr(tb testing.TB, p *process) string {
	tb.Helper()
	p.WaitLog(tb, 10*time.Second, `msg="http listening"`)
	m := httpListening.FindStringSubmatch(p.Log())
	if m == nil {
		tb.Fatalf("no HTTP address in the log:\n%s", p.Log())
	}
	return m[1]
}

// curlCmd returns a curl command with args, silent but for errors, that
// ignores any curlrc and proxy settings.
func curlCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "curl", append([]string{"-q", "-sS", "--noproxy", "*"}, args...)...)
	cmd.Env = childEnv()
	cmd.WaitDelay = time.Second
	return cmd
}

// curl runs curl with args (within 30s) and returns its standard output.
func curl(tb testing.TB, args ...string) string {
	tb.Helper()
	cmd := curlCmd(testctx.WithTimeout(tb, 30*time.Second), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("curl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// batchBody is a FetchBatchRequest's JSON with jobs of these URLs and ids.
func batchBody(urlIDs ...string) string {
	var jobs []string
	for i := 0; i+1 < len(urlIDs); i += 2 {
		jobs = append(jobs, `{"url":"`+urlIDs[i]+`","id":"`+urlIDs[i+1]+`"}`)
	}
	return `{"jobs":[` + strings.Join(jobs, ",") + `]}`
}

// parseLines decodes NDJSON result lines.
func parseLines(tb testing.TB, out string) []*fetchv1.FetchResponse {
	tb.Helper()
	var rs []*fetchv1.FetchResponse
	for line := range strings.Lines(out) {
		r := new(fetchv1.FetchResponse)
		if err := protojson.Unmarshal([]byte(line), r); err != nil {
			tb.Fatalf("result line %q: %v", line, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// jsonStatus decodes a google.rpc.Status body.
func jsonStatus(tb testing.TB, body string) (codes.Code, string) {
	tb.Helper()
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		tb.Fatalf("status body %q: %v", body, err)
	}
	return codes.Code(st.Code), st.Message
}

func TestHTTPJSON(t *testing.T) {
	up := testupstream.New(t)
	p := startFetchd(t, "-allow-cidr", "127.0.0.0/8", "-http-listen", "127.0.0.1:0", "-max-recv-msg-bytes", "65536")
	url := "http://" + httpAddr(t, p) + "/v1/fetch"

	t.Run("completion order, flushed", func(t *testing.T) {
		// The slow job is sent first; the fast one's line must come while
		// the slow one is still at the upstream, and the bad one gets its
		// own error line.
		ctx := testctx.WithTimeout(t, 30*time.Second)
		body := batchBody(up.URL+"/?delay=3s&tag=order-slow", "slow", up.URL+"/?size=4", "fast", "ftp://example.com/", "bad")
		cmd := curlCmd(ctx, "-N", "-d", body, url)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		var ids []string
		for sc.Scan() {
			r := new(fetchv1.FetchResponse)
			if err := protojson.Unmarshal(sc.Bytes(), r); err != nil {
				t.Fatalf("line %q: %v", sc.Bytes(), err)
			}
			ids = append(ids, r.GetId())
			switch r.GetId() {
			case "fast":
				if n := up.InFlight(); n != 1 {
					t.Errorf("fast result read with %d upstream requests in flight, want 1 (the slow one): not flushed", n)
				}
				if r.GetStatusCode() != 200 || string(r.GetBody()) != "xxxx" {
					t.Errorf("fast = %v, want 200 xxxx", r)
				}
			case "bad":
				if r.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST || r.GetIndex() != 2 {
					t.Errorf("bad = %v, want index 2, ERROR_CODE_INVALID_REQUEST", r)
				}
			case "slow":
				if r.GetStatusCode() != 200 || r.GetIndex() != 0 {
					t.Errorf("slow = %v, want index 0, 200", r)
				}
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("curl: %v", err)
		}
		if len(ids) != 3 || ids[2] != "slow" {
			t.Errorf("results in order %q, want 3, slow last", ids)
		}
	})

	t.Run("HTTP/2", func(t *testing.T) {
		out := curl(t, "--http2-prior-knowledge", "-d", batchBody(up.URL+"/?size=2", "h2"), "-w", "%{http_version} %{content_type}\n", url)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || lines[1] != "2 application/x-ndjson" {
			t.Fatalf("curl --http2-prior-knowledge = %q, want a result, then HTTP/2 and NDJSON", out)
		}
		if rs := parseLines(t, lines[0]+"\n"); rs[0].GetId() != "h2" || rs[0].GetStatusCode() != 200 {
			t.Errorf("HTTP/2 result = %v, want h2, 200", rs[0])
		}
	})

	t.Run("blocked by the egress policy", func(t *testing.T) {
		// 127.0.0.0/8 is open, the metadata address is not.
		rs := parseLines(t, curl(t, "-d", batchBody("http://169.254.169.254/latest/meta-data/", "meta"), url))
		if len(rs) != 1 || rs[0].GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_BLOCKED {
			t.Errorf("metadata job = %v, want ERROR_CODE_BLOCKED", rs)
		}
	})

	t.Run("huge body refused", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "big.json")
		big := `{"jobs":[` + strings.Repeat(`{"url":"`+up.URL+`/?size=1"},`, 3000) + `{"url":"x"}]}`
		if err := os.WriteFile(file, []byte(big), 0o600); err != nil {
			t.Fatal(err)
		}
		out := curl(t, "--data-binary", "@"+file, "-w", "\n%{http_code}", url)
		body, code, _ := strings.Cut(out, "\n\n")
		if code != "413" {
			t.Fatalf("HTTP %s (%q), want 413", code, out)
		}
		if c, msg := jsonStatus(t, body); c != codes.ResourceExhausted || !strings.Contains(msg, "65536") {
			t.Errorf("status = %v %q, want RESOURCE_EXHAUSTED naming the limit", c, msg)
		}
	})

	t.Run("bad JSON", func(t *testing.T) {
		out := curl(t, "-d", `{"jobs":[{"url":1}]}`, "-w", "\n%{http_code}", url)
		body, code, _ := strings.Cut(out, "\n\n")
		if c, _ := jsonStatus(t, body); code != "400" || c != codes.InvalidArgument {
			t.Errorf("bad JSON = HTTP %s code %v, want 400 INVALID_ARGUMENT", code, c)
		}
		// Logged by the gRPC port's logging interceptor, marked as HTTP.
		p.WaitLog(t, 10*time.Second, "grpc.method=FetchBatch grpc.method_type=server_stream transport=http")
	})

	t.Run("disconnect cancels", func(t *testing.T) {
		before := up.Cancelled()
		ctx := testctx.WithTimeout(t, 30*time.Second)
		cmd := curlCmd(ctx, "-N", "-d", batchBody(up.URL+"/?hang=1&tag=hang", "hang"), url)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		testctx.WaitFor(t, 10*time.Second, "the upstream request", func() bool { return up.Tag("hang") == 1 })
		cmd.Process.Signal(syscall.SIGTERM) // curl goes away
		cmd.Wait()
		testctx.WaitFor(t, 10*time.Second, "the upstream request to be cancelled", func() bool { return up.Cancelled() > before })
	})
}

// TestHTTPJSONAuth: the HTTP port wants the token the gRPC port wants, and
// rate-limits its callers the same way.
func TestHTTPJSONAuth(t *testing.T) {
	up := testupstream.New(t)
	p := startFetchd(t, "-allow-cidr", "127.0.0.0/8", "-http-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0",
		"-auth-token-file", writeTokens(t), "-rate-limit", "0.001", "-rate-burst", "1")
	url := "http://" + httpAddr(t, p) + "/v1/fetch"
	body := batchBody(up.URL+"/", "a")

	out := curl(t, "-d", body, "-w", "\n%{http_code}", url)
	st, code, _ := strings.Cut(out, "\n\n")
	if c, _ := jsonStatus(t, st); code != "401" || c != codes.Unauthenticated {
		t.Errorf("without a token: HTTP %s code %v, want 401 UNAUTHENTICATED", code, c)
	}
	out = curl(t, "-H", "Authorization: Bearer "+tokenAlpha, "-d", body, url)
	if rs := parseLines(t, out); len(rs) != 1 || rs[0].GetStatusCode() != 200 {
		t.Errorf("with a token = %v, want one 200", rs)
	}
	// Its bucket (burst 1) is spent; another token's is not.
	out = curl(t, "-H", "Authorization: Bearer "+tokenAlpha, "-d", body, "-w", "\n%{http_code}", url)
	st, code, _ = strings.Cut(out, "\n\n")
	if c, _ := jsonStatus(t, st); code != "429" || c != codes.ResourceExhausted {
		t.Errorf("over the rate: HTTP %s code %v, want 429 RESOURCE_EXHAUSTED", code, c)
	}
	out = curl(t, "-H", "Authorization: Bearer "+tokenBeta, "-d", body, url)
	if rs := parseLines(t, out); len(rs) != 1 || rs[0].GetStatusCode() != 200 {
		t.Errorf("another token = %v, want one 200", rs)
	}

	// The calls are counted as the gRPC port's FetchBatch calls.
	m := metricsListening.FindStringSubmatch(p.Log())
	if m == nil {
		t.Fatalf("no metrics address in the log")
	}
	mfs := scrapeMetrics(testctx.WithTimeout(t, 10*time.Second), t, m[1])
	for code, want := range map[string]float64{"OK": 2, "Unauthenticated": 1, "ResourceExhausted": 1} {
		got, _ := metricValue(mfs, "grpc_server_handled_total", "grpc_method", "FetchBatch", "grpc_code", code)
		if got != want {
			t.Errorf("grpc_server_handled_total{FetchBatch, %s} = %v, want %v", code, got, want)
		}
	}
}

// TestHTTPJSONEnv: FETCHD_HTTP_LISTEN turns the port on, as the flag does.
func TestHTTPJSONEnv(t *testing.T) {
	p := startFetchdEnv(t, []string{"FETCHD_HTTP_LISTEN=127.0.0.1:0"})
	out := curl(t, "-d", `{"jobs":[]}`, "-w", "%{http_code}", "http://"+httpAddr(t, p)+"/v1/fetch")
	if out != "200" {
		t.Errorf("empty batch = %q, want HTTP 200 and no line", out)
	}
}

// TestHTTPJSONTLS: with -tls-cert the HTTP port serves h2 over TLS with
// the same certificate.
func TestHTTPJSONTLS(t *testing.T) {
	up := testupstream.New(t)
	pki := newTestPKI(t)
	p := startFetchd(t, "-allow-cidr", "127.0.0.0/8", "-http-listen", "127.0.0.1:0",
		"-tls-cert", pki.serverCertFile, "-tls-key", pki.serverKeyFile)
	out := curl(t, "--cacert", pki.caFile, "-d", batchBody(up.URL+"/", "tls"), "-w", "%{http_version}\n", "https://"+httpAddr(t, p)+"/v1/fetch")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[1] != "2" {
		t.Fatalf("curl https = %q, want a result over HTTP/2", out)
	}
	if rs := parseLines(t, lines[0]+"\n"); rs[0].GetStatusCode() != 200 {
		t.Errorf("TLS result = %v, want 200", rs[0])
	}
}

// TestHTTPJSONDrain: on SIGTERM an HTTP call in progress gets its result,
// and fetchd exits 0 once it is done, without waiting for the timeout.
func TestHTTPJSONDrain(t *testing.T) {
	up := testupstream.New(t)
	p := startFetchd(t, "-allow-cidr", "127.0.0.0/8", "-http-listen", "127.0.0.1:0", "-drain-timeout", "60s")
	ctx := testctx.WithTimeout(t, 30*time.Second)
	cmd := curlCmd(ctx, "-N", "-d", batchBody(up.URL+"/?delay=1s&tag=drain", "d"), "http://"+httpAddr(t, p)+"/v1/fetch")
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testctx.WaitFor(t, 10*time.Second, "the upstream request", func() bool { return up.Tag("drain") == 1 })
	p.Signal(t, syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("curl during the drain: %v", err)
	}
	if rs := parseLines(t, out.String()); len(rs) != 1 || rs[0].GetStatusCode() != 200 {
		t.Errorf("result during the drain = %v, want one 200", rs)
	}
	if code := p.Wait(t, 20*time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if log := p.Log(); !strings.Contains(log, `msg=drained`) {
		t.Errorf("log lacks msg=drained:\n%s", log)
	}
}

// TestReadmeHTTPJSON runs the README's curl examples of its HTTP/JSON
// section as written, against fetchd's HTTP port for localhost:8080 and
// the test upstream for the grpcurl section's 127.0.0.1:8000.
func TestReadmeHTTPJSON(t *testing.T) {
	doc := readme(t)
	start := strings.Index(doc, "\n## HTTP/JSON\n")
	if start < 0 {
		t.Fatal("README has no HTTP/JSON section")
	}
	section := doc[start+1:]
	if end := strings.Index(section[1:], "\n## "); end >= 0 {
		section = section[:end+1]
	}
	var cmds []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		for line := range strings.Lines(strings.ReplaceAll(block[1], "\\\n", " ")) {
			if strings.HasPrefix(line, "curl ") {
				cmds = append(cmds, strings.TrimSpace(line))
			}
		}
	}
	if len(cmds) < 2 {
		t.Fatalf("the HTTP/JSON section has %d curl examples, want at least 2", len(cmds))
	}
	up := testupstream.New(t)
	p := startFetchd(t, "-allow-cidr", "127.0.0.0/8", "-http-listen", "127.0.0.1:0")
	addr := httpAddr(t, p)
	for _, c := range cmds {
		t.Run(c, func(t *testing.T) {
			c = strings.ReplaceAll(c, "http://localhost:8080", "http://"+addr)
			c = strings.ReplaceAll(c, "http://127.0.0.1:8000", up.URL)
			cmd := exec.CommandContext(testctx.WithTimeout(t, 30*time.Second), "sh", "-c", "curl() { command curl -q --noproxy '*' -sS \"$@\"; }; "+c)
			cmd.Env = childEnv()
			cmd.WaitDelay = time.Second
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			rs := parseLines(t, string(out))
			if len(rs) == 0 {
				t.Fatalf("%s printed no result", c)
			}
			for _, r := range rs {
				if r.GetStatusCode() != 200 && r.GetError() == nil {
					t.Errorf("%s: result %v, want 200 or a per-job error", c, r)
				}
			}
		})
	}
}

// TestHTTPJSONConnectionCap holds -max-connections-per-ip connections open
// on the HTTP/JSON port: the next one is closed at once, and a slot that
// is given back is taken again.
func TestHTTPJSONConnectionCap(t *testing.T) {
	p := startFetchd(t, "-http-listen", "127.0.0.1:0", "-max-connections-per-ip", "2")
	addr := httpAddr(t, p)
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedAtOnce reports whether the server closes c without a word.
	closedAtOnce := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	}
	held := []net.Conn{dial(), dial()}
	for _, c := range held {
		// A request on each, so that they are the server's, not in the backlog.
		fmt.Fprintf(c, "GET /v1/fetch HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			t.Fatalf("a connection within the cap got no answer: %v", err)
		}
	}
	if !closedAtOnce(dial()) {
		t.Fatal("a third connection from one IP was not closed (-max-connections-per-ip 2)")
	}
	held[0].Close()
	testctx.WaitFor(t, 5*time.Second, "a slot given back to be taken", func() bool {
		c := dial()
		fmt.Fprintf(c, "GET /v1/fetch HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := bufio.NewReader(c).ReadString('\n')
		return err == nil
	})
}
