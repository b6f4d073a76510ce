package fetcher

import (
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkIdleConn measures what idleConn adds to every Read (the lock and
// the read deadline), against the baseline of one 4 KiB read, the
// transport's buffer size, from a loopback TCP connection. The added work
// reports its cost as a fraction of the read ("x-read").
func BenchmarkIdleConn(b *testing.B) {
	addr := startRaw(b, func(c net.Conn) { writeForever(c, make([]byte, 64<<10)) })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ic := &idleConn{Conn: c, timeout: 30 * time.Second}
	ic.acquire()
	defer ic.release()

	var readNs float64
	b.Run("read 4 KiB", func(b *testing.B) {
		buf := make([]byte, 4<<10)
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
		readNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("deadline per read", func(b *testing.B) {
		for b.Loop() {
			ic.rearm()
		}
		if readNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/readNs, "x-read")
		}
	})
}
