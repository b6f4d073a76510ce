// Package connlimit keeps fetchd's connection slots for callers doing work.
//
// A [Tracker] wraps the gRPC listener ([Tracker.Listen]) and is the gRPC
// server's [stats.Handler], which tells it, per connection, which RPCs are in
// progress. When the connections of one IP address, or of all callers, reach
// their limit, a new connection takes the slot of one that does no work: first
// one that never began an RPC (a handshake never finished, a bare HTTP/2
// preface), else the one whose last work ended longest ago. Only when every
// connection has work in progress is the new one refused, closed at once;
// nobody waits in the kernel's backlog behind idle connections, as they did
// behind [golang.org/x/net/netutil.LimitListener].
//
// The Tracker also closes connections that abuse HTTP/2 the way the rapid
// reset attack (CVE-2023-44487) does: RPCs begun and ended in failure
// (reset by the caller, refused) faster than any caller doing work needs, as
// counted by a token bucket per connection.
//
// [stats.Handler]: https://pkg.go.dev/google.golang.org/grpc/stats#Handler
package connlimit
