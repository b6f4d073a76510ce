// Package httpapi serves fetch.v1 FetchService.FetchBatch over plain
// HTTP/1.1 and HTTP/2 with JSON, for callers without a gRPC stack (a shell
// script with curl, a serverless function).
//
// # Wire format
//
// A call is POST [Path] whose body is a protobuf-JSON
// fetch.v1.FetchBatchRequest, exactly what grpcurl takes:
// {"jobs":[{"url":"..."}],"options":{...}}. The body is read as JSON
// whatever its Content-Type among none, application/json and
// application/x-www-form-urlencoded (what curl -d sends); any other type, or
// a Content-Encoding, is refused with 415. Other methods get 405, other
// paths 404.
//
// The answer is 200 with Content-Type [ContentTypeNDJSON]: one
// protobuf-JSON fetch.v1.FetchResponse per line, written and flushed as
// each job finishes, in completion order; a per-job error is that job's
// line, with its "error" field. A call that fails before its first result
// (authentication, rate limit, a body that is not JSON or over
// [Config.MaxRequestBytes]) gets instead a google.rpc.Status JSON object,
// {"code":16,"message":"..."}, code as gRPC's, under the HTTP status
// grpc-gateway gives that code ([HTTPStatus]: 401, 403, 400, 429, 503...),
// and 413 for a body over the limit. A call that fails after its first
// result ends with a last line {"status":{"code":..,"message":..}}: a
// FetchResponse has no "status" field, so a reader tells that line apart
// by its one key. The trailer gRPC would send (fetchd-unstarted on drain)
// comes as headers before the first result, or as "trailer" beside that
// last line's status. A caller who disconnects cancels the call's context,
// and so its jobs.
//
// # The same call as gRPC's
//
// A [Handler] runs the service's own FetchBatch stream handler, the one
// [server.Server.Register] registers, under the same
// [grpc.StreamServerInterceptor] chain as the gRPC port (metrics, logging,
// auth, rate limit, recovery, drain tracking), over a [grpc.ServerStream]
// made of the HTTP exchange: its context carries the peer (from
// RemoteAddr, and the TLS state) and the incoming metadata (authorization,
// from the Authorization header), so a caller is the same caller, with the
// same token identity, rate bucket and memory share, on both ports. The
// handler's RecvMsg reads the body, which is therefore read only after
// authentication and the rate limit have let the call through, and after
// the call took its -batch-memory share.
//
// # Why not a library
//
// The issue asked for grpc-gateway, connect-go or vanguard where one
// serves; none gives plain NDJSON of FetchResponse over the server's own
// handler:
//
//   - grpc-gateway v2 (runtime/handler.go, ForwardResponseStream, checked in
//     v2.31.0) wraps every streamed message as {"result":...} and errors as
//     {"error":...}, needs generated gateway code and HTTP rules, and its
//     in-process registration (RegisterXHandlerServer) refuses streaming
//     calls ("streaming calls are not yet supported in the in-process
//     transport"): it would have to dial fetchd's own gRPC port, and every
//     HTTP caller would then be the loopback address to the rate limit and
//     the memory shares.
//   - vanguard v0.4.0 transcodes REST to the gRPC handler in process, but
//     needs google.api.http rules (no Buf registry here; rules could be
//     given by WithRules) and accepts a server-streaming REST call only when
//     the response is google.api.HttpBody (protocol_rest.go,
//     acceptsStreamType).
//   - connect-go's server streaming is enveloped (a 5-byte prefix before
//     each message, application/connect+json), which curl cannot read as
//     lines, and it would be a second implementation of the service.
//
// So this package is a small handler over protojson and the gRPC types
// fetchd already has.
package httpapi
