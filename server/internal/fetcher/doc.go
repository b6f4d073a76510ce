// Package fetcher turns one fetch.v1 job into one HTTP exchange and its
// result.
//
// [Validate] checks a [fetchv1.FetchRequest] against the server's limits and
// builds a [Job]; a job that fails validation never reaches the network.
// [Fetcher.Fetch] performs the job through an [net/http.Client] whose
// transport sends plain-http requests through the lean HTTP/1.1 engine of
// package h1 ([EngineLean], the default) and everything else (https, HTTP/2)
// through one shared, tuned [net/http.Transport]; both engines meet the
// same tests. The URL of the job and of every redirect passes the
// [egress.Policy] host and port checks before any name is resolved, and
// every connection passes its address check at dial time. Against hostile
// upstreams, a job is bounded by its timeout, by an idle-read deadline on
// its connection ([Config.IdleReadTimeout]), by a cap on the response
// header, and by a cap on the decoded body, which is read through the cap
// and reported truncated. Failures become an [Error] with a
// [fetchv1.ErrorCode], see [Classify]; with [Config.HideAddresses] their
// messages name no resolved address, and a name that does not resolve is
// refused like a blocked address, with [HiddenRefusal]. [LoadRootCAs]
// builds a root pool that trusts an internal CA besides the system roots.
//
// Both engines give a caller the same result from the same upstream (net/http
// is held to the lean engine's rules by a thin wrapper): an unsolicited 101
// is ERROR_CODE_BAD_RESPONSE, fetchd never asks for an upgrade; a body is
// decoded only when its Content-Encoding is exactly one "gzip", any other
// ("gzip, gzip", two Content-Encoding fields, br) is returned as received
// with its headers; a gzip body whose framing is complete but whose gzip is
// broken or ends early is ERROR_CODE_BAD_RESPONSE, one the connection cuts
// short is ERROR_CODE_CONNECTION_FAILURE; an upstream that answers a large
// upload early (401, 413) gives that answer at once, not the reset if it
// closes, nor the job timeout if it neither closes nor reads on.
package fetcher
