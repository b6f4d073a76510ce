package retry

// TrailerUnstarted is the trailer key fetchd sets, with value "true", on a
// stream that ends because the server is draining: every job of that
// stream without a result was never started, so a client may resubmit it
// elsewhere even if its method is not [Idempotent]. The server exports it
// as server.TrailerUnstarted; the client reads it.
const TrailerUnstarted = "fetchd-unstarted"
