package main

import (
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/fetchd/fetchd/client"
)

// progress is the progress bar on stderr. A nil *progress shows nothing,
// so callers need not check whether it is on.
type progress struct {
	bar    *progressbar.ProgressBar
	writes bool         // bytes are counted as -out writes them, not per result
	errors atomic.Int64 // results with an error so far
	bytes  atomic.Int64 // body bytes received so far
}

// newProgress returns the bar for -progress mode on stderr, or nil when
// there is none: mode "never", or "auto" when stderr is not a terminal.
// total is the number of jobs, or -1 when unknown (the input streams in);
// an unknown total shows a spinner with the count and rate. The
// description counts the body bytes received: as -out writes them when
// writes is set (so that a long download moves), else per result.
func newProgress(mode string, stderr io.Writer, total int, writes bool) *progress {
	if !progressOn(mode, stderr) {
		return nil
	}
	if total == 0 {
		total = -1
	}
	bar := progressbar.NewOptions64(int64(total),
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription("fetching"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(total > 0), // "n/total" rather than "n/-"
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("results"),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionFullWidth(),
		progressbar.OptionThrottle(100*time.Millisecond),
		// Render now, before the bar's spinner goroutine starts, and clear
		// the line when done, for the summary.
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionClearOnFinish(),
	)
	return &progress{bar: bar, writes: writes}
}

// progressOn reports whether -progress mode shows a bar on w.
func progressOn(mode string, w io.Writer) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// add counts one result.
func (p *progress) add(r *client.Result) {
	if p == nil {
		return
	}
	if r.GetError() != nil {
		p.errors.Add(1)
	}
	if !p.writes {
		p.bytes.Add(int64(min(r.GetBodyLength(), math.MaxInt64)))
	}
	p.describe()
	p.bar.Add(1)
}

// addBytes counts n body bytes written by -out. It may be called from
// any goroutine.
func (p *progress) addBytes(n int) {
	if p == nil || n == 0 {
		return
	}
	p.bytes.Add(int64(n))
	p.describe()
}

// describe sets the bar's description: "fetching (12.3 MiB, 2 errors)".
func (p *progress) describe() {
	d := "fetching (" + formatBytes(p.bytes.Load())
	if n := uint64(p.errors.Load()); n > 0 {
		d += fmt.Sprintf(", %d %s", n, plural(n, "error", "errors"))
	}
	p.bar.Describe(d + ")")
}

// formatBytes returns n in B, KiB, MiB or GiB, with one decimal above B.
func formatBytes(n int64) string {
	if n < 1<<10 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/(1<<10), "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB"} {
		if v < 1<<10 {
			break
		}
		v, unit = v/(1<<10), u
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// finish clears the bar from the terminal and stops its spinner goroutine.
// Call it once, when no more results come.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.bar.Finish()
}
