package recvlimit

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// replayConn is a net.Conn that reads a recorded stream again and again.
type replayConn struct {
	net.Conn // nil: only Read is called
	rec      []byte
	off      int
}

func (r *replayConn) Read(b []byte) (int, error) {
	if r.off == len(r.rec) {
		r.off = 0
	}
	n := copy(b, r.rec[r.off:])
	r.off += n
	return n, nil
}

func (r *replayConn) SetReadDeadline(time.Time) error { return nil }

// BenchmarkRead reads, through the wrapper, a recorded client stream of
// many small job messages (200 bytes each, 100 streams interleaved, about
// 20 per DATA frame, prefixes split across frames) in gRPC's 32 KiB reads,
// against the same reads unwrapped (the copy alone). One op is one 32 KiB
// read: about 160 messages; 0 allocs/op.
func BenchmarkRead(b *testing.B) {
	w := newWire(b)
	var stream []byte
	for range 200 {
		stream = append(stream, msg(200, 200)...)
	}
	const streams = 100
	for id := uint32(1); id < 2*streams; id += 2 {
		w.headers(id, false)
	}
	for off := 0; off < len(stream); off += 4<<10 + 7 { // 100 streams interleaved
		for id := uint32(1); id < 2*streams; id += 2 {
			w.data(id, false, stream[off:min(len(stream), off+4<<10+7)])
		}
	}
	for id := uint32(1); id < 2*streams; id += 2 {
		w.data(id, true)
	}
	rec := w.buf.Bytes()[len(http2.ClientPreface):]
	l := New(Config{})
	wrapped := l.Wrap(&replayConn{rec: rec})
	wrapped.(*conn).p.feed([]byte(http2.ClientPreface)) // once
	for _, bc := range []struct {
		name string
		c    net.Conn
	}{{"unwrapped", &replayConn{rec: rec}}, {"wrapped", wrapped}} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := io.ReadFull(bc.c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
