package h1

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// skipped are request headers the transport writes itself, or never.
var skipped = map[string]bool{
	"Host": true, "User-Agent": true, "Content-Length": true, "Transfer-Encoding": true,
	"Trailer": true,
}

// validateRequest refuses, before any connection is taken, what would break
// the framing of the request: a method that is not a token, a request
// target or Host with spaces or control characters, a header name or value
// net/http would refuse.
func validateRequest(req *http.Request) error {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !validToken(method) {
		return fmt.Errorf("h1: invalid method %q", method)
	}
	if target := req.URL.RequestURI(); !validTarget(target) {
		return fmt.Errorf("h1: invalid request target %q", target)
	}
	host := hostHeader(req)
	if !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("h1: invalid Host %q", host)
	}
	for k, vs := range req.Header {
		if skipped[k] {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h1: invalid header field name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h1: invalid header field value for %q", k)
			}
		}
	}
	if v := req.Header["User-Agent"]; len(v) > 0 && !httpguts.ValidHeaderFieldValue(v[0]) {
		return errors.New("h1: invalid User-Agent")
	}
	return nil
}

const defaultUserAgent = "Go-http-client/1.1"

// writeHead writes the head of req, which passed validateRequest, to w,
// unflushed: the request line, Host, User-Agent, the caller's headers
// sorted by name, and framing. [writeBody] sends the rest.
func writeHead(w *bufio.Writer, req *http.Request, gzip bool) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := hostHeader(req)
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")

	ua := defaultUserAgent
	if v, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(v) > 0 {
			ua = v[0]
		}
	}
	if ua != "" {
		w.WriteString("User-Agent: ")
		w.WriteString(trim(ua))
		w.WriteString("\r\n")
	}

	var buf [16]string
	keys := buf[:0]
	for k := range req.Header {
		if !skipped[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range req.Header[k] {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(trim(v))
			w.WriteString("\r\n")
		}
	}

	switch {
	case hasBody(req):
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(req.ContentLength, 10))
		w.WriteString("\r\n")
	case method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		w.WriteString("Content-Length: 0\r\n")
	}
	if gzip {
		w.WriteString("Accept-Encoding: gzip\r\n")
	}
	if req.Close && !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close") {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
}

// writeBody writes the body of req, if it has one, to w after its head,
// closes it, and flushes w.
func writeBody(w *bufio.Writer, req *http.Request) error {
	if hasBody(req) {
		n, err := io.CopyN(w, req.Body, req.ContentLength)
		req.Body.Close()
		if err != nil {
			return fmt.Errorf("h1: request body: %d of %d bytes: %w", n, req.ContentLength, err)
		}
	}
	return w.Flush()
}

// hasBody reports whether req has a body to send.
func hasBody(req *http.Request) bool { return req.Body != nil && req.Body != http.NoBody }

// hostHeader is the Host header of req: req.Host, else its URL's host,
// without an IPv6 zone ("[fe80::1%eth0]:80" is sent as "[fe80::1]:80"),
// which means nothing to the upstream, as net/http does.
func hostHeader(req *http.Request) string {
	host := cmp.Or(req.Host, req.URL.Host)
	if !strings.HasPrefix(host, "[") {
		return host
	}
	end := strings.LastIndexByte(host, ']')
	if end < 0 {
		return host
	}
	if zone := strings.LastIndexByte(host[:end], '%'); zone >= 0 {
		return host[:zone] + host[end:]
	}
	return host
}

// validToken reports whether s is an HTTP token (RFC 9110 section 5.6.2).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}

// validTarget reports whether s can stand in a request line: no spaces,
// no control characters.
func validTarget(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// trim drops leading and trailing spaces and tabs, as net/http does.
func trim(s string) string { return strings.Trim(s, " \t") }

// asciiEqualFold is strings.EqualFold for ASCII.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
