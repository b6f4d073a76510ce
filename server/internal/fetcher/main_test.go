package fetcher

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: servers,
// response bodies and Fetchers must all be closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// netHTTP runs every test with EngineNetHTTP, which the Makefile does on a
// second pass, so that both engines meet every test.
var netHTTP = flag.Bool("nethttp", false, "test with EngineNetHTTP instead of the default EngineLean")
