package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fetchd/fetchd/internal/testupstream"
	"github.com/fetchd/fetchd/server"
)

// TestBinaryReplicasPolite is the politeness case of running many
// replicas: three fetchd replicas, each capping a host at 4, and one
// fetchctl call of 300 jobs of 200 ms over 10 loopback hosts. No host sees
// more than 4 in flight, and every job has one line; with -spread the
// hosts see more (each replica keeps its own cap).
func TestBinaryReplicasPolite(t *testing.T) {
	for _, tt := range []struct {
		name   string
		args   []string
		polite bool
	}{{"affinity", nil, true}, {"spread", []string{"-spread"}, false}} {
		t.Run(tt.name, func(t *testing.T) {
			var addrs []string
			for range 3 {
				a, _ := startServer(t, nil, server.WithHostConcurrency(4), server.WithConcurrency(32))
				addrs = append(addrs, a)
			}
			var ups []*testupstream.Upstream
			for i := range 10 {
				ups = append(ups, testupstream.NewAt(t, fmt.Sprintf("127.0.0.%d:0", 100+i)))
			}
			var in strings.Builder
			const n = 300
			for i := range n {
				fmt.Fprintf(&in, "%s/?delay=200ms&i=%d\n", ups[i%len(ups)].URL, i)
			}
			r := runBinary(t, in.String(), nil, append([]string{"-addr", strings.Join(addrs, ",")}, tt.args...)...)
			r.wantCode(t, 0)
			lines := r.lines(t)
			seen := make(map[uint64]bool)
			for _, l := range lines {
				if l.Status != 200 || seen[l.Index] {
					t.Fatalf("line %+v: want status 200, once per index", l)
				}
				seen[l.Index] = true
			}
			if len(seen) != n {
				t.Fatalf("%d results, want %d", len(seen), n)
			}
			var peaks []int64
			most := int64(0)
			for _, up := range ups {
				peaks = append(peaks, up.Peak())
				most = max(most, up.Peak())
			}
			t.Logf("peak in flight per host: %v (in %v)", peaks, r.elapsed)
			if tt.polite && most > 4 {
				t.Errorf("a host saw %d in flight; want at most 4, each replica's cap", most)
			}
			if !tt.polite && most <= 4 {
				t.Errorf("with -spread no host saw more than 4 in flight; the test cannot tell the modes apart")
			}
		})
	}
}
