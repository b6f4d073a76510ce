package fetcher

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// Validation limits on what a caller may send.
const (
	MaxURLBytes     = 8 << 10  // longest URL accepted
	MaxHeaderBytes  = 64 << 10 // most bytes of request header names and values together
	MaxHeaderFields = 128      // most request header fields
)

// Limits are the bounds one job is validated and fetched under.
type Limits struct {
	DefaultTimeout time.Duration // timeout of a job that sets none
	MaxTimeout     time.Duration // the longest timeout a job may ask for
	MaxBodyBytes   int64         // body cap; longer bodies are truncated
	// Digest sets body_sha256 on the result: the SHA-256 of the body bytes
	// read (decoded, up to the cap).
	Digest bool
	// DiscardBody reads the body through a small fixed buffer, counting and
	// digesting it, and returns none of it; MaxDiscardBytes caps it instead
	// of MaxBodyBytes.
	DiscardBody bool
	// MaxDiscardBytes caps a discarded body; longer ones are truncated. A
	// non-positive value means no cap.
	MaxDiscardBytes int64
	// ChunkBytes, when positive, streams a body longer than this in chunks
	// of this size through the job's [Sink]; MaxStreamBytes caps such a
	// body instead of MaxBodyBytes. 0: every body whole in the result.
	ChunkBytes int64
	// MaxStreamBytes caps a body streamed in chunks; longer ones are
	// truncated. A non-positive value means no cap.
	MaxStreamBytes int64
}

// Job is a validated fetch job, ready for [Fetcher.Fetch].
type Job struct {
	Method  string
	URL     *url.URL
	Header  http.Header
	Body    []byte
	Timeout time.Duration
	MaxBody int64 // cap of a returned body, or of a discarded (Discard) or streamed (Chunk) one
	Digest  bool  // set body_sha256
	Discard bool  // count and digest the body, return none of it
	// Chunk, when positive, sends a body longer than this through Sink in
	// chunks of this size; a shorter one is returned whole.
	Chunk int64
	Sink  Sink // set by the caller for a job with Chunk
	// Memory, when set, is the budget the body's bytes beyond
	// FreeBodyBytes are taken from; see [Memory]. nil: none.
	Memory Memory
}

// methods are the HTTP methods a job may use. TRACE and CONNECT are refused.
var methods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// forbiddenHeaders are request headers a caller may not set: the transport
// owns them, or they would let a caller talk to a proxy or smuggle requests.
var forbiddenHeaders = map[string]bool{
	"Host": true, "Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Content-Length": true, "Expect": true,
	"Http2-Settings": true,
}

// Validate checks req against lim and returns the job to fetch, or an
// [*Error] with code ERROR_CODE_INVALID_REQUEST saying what is wrong.
//
// An Accept-Encoding header is accepted but not sent: [Fetcher.Fetch] drops
// it and lets the transport ask for gzip and decode it, so that results are
// always decoded and MaxBodyBytes caps the decoded size.
func Validate(req *fetchv1.FetchRequest, lim Limits) (*Job, error) {
	job, err := validate(req, lim)
	if err != nil {
		return nil, &Error{Code: fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST, Err: err}
	}
	return job, nil
}

func validate(req *fetchv1.FetchRequest, lim Limits) (*Job, error) {
	u, err := ValidateURL(req.GetUrl())
	if err != nil {
		return nil, err
	}
	method := req.GetMethod()
	if method == "" {
		method = http.MethodGet
	}
	if up := strings.ToUpper(method); methods[up] {
		method = up
	} else {
		return nil, fmt.Errorf("method %q is not allowed", method)
	}
	header, err := ValidateHeaders(req.GetHeaders())
	if err != nil {
		return nil, err
	}
	timeout := lim.DefaultTimeout
	if t := req.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
		timeout = t.AsDuration()
		if timeout <= 0 {
			return nil, fmt.Errorf("timeout %v is not positive", timeout)
		}
		if lim.MaxTimeout > 0 && timeout > lim.MaxTimeout {
			return nil, fmt.Errorf("timeout %v is over the server maximum %v", timeout, lim.MaxTimeout)
		}
	}
	maxBody := lim.MaxBodyBytes
	switch {
	case lim.DiscardBody:
		maxBody = lim.MaxDiscardBytes
	case lim.ChunkBytes > 0:
		maxBody = lim.MaxStreamBytes
	}
	return &Job{
		Method:  method,
		URL:     u,
		Header:  header,
		Body:    req.GetBody(),
		Timeout: timeout,
		MaxBody: maxBody,
		Digest:  lim.Digest,
		Discard: lim.DiscardBody,
		Chunk:   lim.ChunkBytes,
	}, nil
}

// ValidateURL parses raw as an absolute http or https URL with a host.
func ValidateURL(raw string) (*url.URL, error) {
	switch {
	case raw == "":
		return nil, errors.New("url is empty")
	case len(raw) > MaxURLBytes:
		return nil, fmt.Errorf("url is %d bytes, over the limit of %d", len(raw), MaxURLBytes)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if strings.Contains(u.RawQuery, " ") {
		// net/http sends the query as given: a raw space would let the
		// caller rewrite the request line ("?a HTTP/1.0 x").
		u.RawQuery = strings.ReplaceAll(u.RawQuery, " ", "%20")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url scheme %q is not http or https", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("url %q has no host", raw)
	}
	if !utf8.ValidString(u.Host) {
		return nil, fmt.Errorf("url host %q is not valid UTF-8", u.Host)
	}
	if port := u.Port(); port != "" && !validPort(port) {
		return nil, fmt.Errorf("url port %q is invalid", port)
	}
	return u, nil
}

func validPort(p string) bool {
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return false
		}
	}
	return n > 0
}

// ValidateHeaders checks caller-supplied request headers: names must be
// HTTP tokens, values must hold no CR, LF or NUL, and Host, hop-by-hop,
// framing and Proxy-* headers are refused.
func ValidateHeaders(hs []*fetchv1.Header) (http.Header, error) {
	if len(hs) == 0 {
		return http.Header{}, nil
	}
	if len(hs) > MaxHeaderFields {
		return nil, fmt.Errorf("%d headers, over the limit of %d", len(hs), MaxHeaderFields)
	}
	h := make(http.Header, len(hs))
	size := 0
	for _, f := range hs {
		name, value := f.GetName(), f.GetValue()
		size += len(name) + len(value)
		if size > MaxHeaderBytes {
			return nil, fmt.Errorf("headers are over the limit of %d bytes", MaxHeaderBytes)
		}
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, fmt.Errorf("header name %q is invalid", name)
		}
		if !httpguts.ValidHeaderFieldValue(value) {
			return nil, fmt.Errorf("header %q has an invalid value (control characters such as CR, LF or NUL)", name)
		}
		key := http.CanonicalHeaderKey(name)
		if forbiddenHeaders[key] || strings.HasPrefix(key, "Proxy-") {
			return nil, fmt.Errorf("header %q may not be set by the caller", key)
		}
		h[key] = append(h[key], value)
	}
	return h, nil
}
