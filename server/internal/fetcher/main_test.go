package fetcher

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: servers,
// response bodies and Fetchers must all be closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
