package h1_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: servers,
// listeners, response bodies and idle connections must all be closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
