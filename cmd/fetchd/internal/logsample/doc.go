// Package logsample rate-limits log lines so that callers cannot flood a
// log: a [Handler] wraps a [log/slog.Handler] and passes each kind of line
// (its level and message) through a token bucket. Lines over the bucket are
// counted, not written, and the count comes out as one line per kind and
// interval: msg "suppressed log lines", like=<the message>, count=N.
//
// Give it to the loggers of lines that callers cause, one per call or per
// connection; a service's own lines (startup, shutdown) need none.
package logsample
