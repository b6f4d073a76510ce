package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// ratioKind says how a row compares fetchd with the baseline.
type ratioKind int

const (
	ratioRate  ratioKind = iota // fetchd results/s ÷ baseline results/s: above 1, fetchd is faster
	ratioTime                   // fetchd wall time ÷ baseline wall time: below 1, fetchd is faster
	ratioFirst                  // fetchd time to first result ÷ the baseline's
	ratioBytes                  // fetchd body bytes/s ÷ the baseline's: above 1, fetchd is faster
)

// row is one workload (or one sweep point), through fetchd and through the
// baseline.
type row struct {
	workload string // its -workloads name
	label    string
	conc     int
	ratio    ratioKind
	fetchd   side
	baseline side
}

func (r row) ratioCell() string {
	switch r.ratio {
	case ratioRate:
		return fmt.Sprintf("%.2f× rate", rate(r.fetchd)/rate(r.baseline))
	case ratioTime:
		return fmt.Sprintf("%.2f× time", r.fetchd.wall.Seconds()/r.baseline.wall.Seconds())
	case ratioBytes:
		return fmt.Sprintf("%.2f× bytes/s", mibPerSec(r.fetchd)/mibPerSec(r.baseline))
	default:
		return fmt.Sprintf("%.2f× first", r.fetchd.first.Seconds()/r.baseline.first.Seconds())
	}
}

func (r row) cells() []string {
	wallF, wallB := fmtDur(r.fetchd.wall), fmtDur(r.baseline.wall)
	rateF, rateB := fmt.Sprintf("%.0f", rate(r.fetchd)), fmt.Sprintf("%.0f", rate(r.baseline))
	if r.ratio == ratioFirst {
		wallF, wallB = fmtDur(r.fetchd.first), fmtDur(r.baseline.first)
		rateF, rateB = "-", "-"
	}
	return []string{
		r.workload, r.label, fmt.Sprint(r.fetchd.jobs), fmt.Sprint(r.conc),
		wallF, wallB, rateF, rateB, r.ratioCell(),
		perJob(r.fetchd.fetchdCPU, r.fetchd.jobs), perJob(r.fetchd.selfCPU, r.fetchd.jobs), perJob(r.baseline.selfCPU, r.baseline.jobs),
		fmtKiB(r.fetchd.fetchdPeak), fmtKiB(r.fetchd.selfPeak), fmtKiB(r.baseline.selfPeak),
		fmt.Sprintf("%d/%d", r.fetchd.errors, r.baseline.errors),
	}
}

var mainHeader = []string{
	"workload", "what", "jobs", "conc",
	"wall fetchd", "wall base", "res/s fetchd", "res/s base", "ratio",
	"CPU/job fetchd", "CPU/job client", "CPU/job base",
	"peak RSS fetchd", "peak RSS client", "peak RSS base", "errors",
}

func rate(s side) float64 { return float64(s.jobs) / s.wall.Seconds() }

// bodyCells is a bodies row in the large-bodies table.
func (r row) bodyCells() []string {
	size := int64(0)
	if r.fetchd.jobs > 0 {
		size = r.fetchd.bytes / int64(r.fetchd.jobs)
	}
	return []string{
		r.label, fmtBytes(size), fmt.Sprint(r.fetchd.jobs), fmt.Sprint(r.conc),
		fmt.Sprintf("%.0f", mibPerSec(r.fetchd)), fmt.Sprintf("%.0f", mibPerSec(r.baseline)), r.ratioCell(),
		perMiB(r.fetchd.fetchdCPU, r.fetchd.bytes), perMiB(r.fetchd.selfCPU, r.fetchd.bytes), perMiB(r.baseline.selfCPU, r.baseline.bytes),
		fmtKiB(r.fetchd.fetchdPeak), fmtKiB(r.fetchd.selfPeak), fmtKiB(r.baseline.selfPeak),
	}
}

