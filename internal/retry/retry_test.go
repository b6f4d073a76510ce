package retry

import (
	"net/http"
	"testing"
	"time"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

func withRetryAfter(status int32, v string) *fetchv1.FetchResponse {
	return &fetchv1.FetchResponse{StatusCode: status, Headers: []*fetchv1.Header{{Name: "Retry-After", Value: v}}}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		value string
		want  time.Duration
		ok    bool
	}{
		{"seconds", "120", 2 * time.Minute, true},
		{"zero", "0", 0, true},
		{"spaces", " 5 ", 5 * time.Second, true},
		{"HTTP date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"negative", "-3", 0, false},
		{"garbage", "soon", 0, false},
		{"huge", "99999999999999", 1 << 32 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := RetryAfter(withRetryAfter(429, tt.value), now)
			if got != tt.want || ok != tt.ok {
				t.Errorf("RetryAfter(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
			}
		})
	}
	if _, ok := RetryAfter(&fetchv1.FetchResponse{StatusCode: 429}, now); ok {
		t.Error("RetryAfter without the header reported one")
	}
}

func TestTransient(t *testing.T) {
	tests := []struct {
		r    *fetchv1.FetchResponse
		want bool
	}{
		{&fetchv1.FetchResponse{StatusCode: 200}, false},
		{&fetchv1.FetchResponse{StatusCode: 404}, false},
		{&fetchv1.FetchResponse{StatusCode: 500}, false},
		{&fetchv1.FetchResponse{StatusCode: 429}, true},
		{&fetchv1.FetchResponse{StatusCode: 502}, true},
		{&fetchv1.FetchResponse{StatusCode: 503}, true},
		{&fetchv1.FetchResponse{StatusCode: 504}, true},
		{&fetchv1.FetchResponse{Error: &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE}}, true},
		{&fetchv1.FetchResponse{Error: &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT}}, true},
		{&fetchv1.FetchResponse{Error: &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_BLOCKED}}, false},
		{&fetchv1.FetchResponse{Error: &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_DNS_FAILURE}}, false},
		{&fetchv1.FetchResponse{Error: &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE}}, false},
		{&fetchv1.FetchResponse{Error: &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_CANCELLED}}, false},
	}
	for _, tt := range tests {
		if got := Transient(tt.r); got != tt.want {
			t.Errorf("Transient(status %d, error %v) = %v, want %v", tt.r.GetStatusCode(), tt.r.GetError().GetCode(), got, tt.want)
		}
	}
}

func TestIdempotent(t *testing.T) {
	for m, want := range map[string]bool{"": true, "GET": true, "head": true, "PUT": true, "DELETE": true, "OPTIONS": true, "POST": false, "PATCH": false} {
		if got := Idempotent(m); got != want {
			t.Errorf("Idempotent(%q) = %v, want %v", m, got, want)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: time.Second}
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		for range 200 {
			if d := p.Backoff(attempt); d < want/2 || d > want {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestNext(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	p := Policy{MaxAttempts: 3, Base: 100 * time.Millisecond, Max: time.Second, MaxRetryAfter: 10 * time.Second}
	tests := []struct {
		name     string
		r        *fetchv1.FetchResponse
		method   string
		attempt  int
		deadline time.Duration
		wantOK   bool
		wantWait time.Duration // exact when > 0
	}{
		{"503 retried", &fetchv1.FetchResponse{StatusCode: 503}, "GET", 1, time.Minute, true, 0},
		{"last attempt", &fetchv1.FetchResponse{StatusCode: 503}, "GET", 3, time.Minute, false, 0},
		{"POST", &fetchv1.FetchResponse{StatusCode: 503}, "POST", 1, time.Minute, false, 0},
		{"Retry-After", withRetryAfter(429, "4"), "GET", 1, time.Minute, true, 4 * time.Second},
		{"Retry-After capped", withRetryAfter(429, "600"), "GET", 1, time.Minute, true, 10 * time.Second},
		{"Retry-After past deadline", withRetryAfter(429, "4"), "GET", 1, 3 * time.Second, false, 0},
		{"no time left for backoff", &fetchv1.FetchResponse{StatusCode: 503}, "GET", 1, 50 * time.Millisecond, false, 0},
		{"200", &fetchv1.FetchResponse{StatusCode: 200}, "GET", 1, time.Minute, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait, _, ok := p.Next(tt.r, tt.method, tt.attempt, now, now.Add(tt.deadline))
			if ok != tt.wantOK || (tt.wantWait > 0 && wait != tt.wantWait) {
				t.Errorf("Next = %v, %v; want %v, %v", wait, ok, tt.wantWait, tt.wantOK)
			}
		})
	}
}
