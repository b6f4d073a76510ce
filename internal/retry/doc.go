// Package retry decides whether and when a failed fetch is tried again:
// which outcomes are transient, exponential backoff with full jitter, and
// the upstream's Retry-After (seconds or an HTTP date), capped by a maximum
// and by the job's deadline.
//
// It is shared by the server, which retries a job's fetch, and the client,
// which resubmits the jobs of a broken stream: both send only [Idempotent]
// methods twice and wait [Policy.Backoff] between attempts.
package retry
