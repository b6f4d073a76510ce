package fetcher

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// validateLimits are the limits the Validate tests run under.
var validateLimits = Limits{DefaultTimeout: 30 * time.Second, MaxTimeout: time.Minute, MaxBodyBytes: 1 << 20}

// hdrs builds request headers from name, value pairs.
func hdrs(kv ...string) []*fetchv1.Header {
	out := make([]*fetchv1.Header, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &fetchv1.Header{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

// manyHeaders returns n distinct, valid headers.
func manyHeaders(n int) []*fetchv1.Header {
	out := make([]*fetchv1.Header, n)
	for i := range out {
		out[i] = &fetchv1.Header{Name: fmt.Sprintf("X-H%d", i), Value: "v"}
	}
	return out
}

// wantInvalid checks that err is an *Error with ERROR_CODE_INVALID_REQUEST
// and a message, and that no job came with it.
func wantInvalid(tb testing.TB, what string, job *Job, err error) {
	tb.Helper()
	var fe *Error
	if !errors.As(err, &fe) || fe.Code != fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST {
		tb.Fatalf("Validate(%s) = %v, want *Error with ERROR_CODE_INVALID_REQUEST", what, err)
	}
	if job != nil {
		tb.Errorf("Validate(%s) returned job %+v with its error, want nil", what, job)
	}
	if fe.Error() == "" || fe.Proto().GetMessage() != fe.Error() {
		tb.Errorf("Validate(%s) error message = %q, proto message %q; want the same non-empty text", what, fe.Error(), fe.Proto().GetMessage())
	}
}

func TestValidate(t *testing.T) {
	longURL := "http://example.com/" + strings.Repeat("a", MaxURLBytes-len("http://example.com/"))
	tests := []struct {
		name string
		req  *fetchv1.FetchRequest
		want Job // URL compared by its String form, in wantURL
		url  string
	}{
		{
			name: "defaults",
			req:  &fetchv1.FetchRequest{Url: "http://example.com/"},
			want: Job{Method: "GET", Header: http.Header{}, Timeout: 30 * time.Second, MaxBody: 1 << 20},
			url:  "http://example.com/",
		},
		{
			name: "lower-case method normalised",
			req:  &fetchv1.FetchRequest{Url: "http://example.com/", Method: "post", Body: []byte("payload")},
			want: Job{Method: "POST", Header: http.Header{}, Body: []byte("payload"), Timeout: 30 * time.Second, MaxBody: 1 << 20},
			url:  "http://example.com/",
		},
		{
			name: "mixed-case method normalised",
			req:  &fetchv1.FetchRequest{Url: "http://example.com/", Method: "Delete"},
			want: Job{Method: "DELETE", Header: http.Header{}, Timeout: 30 * time.Second, MaxBody: 1 << 20},
			url:  "http://example.com/",
		},
		{
			name: "repeated header names kept in order",
			req: &fetchv1.FetchRequest{Url: "http://example.com/", Headers: hdrs(
				"X-Multi", "1", "accept", "text/html", "x-multi", "2", "X-MULTI", "3", "X-Empty", "", "X-Tab", "a\tb")},
			want: Job{Method: "GET", Header: http.Header{
				"X-Multi": {"1", "2", "3"}, "Accept": {"text/html"}, "X-Empty": {""}, "X-Tab": {"a\tb"},
			}, Timeout: 30 * time.Second, MaxBody: 1 << 20},
			url: "http://example.com/",
		},
		{
			name: "timeout under max",
			req:  &fetchv1.FetchRequest{Url: "http://example.com/", Timeout: durationpb.New(1500 * time.Millisecond)},
			want: Job{Method: "GET", Header: http.Header{}, Timeout: 1500 * time.Millisecond, MaxBody: 1 << 20},
			url:  "http://example.com/",
		},
		{
			name: "timeout at max",
			req:  &fetchv1.FetchRequest{Url: "http://example.com/", Timeout: durationpb.New(time.Minute)},
			want: Job{Method: "GET", Header: http.Header{}, Timeout: time.Minute, MaxBody: 1 << 20},
			url:  "http://example.com/",
		},
		{
			name: "scheme lower-cased, https with port, path and query kept",
			req:  &fetchv1.FetchRequest{Url: "HTTPS://Example.COM:8443/a/b?q=1&r=2"},
			want: Job{Method: "GET", Header: http.Header{}, Timeout: 30 * time.Second, MaxBody: 1 << 20},
			url:  "https://Example.COM:8443/a/b?q=1&r=2",
		},
		{
			name: "IPv6 literal",
			req:  &fetchv1.FetchRequest{Url: "http://[2001:4860::8888]:65535/"},
			want: Job{Method: "GET", Header: http.Header{}, Timeout: 30 * time.Second, MaxBody: 1 << 20},
			url:  "http://[2001:4860::8888]:65535/",
		},
		{
			name: "URL of exactly MaxURLBytes",
			req:  &fetchv1.FetchRequest{Url: longURL},
			want: Job{Method: "GET", Header: http.Header{}, Timeout: 30 * time.Second, MaxBody: 1 << 20},
			url:  longURL,
		},
	}
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		tests = append(tests, struct {
			name string
			req  *fetchv1.FetchRequest
			want Job
			url  string
		}{
			name: "method " + m,
			req:  &fetchv1.FetchRequest{Url: "http://example.com/", Method: m},
			want: Job{Method: m, Header: http.Header{}, Timeout: 30 * time.Second, MaxBody: 1 << 20},
			url:  "http://example.com/",
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Validate(tt.req, validateLimits)
			if err != nil {
				t.Fatalf("Validate(%q) = %v, want nil error", tt.req.GetUrl(), err)
			}
			if got.URL == nil || got.URL.String() != tt.url {
				t.Errorf("Validate(%q).URL = %v, want %v", tt.req.GetUrl(), got.URL, tt.url)
			}
			if got.Method != tt.want.Method {
				t.Errorf("Validate(%q).Method = %q, want %q", tt.req.GetUrl(), got.Method, tt.want.Method)
			}
			if !reflect.DeepEqual(got.Header, tt.want.Header) {
				t.Errorf("Validate(%q).Header = %v, want %v", tt.req.GetUrl(), got.Header, tt.want.Header)
			}
			if !bytes.Equal(got.Body, tt.want.Body) {
				t.Errorf("Validate(%q).Body = %q, want %q", tt.req.GetUrl(), got.Body, tt.want.Body)
			}
			if got.Timeout != tt.want.Timeout {
				t.Errorf("Validate(%q).Timeout = %v, want %v", tt.req.GetUrl(), got.Timeout, tt.want.Timeout)
			}
			if got.MaxBody != tt.want.MaxBody {
				t.Errorf("Validate(%q).MaxBody = %v, want %v", tt.req.GetUrl(), got.MaxBody, tt.want.MaxBody)
			}
		})
	}
}

func TestValidateLimitsEdges(t *testing.T) {
	// Exactly MaxHeaderFields fields, and exactly MaxHeaderBytes bytes, are
	// accepted; the next field or byte is not (see TestValidateInvalid).
	if _, err := Validate(&fetchv1.FetchRequest{Url: "http://example.com/", Headers: manyHeaders(MaxHeaderFields)}, validateLimits); err != nil {
		t.Errorf("Validate(%d headers) = %v, want nil", MaxHeaderFields, err)
	}
	exact := hdrs("X-Big", strings.Repeat("v", MaxHeaderBytes-len("X-Big")))
	if _, err := Validate(&fetchv1.FetchRequest{Url: "http://example.com/", Headers: exact}, validateLimits); err != nil {
		t.Errorf("Validate(headers of %d bytes) = %v, want nil", MaxHeaderBytes, err)
	}
	// MaxBody is copied from the limits, whatever they are.
	lim := Limits{DefaultTimeout: time.Second, MaxTimeout: time.Second, MaxBodyBytes: 12345}
	job, err := Validate(&fetchv1.FetchRequest{Url: "http://example.com/"}, lim)
	if err != nil || job.MaxBody != 12345 || job.Timeout != time.Second {
		t.Errorf("Validate(%+v) = %+v, %v; want MaxBody 12345, Timeout 1s", lim, job, err)
	}
}

func TestValidateInvalid(t *testing.T) {
	ok := "http://example.com/"
	tests := []struct {
		name string
		req  *fetchv1.FetchRequest
	}{
		// URLs.
		{"empty URL", &fetchv1.FetchRequest{}},
		{"unparsable URL", &fetchv1.FetchRequest{Url: "http://[::1"}},
		{"unparsable URL escape", &fetchv1.FetchRequest{Url: "http://example.com/%zz"}},
		{"control character in URL", &fetchv1.FetchRequest{Url: "http://example.com/\n"}},
		{"relative URL", &fetchv1.FetchRequest{Url: "/path"}},
		{"scheme-relative URL", &fetchv1.FetchRequest{Url: "//example.com/"}},
		{"host without scheme", &fetchv1.FetchRequest{Url: "example.com/path"}},
		{"scheme ftp", &fetchv1.FetchRequest{Url: "ftp://example.com/file"}},
		{"scheme file", &fetchv1.FetchRequest{Url: "file:///etc/passwd"}},
		{"scheme javascript", &fetchv1.FetchRequest{Url: "javascript:alert(1)"}},
		{"scheme gopher", &fetchv1.FetchRequest{Url: "gopher://example.com:70/_GET"}},
		{"scheme httpx", &fetchv1.FetchRequest{Url: "httpx://example.com/"}},
		{"no host", &fetchv1.FetchRequest{Url: "http://"}},
		{"no host, path only", &fetchv1.FetchRequest{Url: "http:///path"}},
		{"port only", &fetchv1.FetchRequest{Url: "http://:80/"}},
		// Found by fuzzing: net/http could not parse the String form again.
		{"IPv6 zone not UTF-8", &fetchv1.FetchRequest{Url: "http://[::%25\xcb]/"}},
		{"escaped IPv6 zone not UTF-8", &fetchv1.FetchRequest{Url: "http://[::%25%cb]/"}},
		{"opaque http", &fetchv1.FetchRequest{Url: "http:example.com"}},
		{"port 0", &fetchv1.FetchRequest{Url: "http://example.com:0/"}},
		{"port 00000", &fetchv1.FetchRequest{Url: "http://example.com:00000/"}},
		{"port 65536", &fetchv1.FetchRequest{Url: "http://example.com:65536/"}},
		{"port 99999", &fetchv1.FetchRequest{Url: "http://example.com:99999/"}},
		{"port huge", &fetchv1.FetchRequest{Url: "http://example.com:99999999999999999999999/"}},
		{"port non-numeric", &fetchv1.FetchRequest{Url: "http://example.com:http/"}},
		{"URL over MaxURLBytes", &fetchv1.FetchRequest{Url: "http://example.com/" + strings.Repeat("a", MaxURLBytes)}},
		// Methods.
		{"method TRACE", &fetchv1.FetchRequest{Url: ok, Method: "TRACE"}},
		{"method CONNECT", &fetchv1.FetchRequest{Url: ok, Method: "CONNECT"}},
		{"method connect", &fetchv1.FetchRequest{Url: ok, Method: "connect"}},
		{"method FOO", &fetchv1.FetchRequest{Url: ok, Method: "FOO"}},
		{"method with CRLF", &fetchv1.FetchRequest{Url: ok, Method: "GET\r\n"}},
		{"method with space", &fetchv1.FetchRequest{Url: ok, Method: "GET / HTTP/1.1"}},
		{"method with NUL", &fetchv1.FetchRequest{Url: ok, Method: "GET\x00"}},
		// Header names and values.
		{"header name with space", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("X Foo", "v")}},
		{"header name with colon", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("X:Foo", "v")}},
		{"header name empty", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("", "v")}},
		{"header name with CRLF", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("X-A\r\nHost", "v")}},
		{"header value with CR", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("X-A", "a\rb")}},
		{"header value with LF", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("X-A", "a\nX-Injected: 1")}},
		{"header value with CRLF", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("X-A", "a\r\nHost: evil")}},
		{"header value with NUL", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("X-A", "a\x00b")}},
		{"bad header after good ones", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("X-A", "1", "X-B", "2", "X-C", "\n")}},
		// Forbidden headers, any case.
		{"header Host", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("Host", "internal")}},
		{"header host", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("host", "internal")}},
		{"header HOST", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("HOST", "internal")}},
		{"header hOsT", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("hOsT", "internal")}},
		{"header Connection", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("Connection", "close")}},
		{"header Keep-Alive", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("Keep-Alive", "timeout=5")}},
		{"header Transfer-Encoding", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("Transfer-Encoding", "chunked")}},
		{"header transfer-encoding", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("transfer-encoding", "chunked")}},
		{"header Content-Length", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("Content-Length", "0")}},
		{"header Te", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("Te", "trailers")}},
		{"header TE", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("TE", "trailers")}},
		{"header Trailer", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("Trailer", "X-A")}},
		{"header Upgrade", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("Upgrade", "websocket")}},
		{"header Expect", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("Expect", "100-continue")}},
		{"header Proxy-Authorization", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("Proxy-Authorization", "Basic eDp5")}},
		{"header proxy-connection", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("proxy-connection", "keep-alive")}},
		{"header Proxy-Foo", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("Proxy-Foo", "bar")}},
		{"forbidden header after good ones", &fetchv1.FetchRequest{Url: ok, Headers: hdrs("X-A", "1", "host", "x")}},
		// Header counts and sizes.
		{"too many headers", &fetchv1.FetchRequest{Url: ok, Headers: manyHeaders(MaxHeaderFields + 1)}},
		{"too many header bytes", &fetchv1.FetchRequest{Url: ok, Headers: hdrs(
			"X-A", strings.Repeat("a", MaxHeaderBytes/2), "X-B", strings.Repeat("b", MaxHeaderBytes/2))}},
		{"one header over the byte limit", &fetchv1.FetchRequest{Url: ok, Headers: hdrs(
			"X-Big", strings.Repeat("v", MaxHeaderBytes-len("X-Big")+1))}},
		// Timeouts.
		{"timeout negative", &fetchv1.FetchRequest{Url: ok, Timeout: durationpb.New(-time.Second)}},
		{"timeout zero", &fetchv1.FetchRequest{Url: ok, Timeout: &durationpb.Duration{}}},
		{"timeout over max", &fetchv1.FetchRequest{Url: ok, Timeout: durationpb.New(time.Minute + time.Nanosecond)}},
		{"timeout far over max", &fetchv1.FetchRequest{Url: ok, Timeout: &durationpb.Duration{Seconds: 315576000000}}},
		{"timeout nanos out of range", &fetchv1.FetchRequest{Url: ok, Timeout: &durationpb.Duration{Seconds: 1, Nanos: 2e9}}},
		{"timeout nanos sign mismatch", &fetchv1.FetchRequest{Url: ok, Timeout: &durationpb.Duration{Seconds: 1, Nanos: -1}}},
		{"timeout seconds out of range", &fetchv1.FetchRequest{Url: ok, Timeout: &durationpb.Duration{Seconds: 1 << 62}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job, err := Validate(tt.req, validateLimits)
			wantInvalid(t, fmt.Sprintf("%.80q", tt.req.String()), job, err)
		})
	}
}
