package main

import (
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{
			name: "fetchd",
			stat: "4242 (fetchd) S 4200 4242 4200 0 -1 4194560 2563 0 0 0 153 47 0 0 20 0 9 0 88123 1302937600 7420 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
			want: 2 * time.Second, // 153 + 47 ticks
		},
		{
			name: "name with spaces and parentheses",
			stat: "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0 1 1 1 1",
			want: 100 * time.Millisecond,
		},
		{name: "no name", stat: "7 a R 1", wantErr: true},
		{name: "truncated", stat: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 5", wantErr: true},
		{name: "not a number", stat: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 x 5 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.stat)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStat(%q) = %v, %v; want %v, error %v", tt.stat, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	const status = "Name:\tfetchd\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 1272440 kB\nVmSize:\t 1272440 kB\n" +
		"VmHWM:\t   31744 kB\nVmRSS:\t   30464 kB\nRssAnon:\t   14000 kB\nThreads:\t9\n"
	tests := []struct {
		name     string
		status   string
		rss, hwm int64
		wantErr  bool
	}{
		{name: "fetchd", status: status, rss: 30464, hwm: 31744},
		{name: "kernel thread", status: "Name:\tkthreadd\nState:\tS (sleeping)\n", wantErr: true},
		{name: "bad unit", status: "VmHWM:\t 1 MB\nVmRSS:\t 1 kB\n", wantErr: true},
		{name: "bad number", status: "VmHWM:\t x kB\nVmRSS:\t 1 kB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rss, hwm, err := parseStatus(tt.status)
			if (err != nil) != tt.wantErr || rss != tt.rss || hwm != tt.hwm {
				t.Errorf("parseStatus(%q) = %d, %d, %v; want %d, %d, error %v", tt.status, rss, hwm, err, tt.rss, tt.hwm, tt.wantErr)
			}
		})
	}
}

func TestParseCPUModel(t *testing.T) {
	tests := []struct {
		name, cpuinfo, want string
	}{
		{"x86", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n", "AMD EPYC 7B13"},
		{"none", "processor\t: 0\nBogoMIPS\t: 50.00\n", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseCPUModel(tt.cpuinfo); got != tt.want {
				t.Errorf("parseCPUModel(%q) = %q, want %q", tt.cpuinfo, got, tt.want)
			}
		})
	}
}

// TestSelfUsage checks the readers against this process: CPU time grows
// with work, and the peak is at least the resident size.
func TestSelfUsage(t *testing.T) {
	before, err := selfUsage()
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	after, err := selfUsage()
	if err != nil {
		t.Fatal(err)
	}
	if after.cpu <= before.cpu {
		t.Errorf("CPU time went from %v to %v over 50ms of spinning", before.cpu, after.cpu)
	}
	if after.rssKiB <= 0 || after.hwmKiB < after.rssKiB {
		t.Errorf("selfUsage() RSS %d KiB, peak %d KiB; want 0 < RSS <= peak", after.rssKiB, after.hwmKiB)
	}
	if err := resetSelfPeak(); err != nil {
		t.Fatal(err)
	}
}
