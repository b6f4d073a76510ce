package main

import (
	"testing"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// TestRequestTarget checks that a job's URL never puts whitespace on the
// upstream's request line (RFC 9112, section 3.2: "No whitespace is
// allowed in the request-target"), where a caller could forge the rest of
// the line ("GET /?q=a HTTP/1.0 x HTTP/1.1") for a lenient upstream. A URL
// with a raw space must be either refused as an invalid request or sent
// percent-encoded; both are correct, sending it raw is not.
func TestRequestTarget(t *testing.T) {
	up := testupstream.New(t)
	p := startFetchd(t, "-allow-cidr", "127.0.0.0/8")
	tests := []struct {
		name string
		url  string
		tag  string // the tag the upstream sees if the URL is sent encoded
	}{
		{"space in path", up.URL + "/a b?tag=path", "path"},
		{"space in query", up.URL + "/?tag=a b", "a b"},
		{"forged version", up.URL + "/?tag=v HTTP/1.0 x", "v HTTP/1.0 x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fetchOne(t, p.addr, tt.url)
			switch {
			case r.GetError().GetCode() == fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST:
				if n := up.Tag(tt.tag); n != 0 {
					t.Errorf("upstream saw %d requests for an invalid job, want 0", n)
				}
			case r.GetStatusCode() == 200:
				if n := up.Tag(tt.tag); n != 1 {
					t.Errorf("upstream saw %d requests tagged %q, want 1", n, tt.tag)
				}
			default:
				t.Errorf("Fetch(%q) = %v, want status 200 (sent encoded) or ERROR_CODE_INVALID_REQUEST", tt.url, r)
			}
		})
	}
}
