package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/PID/stat: 100 on every Linux architecture Go supports.
const clockTicks = 100

// usage is a process's CPU time and memory at one moment.
type usage struct {
	cpu    time.Duration // user + system
	rssKiB int64         // resident now (VmRSS)
	hwmKiB int64         // peak resident since start or the last reset (VmHWM)
}

// parseStat returns utime+stime from the text of /proc/PID/stat. The
// command name (field 2) may hold spaces and parentheses, so the fields are
// counted from the last ')'.
func parseStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("stat: no ')' after the command name")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseStatus returns VmRSS and VmHWM, in KiB, from the text of
// /proc/PID/status.
func parseStatus(s string) (rss, hwm int64, err error) {
	found := 0
	for line := range strings.Lines(s) {
		name, val, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("status: %s: unexpected %q", name, strings.TrimSpace(val))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("status: %s: %w", name, err)
		}
		if name == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("status: VmRSS or VmHWM missing")
	}
	return rss, hwm, nil
}

// parseCPUModel returns the first "model name" of /proc/cpuinfo.
func parseCPUModel(s string) string {
	for line := range strings.Lines(s) {
		if name, val, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(val)
		}
	}
	return "unknown"
}

// memory reads VmRSS and VmHWM of pid ("self" for this process).
func memory(pid string) (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0, err
	}
	return parseStatus(string(b))
}

// childUsage reads the CPU time and memory of another process.
func childUsage(pid int) (usage, error) {
	p := strconv.Itoa(pid)
	b, err := os.ReadFile("/proc/" + p + "/stat")
	if err != nil {
		return usage{}, err
	}
	cpu, err := parseStat(string(b))
	if err != nil {
		return usage{}, err
	}
	rss, hwm, err := memory(p)
	return usage{cpu: cpu, rssKiB: rss, hwmKiB: hwm}, err
}

// selfUsage reads this process's CPU time, from getrusage (microsecond
// resolution, unlike /proc's ticks), and its memory.
func selfUsage() (usage, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return usage{}, fmt.Errorf("getrusage: %w", err)
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	rss, hwm, err := memory("self")
	return usage{cpu: cpu, rssKiB: rss, hwmKiB: hwm}, err
}

// resetSelfPeak gives memory back to the OS and resets this process's
// VmHWM to its current RSS (writing "5" to /proc/self/clear_refs), so that
// the next run's peak is its own and not an earlier run's.
func resetSelfPeak() error {
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS: %w", err)
	}
	return nil
}
