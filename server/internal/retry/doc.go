// Package retry decides whether and when a failed fetch is tried again:
// which outcomes are transient, exponential backoff with full jitter, and
// the upstream's Retry-After (seconds or an HTTP date), capped by a maximum
// and by the job's deadline.
package retry
