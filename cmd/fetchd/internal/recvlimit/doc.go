// Package recvlimit bounds the request bytes gRPC holds in unfinished
// messages, across all of a server's connections.
//
// grpc-go reads a request message's bytes as they arrive and holds them
// until the message is whole; nothing counts them until then. A caller can
// open -max-concurrent-streams streams per connection and send all but the
// last byte of a -max-recv-msg-bytes message on each.
//
// A [Limiter] wraps the server's transport credentials ([Limiter.Credentials]):
// the connection each handshake returns (after TLS, if any) is watched as it
// is read. Its HTTP/2 frames are followed, cheaply, one header per frame, and
// in each stream's DATA the gRPC message framing (a 5-byte prefix with the
// length, then the message): the bytes received of each message not yet
// whole are that connection's unfinished bytes. When their sum over the
// connections goes over the budget, the Limiter closes the connection that
// holds the most, which makes gRPC drop it and free what it held.
package recvlimit
