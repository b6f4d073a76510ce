// Package peers counts the fetchd replicas that serve the same callers, by
// looking up a DNS name that has one address per replica (a Kubernetes
// headless Service), so that each replica can take its share of a host's
// limits ([server.Server.SetHostShare]).
//
// A [Watcher] looks the name up once before fetchd serves ([Watcher.Update])
// and then on a period ([Watcher.Run]). The count is the number of distinct
// addresses, at least 1; a failed lookup keeps the last count and logs a
// warning, so that a DNS outage never raises a host's cap.
//
// [server.Server.SetHostShare]: https://pkg.go.dev/github.com/fetchd/fetchd/server#Server.SetHostShare
package peers
