// Package callerlimit limits the rate of gRPC calls per caller, for
// go-grpc-middleware's ratelimit interceptor.
//
// A caller is the identity set by authentication ([tokenauth.Caller]) or,
// without it, the peer's IP address. Each caller has its own token bucket
// ([rate.Limiter]); buckets idle for long are dropped, so the memory is
// bounded by the callers active recently.
package callerlimit
