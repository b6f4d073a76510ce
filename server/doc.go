// Package server implements fetch.v1 FetchService: it takes fetch jobs from
// gRPC streams, fetches them over HTTP through one bounded worker pool shared
// by every stream, and streams back one result per job as soon as that job
// finishes.
//
// # Bounds
//
// A server is configured by a [Config], whose zero value is the default
// server ([NewFromConfig]), or by [Option] values over it ([New]).
//
// At no moment do more than the pool size ([Config.Concurrency]) fetches run,
// across all streams. The pool is a FIFO [semaphore.Weighted]; each stream
// has at most one job waiting on it at a time, so streams take turns and one
// caller's huge stream cannot starve another's small one. A stream may ask
// for a lower limit for itself (StreamOptions.concurrency).
//
// Each stream queues the jobs it has read per host, in lanes: one goroutine
// per lane starts the lane's jobs in the order they were read, as the host's
// cap ([WithHostConcurrency], shared by all streams), its rate
// ([WithHostRate]) and any pause it asked for (Retry-After) allow, and as
// the stream's own lower cap and rate for the host
// (StreamOptions.host_concurrency and host_rate) do. A job waiting for a busy
// host holds no worker and does not hold up the stream's jobs for other
// hosts. A stream holds at most [WithStreamQueue] jobs read and not started
// (cheap: no goroutine, no result yet) and at most [WithStreamWindow] jobs
// started and not yet sent back (in flight, or results waiting for a slow
// reader). When either is full the stream stops reading jobs, and HTTP/2
// flow control slows the caller down: a caller that streams millions of
// jobs, or reads its results slowly, costs bounded memory.
//
// A result's body is capped at [Config.MaxBodyBytes] (or the stream's lower
// max_body_bytes). A stream that asks for discard_body gets no bodies: each
// is read through a small fixed buffer, counted (body_length) and, with
// digest, hashed (body_sha256) as it is read, up to [Config.MaxDiscardBytes],
// so that discarding a body of any size costs no memory for it. A stream
// that asks for chunk_bytes gets a body longer than a chunk in chunk
// messages before its result, up to [Config.MaxStreamBodyBytes]: each fetch
// reads through one buffer of a chunk, and reads the next chunk only once
// the sender has sent the last, so that a slow caller holds up the upstream
// (by flow control) rather than memory, and chunks of many jobs take turns
// on the stream with the other results.
//
// Memory is bounded in bytes by two budgets for the whole server, each of
// which one caller ([Config.Caller]) may hold at most half of. Body bytes
// beyond each body's first 64 KiB, of bodies being read, chunks on their
// way and results not yet sent, come from [Config.BodyMemory]: a fetch
// takes, in one step, all its body may still need, and waits, reading
// nothing, while its share or the budget is short; a result gives its part
// back once sent. Jobs held, from the moment they are read until their
// result is handed to the sender, come from [Config.JobMemory]: a stream
// whose next job does not fit stops reading, and HTTP/2 flow control holds
// its caller. A FetchBatch request is decoded one job at a time as its
// stream reads them. Every wait takes one amount in one step, from the
// caller's share and then the budget, so no cycle of waits can form.
//
// # Goroutines
//
// Per stream, one goroutine receives jobs, one per busy lane starts them,
// one per started job fetches it, and the handler goroutine alone calls
// Send. Workers hand results (and chunks) over a channel with room for the
// whole window, so a worker never blocks on a slow caller with a result;
// only a worker streaming a body waits, for its last chunk to be sent. The handler returns only after
// every goroutine it started has finished. A panic in a worker becomes that
// job's ERROR_CODE_INTERNAL result. When the caller cancels or disconnects,
// every in-flight fetch of the stream is cancelled at once.
//
// # Retries and dedup
//
// A job is retried per its RetryPolicy (default [WithRetryAttempts]) after a
// connection failure, a timeout, or a 429, 502, 503 or 504, with backoff and
// jitter, honouring Retry-After; while it backs off it holds no worker and
// no slot of any cap. A 429 or 503 with Retry-After pauses its host. A retry
// is not a new start: it does not go back through its lane, whose order is
// that of the jobs' first attempts. After its backoff the job's worker waits
// again, itself, at the same limits in the same order as a lane (the
// stream's and the server's cap for the host, the host's pause and rates,
// the stream's concurrency, the pool), beside its lane's next job rather
// than behind every job still queued in the lane. Identical GET and HEAD
// jobs of one caller ([Config.Caller]) in flight at once share one fetch
// ([WithDedup]; [Config.DedupAcrossCallers] lets callers share too). Each
// keeps its own deadline, counted from when the shared fetch started: a
// follower whose timeout passes first gets its own TIMEOUT, and one whose
// leader timed out or was cancelled earlier than the follower's deadline
// fetches for itself with the time it has left.
//
// # Draining
//
// [Server.Drain] makes every stream stop reading jobs. Every job a stream has
// already read, started or still queued (behind a host's cap, say), is
// fetched and answered; the drain's deadline is the caller's to enforce, by
// stopping the gRPC server. A stream whose caller had half-closed, and whose
// jobs all got results, then ends OK. A stream that may still have had unread
// jobs ends with codes.Unavailable and the [TrailerUnstarted] trailer: the
// jobs without a result were never read, so never started, and may be
// resubmitted elsewhere. The trailer is set only when that holds for every
// job without a result.
//
// # Egress
//
// Every connection passes an egress policy at dial time, after DNS and
// before connect: loopback, private, link-local and the other special-purpose
// ranges are refused (ERROR_CODE_BLOCKED) unless opened with
// [WithAllowCIDRs]. A refusal's message names the address and the range
// that refused it; with [Config.HideAddresses] no result's message names a
// resolved address, and a name that does not resolve is refused alike, so
// that callers cannot probe internal names; the details go to the log.
package server

// Where the code is, by role:
//
//	server.go    the Server: New, NewFromConfig, Register, Drain, Close, the RPC handlers
//	config.go    Config: every setting once, with its default
//	resolve.go   a Config validated and resolved into the options streams read
//	options.go   the With... options, thin wrappers of Config's fields
//	decode.go    job messages decoded one by one, a bad string a per-job error
//	stream.go    one stream's lifecycle: serve (the sender), drain, end, deliver
//	receive.go   the receiver: reading, validating and queueing jobs
//	lane.go      a lane: one host's queue in a stream, and its goroutine
//	permit.go    what one fetch holds, taken and released as one permit
//	attempts.go  a job's attempts: fetch, back off, retry
//	dedup.go     identical jobs in flight sharing one fetch, and their key
//	chunks.go    messages for the sender, and a job's streamed body on its way
//	budget.go    the body and job memory budgets, and each caller's share
//	runner.go    warm goroutines for fetch workers
//	metrics.go   the Prometheus metrics ([WithMetrics])
//	compress.go  the gzip codec, registered on purpose
//
// The per-host limiter is server/internal/hostlimit: the server keeps one
// registry of hosts shared by all streams, a stream with lower per-host
// limits of its own a second one. [Server.SetHostShare] divides the shared
// registry's limits by the number of replicas serving the same callers.
