//go:build !unix

package h1

// peeker is a no-op where MSG_PEEK is not available: a pooled connection
// the upstream closed is then found by the request that uses it (see
// Transport.RoundTrip's retry).
type peeker struct{}

func newPeeker(any) *peeker { return nil }

func (*peeker) idle() bool { return true }
