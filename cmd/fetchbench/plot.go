package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// series is one line of the plot.
type series struct {
	name, color string
	x, y        []float64
}

// Plot geometry, in SVG user units.
const (
	plotW, plotH                       = 760, 440
	marginL, marginR, marginT, marginB = 80, 170, 50, 60
)

// writePlot writes an SVG line chart of results/s against concurrency (a
// log2 axis) for fetchd and the baseline, from the sweep rows.
func writePlot(w io.Writer, rows []row, title string) {
	f := series{name: "fetchd (client → gRPC → fetchd)", color: "#1f77b4"}
	b := series{name: "baseline (in-process errgroup)", color: "#d62728"}
	for _, r := range rows {
		f.x, f.y = append(f.x, float64(r.conc)), append(f.y, rate(r.fetchd))
		b.x, b.y = append(b.x, float64(r.conc)), append(b.y, rate(r.baseline))
	}
	xs := append(append([]float64{}, f.x...), b.x...)
	xMin, xMax := math.Log2(minOf(xs)), math.Log2(maxOf(xs))
	if xMax-xMin < 1 {
		xMin, xMax = xMin-0.5, xMax+0.5
	}
	step := niceStep(maxOf(append(append([]float64{}, f.y...), b.y...)) / 5)
	yMax := step * math.Ceil(maxOf(append(append([]float64{1}, f.y...), b.y...))*1.05/step)
	iw, ih := float64(plotW-marginL-marginR), float64(plotH-marginT-marginB)
	px := func(x float64) float64 { return marginL + (math.Log2(x)-xMin)/(xMax-xMin)*iw }
	py := func(y float64) float64 { return marginT + ih - y/yMax*ih }

	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(&s, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&s, `<text x="%d" y="28" text-anchor="middle" font-size="15" font-weight="bold">%s</text>`+"\n", (plotW-marginR+marginL)/2, esc(title))
	for y := 0.0; y <= yMax+step/2; y += step {
		fmt.Fprintf(&s, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", marginL, marginL+iw, py(y), py(y))
		fmt.Fprintf(&s, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", marginL-6, py(y)+4, thousands(y))
	}
	for _, x := range uniq(xs) {
		fmt.Fprintf(&s, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#ddd"/>`+"\n", px(x), px(x), marginT, marginT+ih)
		fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" text-anchor="middle">%g</text>`+"\n", px(x), marginT+ih+16, x)
	}
	fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", marginL, marginT, iw, ih)
	fmt.Fprintf(&s, `<text x="%.1f" y="%d" text-anchor="middle">concurrency (log scale)</text>`+"\n", marginL+iw/2, plotH-18)
	fmt.Fprintf(&s, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">results/s</text>`+"\n", marginT+ih/2)
	for i, ser := range []series{f, b} {
		var pts []string
		for j := range ser.x {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(ser.x[j]), py(ser.y[j])))
		}
		fmt.Fprintf(&s, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", ser.color, strings.Join(pts, " "))
		for j := range ser.x {
			fmt.Fprintf(&s, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", px(ser.x[j]), py(ser.y[j]), ser.color)
		}
		ly := marginT + 14 + 36*i
		fmt.Fprintf(&s, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", marginL+iw+12, marginL+iw+32, ly, ly, ser.color)
		name, detail, _ := strings.Cut(ser.name, " (")
		fmt.Fprintf(&s, `<text x="%.1f" y="%d">%s</text>`+"\n", marginL+iw+38, ly+4, esc(name))
		fmt.Fprintf(&s, `<text x="%.1f" y="%d" font-size="10" fill="#555">(%s</text>`+"\n", marginL+iw+38, ly+17, esc(detail))
	}
	s.WriteString("</svg>\n")
	io.WriteString(w, s.String())
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5} {
		if v <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

// thousands formats a whole number with commas between thousands.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func minOf(v []float64) float64 {
	m := math.Inf(1)
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func uniq(v []float64) []float64 {
	seen := map[float64]bool{}
	var out []float64
	for _, x := range v {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
