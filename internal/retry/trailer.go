package retry

// TrailerUnstarted is the trailer key fetchd sets, with value "true", on a
// stream that ends because the server is draining: every job of that
// stream without a result was never started, so a client may resubmit it
// elsewhere even if its method is not [Idempotent]. The server exports it
// as server.TrailerUnstarted; the client reads it.
const TrailerUnstarted = "fetchd-unstarted"

// HeaderConcurrency and HeaderHostConcurrency are the header keys fetchd
// sets at the start of every Fetch stream: its pool size and its per-host
// cap (0: none), as decimal numbers. A client that spreads jobs over
// several replicas sends each only what it can start soon: about twice
// these. The server exports them as server.HeaderConcurrency and
// server.HeaderHostConcurrency.
const (
	HeaderConcurrency     = "fetchd-concurrency"
	HeaderHostConcurrency = "fetchd-host-concurrency"
)
