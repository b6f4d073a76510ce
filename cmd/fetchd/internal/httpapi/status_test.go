package httpapi

import (
	"encoding/json"
	"net/http"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		code codes.Code
		want int
	}{
		{codes.OK, 200}, {codes.Canceled, 499}, {codes.Unknown, 500}, {codes.InvalidArgument, 400},
		{codes.DeadlineExceeded, 504}, {codes.NotFound, 404}, {codes.AlreadyExists, 409},
		{codes.PermissionDenied, 403}, {codes.ResourceExhausted, 429}, {codes.FailedPrecondition, 400},
		{codes.Aborted, 409}, {codes.OutOfRange, 400}, {codes.Unimplemented, 501}, {codes.Internal, 500},
		{codes.Unavailable, 503}, {codes.DataLoss, 500}, {codes.Unauthenticated, 401},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			if got := HTTPStatus(tt.code); got != tt.want {
				t.Errorf("HTTPStatus(%v) = %d, want %d", tt.code, got, tt.want)
			}
		})
	}
}

func TestStatusLine(t *testing.T) {
	tests := []struct {
		name    string
		trailer metadata.MD
		want    string
	}{
		{"no trailer", nil, `{"status":{"code":14,"message":"drained"}}` + "\n"},
		{"trailer", metadata.Pairs("fetchd-unstarted", "true"), `{"status":{"code":14,"message":"drained"},"trailer":{"fetchd-unstarted":"true"}}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(statusLine(status.New(codes.Unavailable, "drained"), tt.trailer)); got != tt.want {
				t.Errorf("statusLine = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestTrailerBeforeResults: a call that ends before its first result with
// a trailer (fetchd-unstarted on drain) sends it as a header.
func TestTrailerBeforeResults(t *testing.T) {
	drained := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ss.SetTrailer(metadata.Pairs("fetchd-unstarted", "true"))
		return status.Error(codes.Unavailable, "draining")
	}
	ts := startAPI(t, 0, drained)
	resp := post(t, ts.URL, "", `{"jobs":[]}`)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Fetchd-Unstarted") != "true" {
		t.Errorf("HTTP %d, Fetchd-Unstarted %q; want 503 and true", resp.StatusCode, resp.Header.Get("Fetchd-Unstarted"))
	}
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st["code"] != float64(codes.Unavailable) {
		t.Errorf("status body %v (%v), want code 14", st, err)
	}
}
