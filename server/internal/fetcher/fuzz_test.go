package fetcher

import (
	"net/http"
	"strings"
	"testing"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

func FuzzValidateURL(f *testing.F) {
	for _, s := range []string{
		"http://example.com/", "https://example.com:8443/a/b?q=1#frag", "HTTP://EXAMPLE.COM",
		"http://127.0.0.1:8080/", "http://[::1]:80/", "http://[fe80::1%25eth0]/", "http://[::ffff:127.0.0.1]/",
		"http://user:pass@example.com/", "http://example.com:0/", "http://example.com:65535/",
		"http://example.com:65536/", "http://example.com:99999/", "http://example.com:x/", "http://",
		"http:///path", "http://:80/", "http:example.com", "//example.com/", "/relative", "",
		"ftp://example.com/", "file:///etc/passwd", "javascript:alert(1)", "gopher://x:70/_", "http://[::1",
		"http://%41/", "http://ex%C3%A9mple.com/", "http://example.com/%zz", "http://a b/", "http://example.com\x00/",
		"http://2130706433/", "http://0x7f.1/", "http://example.com\\@evil.test/", "https://example.com:/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ValidateURL(raw)
		if err != nil {
			if u != nil {
				t.Fatalf("ValidateURL(%q) = %v, %v; want no URL with an error", raw, u, err)
			}
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("ValidateURL(%q).Scheme = %q, want http or https", raw, u.Scheme)
		}
		if u.Hostname() == "" {
			t.Fatalf("ValidateURL(%q).Hostname() is empty, want a host", raw)
		}
		if len(raw) > MaxURLBytes {
			t.Fatalf("ValidateURL(%q) accepted %d bytes, over MaxURLBytes %d", raw, len(raw), MaxURLBytes)
		}
	})
}

// hopByHop are the names no accepted header set may hold: Host, the
// hop-by-hop and framing headers, and (checked by prefix) Proxy-*.
var hopByHop = map[string]bool{
	"Host": true, "Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

func FuzzValidateHeaders(f *testing.F) {
	for _, s := range [][4]string{
		{"X-Api-Key", "secret", "Accept", "text/html"},
		{"x-multi", "1", "X-MULTI", "2"},
		{"Host", "internal", "X-A", "1"},
		{"hOsT", "internal", "", ""},
		{"Connection", "close", "Upgrade", "websocket"},
		{"Proxy-Authorization", "Basic eDp5", "proxy-foo", "1"},
		{"Transfer-Encoding", "chunked", "Content-Length", "0"},
		{"Te", "trailers", "Keep-Alive", "5"},
		{"X-A", "a\r\nHost: evil", "X-B", "b\x00"},
		{"X A", "v", "X:A", "v"},
		{"X-A\r\n", "v", "X-\x00", "v"},
		{"X-Tab", "a\tb", "X-Empty", ""},
		{"X-Unicode", "héllo", "Ünïcode", "v"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string) {
		in := []*fetchv1.Header{{Name: n1, Value: v1}, {Name: n2, Value: v2}}
		h, err := ValidateHeaders(in)
		if err != nil {
			if h != nil {
				t.Fatalf("ValidateHeaders(%q) = %v, %v; want no headers with an error", in, h, err)
			}
			return
		}
		count := 0
		for k, vs := range h {
			count += len(vs)
			if k == "" || strings.ContainsAny(k, "\r\n\x00 :") {
				t.Fatalf("ValidateHeaders(%q) accepted name %q, want a token without CR, LF, NUL", in, k)
			}
			if k != http.CanonicalHeaderKey(k) {
				t.Fatalf("ValidateHeaders(%q) kept name %q, want canonical %q", in, k, http.CanonicalHeaderKey(k))
			}
			lk := strings.ToLower(k)
			if hopByHop[http.CanonicalHeaderKey(lk)] || strings.HasPrefix(lk, "proxy-") {
				t.Fatalf("ValidateHeaders(%q) accepted forbidden header %q", in, k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("ValidateHeaders(%q) accepted %s value %q, want no CR, LF or NUL", in, k, v)
				}
			}
		}
		if count != len(in) {
			t.Fatalf("ValidateHeaders(%q) kept %d values, want %d", in, count, len(in))
		}
	})
}
