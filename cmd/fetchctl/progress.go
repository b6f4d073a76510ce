package main

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/fetchd/fetchd/client"
)

// progress is the progress bar on stderr. A nil *progress shows nothing,
// so callers need not check whether it is on.
type progress struct {
	bar    *progressbar.ProgressBar
	errors int // results with an error so far
}

// newProgress returns the bar for -progress mode on stderr, or nil when
// there is none: mode "never", or "auto" when stderr is not a terminal.
// total is the number of jobs, or -1 when unknown (the input streams in);
// an unknown total shows a spinner with the count and rate.
func newProgress(mode string, stderr io.Writer, total int) *progress {
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
	return &progress{bar: bar}
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
		p.errors++
		p.bar.Describe(fmt.Sprintf("fetching (%d %s)", p.errors, plural(uint64(p.errors), "error", "errors")))
	}
	p.bar.Add(1)
}

// finish clears the bar from the terminal and stops its spinner goroutine.
// Call it once, when no more results come.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.bar.Finish()
}
