// Package client is the Go API for fetchd: it sends fetch jobs to one or
// more fetchd backends and hands back one result per job.
//
//	c, err := client.New("localhost:50051")
//	...
//	jobs := slices.Values([]*client.Job{client.Get("https://example.com/")})
//	for r, err := range c.Fetch(ctx, jobs) {
//		if err != nil { ... } // the call failed; see below
//		fmt.Println(r.GetIndex(), r.GetStatusCode(), r.GetError())
//	}
//
// # Input
//
// Jobs come from an [iter.Seq], taken lazily: a pipeline can feed millions
// of URLs without building a slice. [slices.Values] adapts a slice, [Chan] a
// channel. A [Job] is the fetch.v1 FetchRequest; [Get] builds the common
// case.
//
// # Ordering
//
// [Client.Fetch] yields results in completion order, each as soon as it
// arrives. [Client.FetchOrdered] yields them in input order. Either way
// Result.Index is the job's position in the input, from 0, and every job
// taken yields exactly one result, never two.
//
// # Stream options
//
// [WithConcurrency], [WithTimeout], [WithMaxBodyBytes], [WithDigest],
// [WithDiscardBody] and [WithChunkBytes] are fetch.v1 StreamOptions: the client sets them on the
// first message of every stream a call opens, reopened streams included, and
// fetchd applies them to all of that stream's jobs. With [WithDigest] every
// result carries Result.BodySha256, the SHA-256 of the body as fetchd read
// it, so a pipeline can dedup and verify without reading the body again;
// with [WithDiscardBody] fetchd reads and counts each body
// (Result.BodyLength) but returns none of it, for link checkers and probes.
// Result.BodyLength is the length of the body read either way.
//
// # Large bodies
//
// fetchd returns a body inline in its result up to its inline cap (3 MiB
// by default) and cuts it there. [WithChunkBytes] asks it to stream longer
// bodies instead, in chunks (fetch.v1 BodyChunk messages before the job's
// result), up to its cap for streamed bodies (1 GiB by default). The chunks
// are never yielded: the client reassembles each body and yields one Result
// with the whole Body and Streamed set, which holds every body in flight in
// memory. [WithBodyWriter] sends each body, streamed or inline, to a
// [BodyWriter] the caller opens per job instead, chunk by chunk as it
// arrives, and yields the results without bodies: memory then stays at the
// window's results plus a chunk per stream, whatever the sizes, and in
// input order a later job's body is written while the head job is still
// slow, only its Result waiting. A writer is finished with the job's result
// before it is yielded, and aborted when its body will not complete. When
// a stream breaks part way through a body, the partial body is discarded
// (its writer aborted) and the job resubmitted, its next attempt starting
// from the first byte, unless its method is not idempotent
// (ERROR_CODE_OUTCOME_UNKNOWN, as for any job in flight). A backend that
// breaks the chunk protocol (chunks out of order, for no job pending, or
// after the job's result) is treated as a broken stream. A failing writer
// fails the call with [ErrBodyWriter].
//
// # Backpressure
//
// A call holds at most [WithWindow] jobs taken from its input and not yet
// handed to the caller. When the window is full the client takes no new
// job: in completion order that happens when the caller reads slowly, in
// input order also when the head job is slow, since later results wait in
// the reorder buffer until it arrives. Memory stays bounded either way;
// the window counts jobs, so with [WithChunkBytes] and no body writer the
// partial bodies of the jobs in flight count on top (see Large bodies).
// fetchd applies its own per-stream window, and HTTP/2 flow control carries
// its pressure back to the client.
//
// # Connecting
//
// A call opens a stream to each backend at its start. When none of them
// opens (fetchd is not running there, the address is wrong, the TLS
// handshake fails, or nothing answers within [WithConnectTimeout], 5s by
// default), the call fails at once: it takes no job from its input, yields
// no result, and its iterator yields one error wrapping [ErrUnreachable]
// (which is also an [ErrUnavailable]); the input is not read before a
// stream opens, so this holds for an empty input too. It does not retry: waiting rarely
// helps when the first connection fails, and a caller that expects fetchd
// to come up can call again. A connection refused on loopback fails in
// milliseconds. With several backends, one whose first stream does not open
// is left out of the call and the others take its share. [New] refuses a
// malformed target ([ErrBadTarget]) without dialling.
//
// # Resubmission
//
// Once a backend has been reached in a call, the client keeps at it: if a
// stream breaks (fetchd restarts, the connection drops, GOAWAY), the
// client reopens it with exponential backoff ([WithBackoff]) and resubmits
// the jobs that have no result yet, under their original indexes. Jobs whose
// method is not idempotent (POST, PATCH) are not resubmitted unless
// [WithResubmitNonIdempotent] says so: they may already have been fetched, so
// they get an ERROR_CODE_OUTCOME_UNKNOWN result. Jobs of a stream that fetchd
// ended by draining were never started and are always resubmitted. A job is
// sent at most [WithMaxAttempts] times; a backend that fails
// [WithRetryBudget] times in a row is given up, and when every backend is
// given up the call yields ERROR_CODE_UNAVAILABLE results for the jobs still
// open and then [ErrUnavailable]. These ERROR_CODE_UNAVAILABLE and
// ERROR_CODE_OUTCOME_UNKNOWN results are set by the client, never by
// fetchd: each is the one result of its job.
//
// # Many backends
//
// The target may name several fetchd replicas: a comma-separated list, or
// "dns:///name:port" (a Kubernetes headless Service, say), each address a
// backend. A call opens one stream per backend and routes every job by its
// URL's host ([WithHostAffinity]): all of a host's jobs go to one backend,
// the first for the host by rendezvous hashing over the live backends, the
// same in every call and client that sees the same backends, so that
// fetchd's per-host cap, rate and pauses hold across replicas and across
// callers, and many hosts spread evenly. Each backend takes only what it can start soon: at most
// twice the host cap it announces (the fetchd-concurrency and
// fetchd-host-concurrency headers of its stream) per host, or, spread,
// twice its pool; the rest waits in the client, and a slow backend holds up
// only its own hosts. When a backend's stream breaks, or it drains, its
// hosts move to their next backend in hash order, each once its jobs in
// flight are answered or resubmitted, so a host is never at two backends of
// a call at once.
//
// A dns:/// target is resolved by gRPC's DNS resolver, and running calls
// follow it: every [WithResolveInterval] (30s; gRPC's resolver looks at
// most every 30s) and when a backend fails, the call asks it to look again;
// a backend that appears joins the calls running, and one that disappears
// takes no new job, moves its hosts and closes its stream once its jobs
// are answered. The client closes a connection to an address no longer
// resolved once no call uses it. An empty resolution keeps the backends.
// [WithResolver] resolves other schemes with any gRPC resolver.
package client
