// Package engines measures HTTP/1.1 client engines side by side for
// fetchd's fetcher: net/http, tuned as fetchd tunes it, against
// valyala/fasthttp's client, on the same loopback upstream and load.
//
// It is its own module so that fasthttp never enters fetchd's. Run it with
//
//	cd bench/engines && go test -run NONE -bench . -benchtime 50000x -count 3
//
// or with make bench-engines, which first runs BenchmarkTransport of
// fetchd's own lean engine (server/internal/h1) against net/http the same
// way.
//
// The upstream runs in the same process and costs both engines the same,
// so the difference in ns/op is the difference between the engines.
package engines