var bodiesHeader = []string{
	"what", "body", "jobs", "conc", "MiB/s fetchd", "MiB/s base", "ratio",
	"CPU/MiB fetchd", "CPU/MiB client", "CPU/MiB base",
	"peak RSS fetchd", "peak RSS client", "peak RSS base",
}

// table is a table printed aligned as text, or as markdown. The first two
// columns are left-aligned, the rest right-aligned.
type table struct {
	header []string
	rows   [][]string
}

func (t table) text(w io.Writer) {
	width := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range append([][]string{t.header}, t.rows...) {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < 2 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func (t table) markdown(w io.Writer) {
	fmt.Fprintf(w, "| %s |\n|", strings.Join(t.header, " | "))
	for i := range t.header {
		if i < 2 {
			fmt.Fprint(w, "---|")
		} else {
			fmt.Fprint(w, "---:|")
		}
	}
	fmt.Fprintln(w)
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

// report is everything a run measured, and where.
type report struct {
	rows      []row
	command   string
	started   time.Time
	elapsed   time.Duration
	plotTitle string
}

func (rp *report) tables() (all, first, memory, bodies, scale table) {
	all.header = mainHeader
	scale.header = []string{"workload", "what", "jobs", "wall, 3 replicas", "wall, 1 replica", "res/s, 3 replicas", "res/s, 1 replica", "ratio", "errors"}
	bodies.header = bodiesHeader
	first.header = []string{"side", "what", "fast job alone (median of 5)", "first result, fast job first", "first result, fast job last", "all done (fast job last)"}
	memory.header = []string{"side", "at", "fetchd RSS", "fetchd peak", "client/baseline RSS", "client/baseline peak"}
	for _, r := range rp.rows {
		if r.workload == "scaleout" {
			scale.rows = append(scale.rows, []string{r.workload, r.label, fmt.Sprint(r.fetchd.jobs),
				fmtDur(r.fetchd.wall), fmtDur(r.baseline.wall),
				fmt.Sprintf("%.0f", rate(r.fetchd)), fmt.Sprintf("%.0f", rate(r.baseline)), r.ratioCell(),
				fmt.Sprintf("%d/%d", r.fetchd.errors, r.baseline.errors)})
			continue
		}
		all.rows = append(all.rows, r.cells())
		if r.workload == "bodies" {
			bodies.rows = append(bodies.rows, r.bodyCells())
		}
		if r.workload == "ttfr" {
			for _, s := range []struct {
				name string
				side side
			}{{"fetchd", r.fetchd}, {"baseline", r.baseline}} {
				first.rows = append(first.rows, []string{s.name, fmt.Sprintf("%d jobs, conc %d", s.side.jobs, r.conc),
					fmtDur(s.side.alone), fmtDur(s.side.leadFirst), fmtDur(s.side.first), fmtDur(s.side.wall)})
			}
		}
		for _, s := range r.fetchd.samples {
			memory.rows = append(memory.rows, []string{"fetchd", fmt.Sprintf("%d results", s.jobs),
				fmtKiB(s.fetchdRSS), fmtKiB(s.fetchdHWM), fmtKiB(s.selfRSS), fmtKiB(s.selfHWM)})
		}
		for _, s := range r.baseline.samples {
			memory.rows = append(memory.rows, []string{"baseline", fmt.Sprintf("%d results", s.jobs),
				"-", "-", fmtKiB(s.selfRSS), fmtKiB(s.selfHWM)})
		}
	}
	return all, first, memory, bodies, scale
}

// summaries sums up the workloads run more than once: the median of each
// ratio against the baseline, and the range of the rate or time ratio.
func (rp *report) summaries() []string {
	var out []string
	for _, w := range []string{"throughput", "embedded", "latency", "scaleout"} {
		var ratios, cpuF, cpuC []float64
		var kind ratioKind
		label := ""
		for _, r := range rp.rows {
			if r.workload != w {
				continue
			}
			kind, label = r.ratio, strings.SplitN(r.label, ",", 2)[0]
			if kind == ratioTime {
				ratios = append(ratios, r.fetchd.wall.Seconds()/r.baseline.wall.Seconds())
			} else {
				ratios = append(ratios, rate(r.fetchd)/rate(r.baseline))
			}
			base := float64(r.baseline.selfCPU) / float64(r.baseline.jobs)
			cpuF = append(cpuF, float64(r.fetchd.fetchdCPU)/float64(r.fetchd.jobs)/base)
			cpuC = append(cpuC, float64(r.fetchd.selfCPU)/float64(r.fetchd.jobs)/base)
		}
		if len(ratios) < 2 {
			continue
		}
		what := "rate"
		if kind == ratioTime {
			what = "wall time"
		}
		if w == "scaleout" {
			out = append(out, fmt.Sprintf("%s, median of %d runs: three replicas %.2f× one replica's rate (runs %.2f-%.2f)",
				label, len(ratios), median(ratios), slices.Min(ratios), slices.Max(ratios)))
			continue
		}
		if w == "embedded" {
			// No fetchd process: the client's CPU is the engine's too.
			out = append(out, fmt.Sprintf("%s, median of %d runs: %.2f× the baseline's %s (runs %.2f-%.2f); CPU per job against the baseline's: %.2f× (engine and client, one process)",
				label, len(ratios), median(ratios), what, slices.Min(ratios), slices.Max(ratios), median(cpuC)))
			continue
		}
		out = append(out, fmt.Sprintf("%s, median of %d runs: %.2f× the baseline's %s (runs %.2f-%.2f); CPU per job against the baseline's: fetchd %.2f×, client %.2f×",
			label, len(ratios), median(ratios), what, slices.Min(ratios), slices.Max(ratios), median(cpuF), median(cpuC)))
	}
	return out
}

// median returns the median of v, which must not be empty.
func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// section is a table after the main one, printed only when it has rows,
// under its title for a terminal or its markdown heading.
type section struct {
	text, heading string
	t             table
}

// sections returns the tables after the main one that have rows, in order.
func sections(first, memory, bodies, scale table) []section {
	all := []section{
		{"time to first result", "Time to first result", first},
		{"memory during the scale workload", "Memory during the scale workload", memory},
		{"large bodies (fetchd in chunks of the Go client's default size, the baseline to io.Discard)", "Large bodies", bodies},
		{"scale-out (three fetchd replicas against one, defaults; the ratio is three's rate over one's)", "Scale-out: three replicas against one", scale},
	}
	var out []section
	for _, sec := range all {
		if len(sec.t.rows) > 0 {
			out = append(out, sec)
		}
	}
	return out
}

// text prints the tables for a terminal.
func (rp *report) text(w io.Writer) {
	all, first, memory, bodies, scale := rp.tables()
	all.text(w)
	for _, s := range rp.summaries() {
		fmt.Fprintf(w, "\n%s\n", s)
	}
	for _, sec := range sections(first, memory, bodies, scale) {
		fmt.Fprintf(w, "\n%s:\n", sec.text)
		sec.t.text(w)
	}
	fmt.Fprintf(w, "\ntotal %v\n", rp.elapsed.Round(time.Second))
}

// markdown writes the tables, the machine and the definitions.
func (rp *report) markdown(w io.Writer, plot string) {
	all, first, memory, bodies, scale := rp.tables()
	fmt.Fprintf(w, "# fetchd benchmark\n\n")
	fmt.Fprintf(w, "`%s`, %s, took %v.\n\n", rp.command, rp.started.UTC().Format("2006-01-02 15:04 MST"), rp.elapsed.Round(time.Second))
	fmt.Fprintf(w, "Machine: %s, %d cores (GOMAXPROCS %d), Linux %s, %s.\n\n",
		cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), kernel(), runtime.Version())
	all.markdown(w)
	for _, s := range rp.summaries() {
		fmt.Fprintf(w, "\n**%s.**\n", strings.ToUpper(s[:1])+s[1:])
	}
	for _, sec := range sections(first, memory, bodies, scale) {
		fmt.Fprintf(w, "\n## %s\n\n", sec.heading)
		sec.t.markdown(w)
	}
	if plot != "" {
		fmt.Fprintf(w, "\n## Results/s against concurrency\n\n![results/s against concurrency, fetchd and the baseline](%s)\n", plot)
	}
	fmt.Fprint(w, notes)
}

const notes = `
## How to read it

- **fetchd** runs are the fetchd binary, started afresh for each row with ` + "`-concurrency`" + ` set to the row's conc,
  ` + "`-host-concurrency 0 -dedup=false -retry-attempts 1`" + ` (one upstream host; every job distinct; no retries) and
  fetchd's default stream window and queue (2× and 32× conc, at least 512 and 8192), fed through the client
  package (window 4× conc) over one gRPC stream from the fetchbench process. **base** is the in-process baseline: an errgroup
  limited to conc goroutines sharing one http.Client (idle pool of conc connections), reading every body.
  Both fetch the same URLs from the same upstream, which runs in its own process. Before its measured runs
  each side is warmed up with conc jobs of 200 ms, which open conc connections to the upstream, so that no
  measured run pays for a storm of connects (on a small VM a thousand at once can cost seconds).
- **ratio**: ` + "`rate`" + ` is fetchd's results/s ÷ the baseline's (above 1: fetchd faster); ` + "`time`" + ` is fetchd's wall
  time ÷ the baseline's (below 1: fetchd faster); ` + "`first`" + ` compares the times to the first result. On the
  ttfr row the wall columns are the time to the first result with the fast job last, behind every slow one;
  the time-to-first-result table also gives it with the fast job first, ahead of the slow ones.
- **CPU/job**: fetchd's from /proc/PID/stat (utime+stime, 10 ms ticks) over the run; the client's and the
  baseline's from getrusage of the fetchbench process during their own run (they never run at the same time).
  The upstream's CPU is in none of them. All processes share the machine's cores.
- **peak RSS**: fetchd's VmHWM (its own process per row, warm-up included); the client's and the
  baseline's are fetchbench's VmHWM, reset through /proc/self/clear_refs before each run.
- **scale-out**: 10,000 GETs of a 500 ms response, round robin over 2,000 upstream hosts (loopback addresses
  127.0.0.1 to 127.0.7.222, one upstream process), through one call of the client with its defaults over three
  fetchd replicas with theirs (each its own process, a pool of 256, a host cap of 16), then over one. The pools
  are the limit: the ratio is how close three replicas come to three times one, with the client routing each
  host to one replica (so that the host caps hold across replicas): rendezvous hashing gives one replica about
  a third of the hosts, give or take 1-2%, and the last wave of jobs is on the busiest. With 200 ms responses
  three replicas and the upstream would need more than this machine's two cores.
- **bodies**: jobs of one large body each (` + "`/stream/N`" + `, written by the upstream as a repeated 64 KiB pattern).
  fetchd's side is one Fetch stream through the generated gRPC stubs with ` + "`stream_options.chunk_bytes`" + ` 1 MiB,
  counting every chunk's bytes and keeping none; the baseline reads each body to io.Discard. Every result is
  checked (status 200, not truncated, body_length and the bytes received equal to the body's size) and any
  failure fails the run. **MiB/s** is body bytes received per second of wall time; **CPU/MiB** is CPU time per
  MiB received; the ratio is fetchd's MiB/s ÷ the baseline's. fetchd runs with its default body limits
  (` + "`-max-body-bytes`, `-max-stream-body-bytes`, `-body-memory`" + `).
- **errors**: results with an error or a status other than 200, fetchd/baseline.
`

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	return parseCPUModel(string(b))
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

func perJob(cpu time.Duration, jobs int) string {
	if jobs == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fµs", float64(cpu)/float64(time.Microsecond)/float64(jobs))
}

func perMiB(cpu time.Duration, bytes int64) string {
	if bytes == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fms", float64(cpu)/float64(time.Millisecond)/(float64(bytes)/(1<<20)))
}

func fmtKiB(k int64) string {
	if k <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(k)/1024)
}
