// Package h1 is a lean HTTP/1.1 client transport for plain-http upstreams.
//
// [Transport] implements [net/http.RoundTripper], so an [net/http.Client]
// drives it, redirects and all, and otelhttp can wrap it. It differs from
// [net/http.Transport] in how it spends CPU, not in what it sends: the
// request is written and the response read on the caller's goroutine, over
// a connection the caller owns until the body is read or closed, where
// net/http hands every request to a read goroutine and a write goroutine per
// connection. Only a request body too large to go out with its head in one
// write (more than the 4 KiB write buffer holds) is written on a goroutine
// of its own, which the round trip starts and waits for before it returns,
// while the caller's goroutine reads the response head. The wire codecs
// are the standard library's: the response head and body framing
// (Content-Length, chunked, read to close) come from
// [net/http.ReadResponse].
//
// What it does:
//   - connections are pooled per host and port, most recently used first,
//     closed after [Transport.IdleConnTimeout] idle;
//   - a request is bounded by its context: cancelling it, or its deadline,
//     aborts the dial, the write or the read at once;
//   - [Transport.IdleReadTimeout] fails a request whose upstream sends no
//     byte for that long, however long its context allows;
//   - the response head is capped at [Transport.MaxResponseHeaderBytes];
//   - gzip is asked for and decoded, as net/http does, unless the request
//     sets Accept-Encoding or Range or is a HEAD; only a body with exactly
//     one Content-Encoding, "gzip", is decoded ([Gzipped]): "gzip, gzip"
//     or two Content-Encoding fields are returned as received, headers
//     kept, where net/http would take one layer off two fields;
//   - a request body the upstream stops reading, because it answered early
//     (a 401 or 413 to a large upload), does not hide that answer, as in
//     net/http: if the upstream closes, the answer already received is
//     read and returned after the reset or broken pipe of the write; if it
//     neither closes nor reads on, the answer read beside the write ends
//     the write (a past write deadline) and is returned at once, instead of
//     the write waiting on flow control until the context ends, and the
//     connection, its request cut short, is not reused.
//     ResponseHeaderTimeout and IdleReadTimeout start once the body is
//     written, as for a small one;
//   - a response that breaks HTTP (a head that does not parse or is over
//     the cap, too many 1xx, an unsolicited 101, framing or gzip that does
//     not parse) fails with an error wrapping [ErrBadResponse]; a failed
//     connection does not;
//   - a connection taken from the pool is checked first, with a
//     non-blocking MSG_PEEK, for an upstream that closed it or sent bytes
//     unasked, and closed if so: one system call where net/http keeps a
//     read pending on every idle connection. A replayable request skips
//     the check on a connection idle for less than a millisecond, as under
//     load;
//   - a replayable request (GET, HEAD, OPTIONS, TRACE, or one with an
//     Idempotency-Key) that still meets a dead pooled connection before any
//     byte of response is retried once on a new connection; other requests
//     only reuse connections idle for less than a second, so that the race
//     with an upstream's idle timeout is unlikely.
//
// What it does not do, and [Transport.RoundTrip] refuses with
// [ErrUnsupported] so that the caller can use net/http instead: https,
// HTTP/2, proxies, Expect: 100-continue, request bodies of unknown length,
// and protocol upgrades (a 101 it did not ask for is an [ErrBadResponse]).
package h1
