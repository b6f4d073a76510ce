package testmem

import "testing"

var sink []byte

func TestMeasure(t *testing.T) {
	u := Measure(func() { sink = make([]byte, 8<<20) })
	if u.Allocated < 8<<20 {
		t.Errorf("Measure(8 MiB allocation).Allocated = %.1f MiB, want at least 8", MiB(u.Allocated))
	}
	sink = nil
}
