// Package hostlimit is fetchd's per-host limiter: for each upstream host it
// keeps a cap on fetches in flight to the host, an optional request rate (a
// token bucket, [rate.Limiter]), and a pause set when the host asks for one
// (a 429 or 503 with Retry-After).
//
// A [Registry] hands out [Host] values by name and forgets a host when no
// one holds it and it has no state left worth keeping, so its memory is
// bounded by the hosts in use. The server keeps one Registry shared by all
// streams; a stream that asks for lower per-host limits of its own keeps a
// second one.
//
// [Registry.SetShare] divides a registry's cap and rate by the number of
// replicas that share each host's limits, at run time: a host's cap is a
// gate whose size is read at each start rather than a fixed semaphore.
package hostlimit
