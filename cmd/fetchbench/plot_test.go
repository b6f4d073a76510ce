package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestNiceStep(t *testing.T) {
	tests := []struct{ in, want float64 }{
		{0, 1}, {0.3, 0.5}, {1, 1}, {1.5, 2}, {3, 5}, {7, 10}, {2400, 5000}, {18000, 20000},
	}
	for _, tt := range tests {
		if got := niceStep(tt.in); got != tt.want {
			t.Errorf("niceStep(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestWritePlot(t *testing.T) {
	point := func(conc, jobs int) row {
		return row{conc: conc, fetchd: side{jobs: jobs, wall: time.Second}, baseline: side{jobs: 2 * jobs, wall: time.Second}}
	}
	tests := []struct {
		name string
		rows []row
	}{
		{"sweep", []row{point(8, 5000), point(64, 9000), point(1024, 7000)}},
		{"one point", []row{point(64, 100)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			writePlot(&b, tt.rows, "a <title>")
			svg := b.String()
			if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
				t.Errorf("writePlot wrote a non-number:\n%s", svg)
			}
			if got := strings.Count(svg, "<circle"); got != 2*len(tt.rows) {
				t.Errorf("writePlot drew %d points, want %d", got, 2*len(tt.rows))
			}
			if !strings.Contains(svg, "a &lt;title&gt;") || !strings.HasSuffix(svg, "</svg>\n") {
				t.Errorf("writePlot: title not escaped or SVG not closed:\n%s", svg)
			}
		})
	}
}
