// Package hosts keeps what fetchd shares per upstream host across all
// streams: a cap on fetches in flight to the host, an optional request rate
// (a token bucket, [rate.Limiter]), and a pause set when the host asks for
// one (a 429 or 503 with Retry-After).
//
// A [Registry] hands out [Host] values by name and forgets a host when no
// one holds it, so its memory is bounded by the hosts in use.
package hosts
