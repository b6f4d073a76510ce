package main

import (
	"strings"
	"testing"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// TestBlockedMessageNamesFlag checks that a refused job's error message, as
// a grpcurl user reads it, names the range and the flag that opens it. No
// connection is attempted: the policy refuses each address before connect.
func TestBlockedMessageNamesFlag(t *testing.T) {
	r := startRun(t, env(nil), "-allow-port", "80,1")
	tests := []struct {
		url  string
		want string // in the error message
	}{
		{"http://10.0.0.1/", "10.0.0.0/8 (private); -allow-private or -allow-cidr opens it"},
		{"http://[::1]:1/", "::1/128 (loopback); -allow-cidr opens it"},
		{"http://127.0.0.1:1/", "127.0.0.0/8 (loopback); -allow-cidr opens it"},
		{"http://168.63.129.16/", "168.63.129.16/32 (cloud metadata: Azure WireServer); only -allow-cidr 168.63.129.16/32 opens it"},
		{"http://8.8.8.8:443/", "port 443 not allowed; -allow-port opens it"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			res := fetchOne(t, r.addr, tt.url)
			if res.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_BLOCKED || !strings.Contains(res.GetError().GetMessage(), tt.want) {
				t.Errorf("Fetch(%q) = %v, want ERROR_CODE_BLOCKED with a message containing %q", tt.url, res.GetError(), tt.want)
			}
		})
	}
}
