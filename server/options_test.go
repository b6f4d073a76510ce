package server

import "testing"

// TestStreamDefaults checks that the stream window and queue follow the
// concurrency unless set: window = max(512, 2 x concurrency), queue =
// max(8192, 16 x window), so that one stream can use the whole pool, and
// configurations within today's defaults keep them.
func TestStreamDefaults(t *testing.T) {
	tests := []struct {
		name                  string
		opts                  []Option
		wantWindow, wantQueue int
	}{
		{"defaults", nil, 512, 8192},
		{"concurrency 1000", []Option{WithConcurrency(1000)}, 2000, 32000},
		{"concurrency 257", []Option{WithConcurrency(257)}, 514, 8224},
		{"concurrency 1 keeps the floor", []Option{WithConcurrency(1)}, 512, 8192},
		{"window set", []Option{WithConcurrency(1000), WithStreamWindow(100)}, 100, 8192},
		{"large window set", []Option{WithConcurrency(1), WithStreamWindow(1000)}, 1000, 16000},
		{"window and queue set", []Option{WithConcurrency(1000), WithStreamWindow(100), WithStreamQueue(7)}, 100, 7},
		{"queue set", []Option{WithConcurrency(1000), WithStreamQueue(7)}, 2000, 7},
		{"zero means derived", []Option{WithStreamWindow(100), WithStreamQueue(7), WithConcurrency(300), WithStreamWindow(0), WithStreamQueue(0)}, 600, 9600},
		{"negative ignored", []Option{WithConcurrency(1000), WithStreamWindow(-1), WithStreamQueue(-1)}, 2000, 32000},
		{"order does not matter", []Option{WithStreamQueue(0), WithStreamWindow(0), WithConcurrency(500)}, 1000, 16000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(append([]Option{WithLogger(quiet)}, tt.opts...)...)
			t.Cleanup(s.Close)
			if s.opts.streamWindow != tt.wantWindow || s.opts.streamQueue != tt.wantQueue {
				t.Errorf("New(%s): stream window %d, queue %d; want %d, %d", tt.name, s.opts.streamWindow, s.opts.streamQueue, tt.wantWindow, tt.wantQueue)
			}
		})
	}
}
