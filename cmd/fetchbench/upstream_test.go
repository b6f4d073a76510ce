package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestUpstream(t *testing.T) {
	tests := []struct {
		path     string
		status   int
		bodyLen  int
		minDelay time.Duration
	}{
		{"/size/0", http.StatusOK, 0, 0},
		{"/size/1024?i=7", http.StatusOK, 1024, 0},
		{"/size/1048576", http.StatusOK, 1 << 20, 0},
		{"/size/1048577", http.StatusBadRequest, -1, 0},
		{"/size/-1", http.StatusBadRequest, -1, 0},
		{"/stream/0", http.StatusOK, 0, 0},
		{"/stream/100", http.StatusOK, 100, 0},
		{"/stream/3000000?i=2", http.StatusOK, 3_000_000, 0},
		{"/stream/1073741825", http.StatusBadRequest, -1, 0},
		{"/stream/x", http.StatusBadRequest, -1, 0},
		{"/delay/0", http.StatusOK, 3, 0},
		{"/delay/30", http.StatusOK, 3, 30 * time.Millisecond},
		{"/delay/60001", http.StatusBadRequest, -1, 0},
		{"/other", http.StatusNotFound, -1, 0},
	}
	srv := httptest.NewServer(newUpstream())
	defer srv.Close()
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			start := time.Now()
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Errorf("GET %s: status %d, want %d", tt.path, resp.StatusCode, tt.status)
			}
			if tt.bodyLen >= 0 && len(body) != tt.bodyLen {
				t.Errorf("GET %s: %d body bytes, want %d", tt.path, len(body), tt.bodyLen)
			}
			if d := time.Since(start); d < tt.minDelay {
				t.Errorf("GET %s took %v, want at least %v", tt.path, d, tt.minDelay)
			}
		})
	}
	http.DefaultClient.CloseIdleConnections()
}
