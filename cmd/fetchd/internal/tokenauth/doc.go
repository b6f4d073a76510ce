// Package tokenauth checks gRPC bearer tokens against a set loaded from a
// file, for go-grpc-middleware's auth interceptor.
//
// The file holds one token per line; blank lines and lines starting with #
// are ignored. Tokens are kept as SHA-256 digests and compared in constant
// time. [Tokens.AuthFunc] accepts a call whose "authorization" metadata is
// "Bearer <token>" for a known token and records the caller's identity, a
// short digest of the token, for logs and per-caller rate limits
// ([Caller]).
package tokenauth
