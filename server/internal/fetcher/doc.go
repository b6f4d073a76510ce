// Package fetcher turns one fetch.v1 job into one HTTP exchange and its
// result.
//
// [Validate] checks a [fetchv1.FetchRequest] against the server's limits and
// builds a [Job]; a job that fails validation never reaches the network.
// [Fetcher.Fetch] performs the job through one shared, tuned
// [net/http.Transport] whose every connection passes an [egress.Policy] at
// dial time, reads the body through a cap, and fills a
// [fetchv1.FetchResponse]. Failures become an [Error] with a
// [fetchv1.ErrorCode], see [Classify].
package fetcher
