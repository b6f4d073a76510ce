// Package server implements fetch.v1 FetchService: it takes fetch jobs from
// gRPC streams, fetches them over HTTP through one bounded worker pool shared
// by every stream, and streams back one result per job as soon as that job
// finishes.
//
// # Bounds
//
// At no moment do more than the pool size ([WithConcurrency]) fetches run,
// across all streams. The pool is a FIFO [semaphore.Weighted]; each stream
// queues at most one job on it at a time, so streams take turns and one
// caller's huge stream cannot starve another's small one. A stream may ask
// for a lower limit for itself (StreamOptions.concurrency).
//
// Each stream also has a window ([WithStreamWindow]): jobs in flight plus
// results waiting to be sent. When the window is full the stream stops
// reading jobs, and HTTP/2 flow control slows the caller down; a caller that
// streams millions of jobs, or reads its results slowly, costs bounded
// memory: about window × body cap at worst.
//
// # Goroutines
//
// Per stream, one goroutine receives jobs and starts a worker goroutine per
// job once it holds a pool slot; the handler goroutine alone calls Send.
// Workers hand results over a channel with room for the whole window, so a
// worker never blocks on a slow caller. The handler returns only after every
// worker it started has finished. A panic in a worker becomes that job's
// ERROR_CODE_INTERNAL result. When the caller cancels or disconnects, every
// in-flight fetch of the stream is cancelled at once.
//
// # Draining
//
// [Server.Drain] makes every stream stop reading new jobs, finish the jobs it
// has started, send their results, and end with codes.Unavailable; jobs that
// got no result were never started and may be resubmitted elsewhere.
//
// # Egress
//
// Every connection passes an egress policy at dial time, after DNS and
// before connect: loopback, private, link-local and the other special-purpose
// ranges are refused (ERROR_CODE_BLOCKED) unless opened with
// [WithAllowCIDRs].
package server
