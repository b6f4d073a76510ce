// Package testupstream is an HTTP upstream for fetchd's tests and
// benchmarks: an [httptest.Server] on loopback whose responses are shaped by
// the query string, and which counts what it sees (requests, peak
// concurrency, requests whose context ended before the reply).
//
// Query parameters, combinable:
//
//	delay=300ms   wait this long before answering
//	hang=1        never answer; wait until the request is cancelled
//	status=404    answer with this status (default 200)
//	size=1024     send a body of this many bytes (default: "ok\n")
//	pattern=N     send N bytes of the [Pattern] body, made as they are
//	              sent (any size, never held), and count them ([Upstream.Written])
//	chunked=1     with pattern: chunked, without a Content-Length
//	fail=2        fail the first 2 requests for this exact URL, with
//	failstatus=429  this status (default 503) and
//	retryafter=1    this Retry-After header
//	tag=a         count the request under this tag
//
// [StartRaw] serves raw TCP instead, for upstreams that misbehave below
// HTTP: hand-written bytes, drips, stalls, closed connections.
package testupstream
