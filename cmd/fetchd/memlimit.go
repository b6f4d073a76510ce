package main

import (
	"log/slog"
	"runtime/debug"
)

// memLimitBase is what the Go soft memory limit that fetchd sets leaves for
// everything but bodies: goroutines, queued jobs, connections, the runtime.
const memLimitBase = 128 << 20

// setMemoryLimit sets the Go runtime's soft memory limit, unless GOMEMLIMIT
// sets one, to the body memory budget plus memLimitBase: bodies are what
// comes and goes in bulk, their live bytes are bounded by the budget, and the limit makes the collector run
// before their garbage multiplies it (with GOGC's default alone, 200
// unread 3 MiB bodies took fetchd's RSS to 6 x the budget; with the limit,
// 2 x, at the same throughput). A live heap over the limit (a caller
// queueing millions of jobs) is not refused: the runtime then spends at
// most about half the CPU collecting. It returns the limit in force and a
// function that restores the previous one.
func setMemoryLimit(getenv func(string) string, bodyMemory int64, logger *slog.Logger) (int64, func()) {
	if getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1), func() {} // -1 reads it
	}
	limit := bodyMemory + memLimitBase
	prev := debug.SetMemoryLimit(limit)
	logger.Debug("soft memory limit set", "bytes", limit)
	return limit, func() { debug.SetMemoryLimit(prev) }
}
