package server

import (
	"errors"
	"testing"
	"time"
)

// TestConfigResolve checks that a zero field means its default, a negative
// one off where the field has an off, and an error elsewhere.
func TestConfigResolve(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		check   func(o options) bool
		wantErr bool
	}{
		{"zero is the defaults", Config{}, func(o options) bool {
			return o.concurrency == DefaultConcurrency && o.streamWindow == 512 && o.streamQueue == 8192 &&
				o.maxBodyBytes == DefaultMaxBodyBytes && o.maxDiscardBytes == DefaultMaxDiscardBytes && o.defaultTimeout == DefaultTimeout &&
				o.maxTimeout == DefaultMaxTimeout && o.hostConcurrency == DefaultHostConcurrency &&
				o.dedup && o.retryAttempts == DefaultRetryAttempts && o.maxRetryAttempts == DefaultMaxRetryAttempts &&
				o.retryBackoff == DefaultRetryBackoff && o.maxRetryBackoff == DefaultMaxRetryBackoff &&
				o.maxRetryAfter == DefaultMaxRetryAfter && o.logger != nil
		}, false},
		{"negative turns off", Config{HostConcurrency: -1, MaxRetryAfter: -1}, func(o options) bool {
			return o.hostConcurrency == 0 && o.maxRetryAfter == 0
		}, false},
		{"default timeout follows a lower max", Config{MaxTimeout: time.Second}, func(o options) bool {
			return o.defaultTimeout == time.Second
		}, false},
		{"disable dedup", Config{DisableDedup: true}, func(o options) bool { return !o.dedup }, false},
		{"negative concurrency", Config{Concurrency: -1}, nil, true},
		{"negative body cap", Config{MaxBodyBytes: -1}, nil, true},
		{"negative discard cap", Config{MaxDiscardBytes: -1}, nil, true},
		{"negative host rate", Config{HostRate: -1}, nil, true},
		{"default timeout over max", Config{DefaultTimeout: time.Minute, MaxTimeout: time.Second}, nil, true},
		{"retry attempts over max", Config{RetryAttempts: 5, MaxRetryAttempts: 2}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := tt.cfg.resolve()
			if tt.wantErr {
				if !errors.Is(err, ErrConfig) {
					t.Errorf("resolve(%+v) = %v, want an error wrapping ErrConfig", tt.cfg, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve(%+v) = %v, want no error", tt.cfg, err)
			}
			if !tt.check(o) {
				t.Errorf("resolve(%+v) = %+v, not what the field docs say", tt.cfg, o)
			}
		})
	}
}

// TestNewFromConfig checks that NewFromConfig returns the error New
// cannot, and a working server otherwise.
func TestNewFromConfig(t *testing.T) {
	if s, err := NewFromConfig(Config{StreamWindow: -1}); !errors.Is(err, ErrConfig) || s != nil {
		t.Errorf("NewFromConfig(StreamWindow -1) = %v, %v; want nil and ErrConfig", s, err)
	}
	s, err := NewFromConfig(Config{Concurrency: 7, Logger: quiet})
	if err != nil {
		t.Fatalf("NewFromConfig(Concurrency 7) = %v", err)
	}
	t.Cleanup(s.Close)
	if got := s.Concurrency(); got != 7 {
		t.Errorf("NewFromConfig(Concurrency 7).Concurrency() = %d, want 7", got)
	}
}
