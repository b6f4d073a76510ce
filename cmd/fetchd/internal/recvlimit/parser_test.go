package recvlimit

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

// wire builds a client's HTTP/2 bytes with x/net/http2's Framer.
type wire struct {
	buf bytes.Buffer
	fr  *http2.Framer
}

func newWire(tb testing.TB) *wire {
	tb.Helper()
	w := &wire{}
	w.buf.WriteString(http2.ClientPreface)
	w.fr = http2.NewFramer(&w.buf, nil)
	w.fr.AllowIllegalWrites = true
	if err := w.fr.WriteSettings(); err != nil {
		tb.Fatal(err)
	}
	return w
}

// msg returns a gRPC message prefix of length n followed by body bytes of
// the message (at most n).
func msg(n, body int) []byte {
	b := make([]byte, 5+body)
	binary.BigEndian.PutUint32(b[1:], uint32(n))
	return b
}

func (w *wire) headers(id uint32, end bool) *wire {
	w.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: []byte{0x83}, EndHeaders: true, EndStream: end})
	return w
}

func (w *wire) data(id uint32, end bool, b ...[]byte) *wire {
	w.fr.WriteData(id, end, bytes.Join(b, nil))
	return w
}

func (w *wire) padded(id uint32, b []byte, pad int) *wire {
	w.fr.WriteDataPadded(id, false, b, make([]byte, pad))
	return w
}

func (w *wire) rst(id uint32) *wire {
	w.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	return w
}

func (w *wire) raw(b ...byte) *wire {
	w.buf.Write(b)
	return w
}

func TestParser(t *testing.T) {
	tests := []struct {
		name    string
		wire    func(w *wire) *wire
		want    int64 // held at the end
		streams int   // streams with an unfinished message at the end
	}{
		{"16 KiB frame", func(w *wire) *wire {
			return w.headers(1, false).data(1, false, msg(1<<20, 16<<10-5))
		}, 16<<10 - 5, 1},
		{"whole message", func(w *wire) *wire { return w.headers(1, false).data(1, false, msg(10, 10)) }, 0, 0},
		{"unfinished message", func(w *wire) *wire { return w.headers(1, false).data(1, false, msg(100, 40)) }, 40, 1},
		{"empty message", func(w *wire) *wire { return w.headers(1, false).data(1, false, msg(0, 0)) }, 0, 0},
		{"prefix split across frames", func(w *wire) *wire {
			p := msg(16, 10)
			return w.headers(1, false).data(1, false, p[:3]).data(1, false, p[3:])
		}, 10, 1},
		{"prefix alone", func(w *wire) *wire { return w.headers(1, false).data(1, false, msg(16, 0)[:4]) }, 0, 1},
		{"padding not counted", func(w *wire) *wire { return w.headers(1, false).padded(1, msg(100, 30), 200) }, 30, 1},
		{"padded whole message then unfinished", func(w *wire) *wire {
			return w.headers(1, false).padded(1, append(msg(5, 5), msg(50, 7)...), 3)
		}, 7, 1},
		{"END_STREAM on DATA forgets", func(w *wire) *wire { return w.headers(1, false).data(1, true, msg(100, 40)) }, 0, 0},
		{"END_STREAM on HEADERS forgets", func(w *wire) *wire {
			return w.headers(1, false).data(1, false, msg(100, 40)).headers(1, true)
		}, 0, 0},
		{"RST_STREAM forgets", func(w *wire) *wire { return w.headers(1, false).data(1, false, msg(100, 40)).rst(1) }, 0, 0},
		{"RST_STREAM of another stream", func(w *wire) *wire { return w.headers(1, false).data(1, false, msg(100, 40)).rst(3) }, 40, 1},
		{"two streams interleaved", func(w *wire) *wire {
			m3 := msg(60, 60)
			return w.headers(1, false).headers(3, false).
				data(1, false, msg(1000, 100)).data(3, false, m3[:55]).
				data(1, false, make([]byte, 50)).data(3, false, m3[55:])
		}, 150, 1},
		{"several messages per frame", func(w *wire) *wire {
			return w.headers(1, false).data(1, false, msg(3, 3), msg(0, 0), msg(7, 7), msg(9, 3))
		}, 3, 1},
		{"message over several frames", func(w *wire) *wire {
			return w.headers(1, false).data(1, false, msg(1000, 250)).
				data(1, false, make([]byte, 250)).data(1, false, make([]byte, 250))
		}, 750, 1},
		{"message over several frames, finished", func(w *wire) *wire {
			return w.headers(1, false).data(1, false, msg(1000, 250)).
				data(1, false, make([]byte, 250)).data(1, false, make([]byte, 250)).
				data(1, false, make([]byte, 250), msg(4, 1))
		}, 1, 1},
		{"frame over 16 KiB stops tracking", func(w *wire) *wire {
			return w.headers(1, false).data(1, false, msg(100, 40)).raw(0, 0x40, 0x01, 0, 0, 0, 0, 0, 3)
		}, 0, 0},
		{"padding longer than the frame stops tracking", func(w *wire) *wire {
			return w.headers(1, false).data(1, false, msg(100, 40)).raw(0, 0, 2, 0, flagPadded, 0, 0, 0, 1, 5, 0)
		}, 0, 0},
		{"DATA on stream 0 stops tracking", func(w *wire) *wire {
			return w.headers(1, false).data(1, false, msg(100, 40)).raw(0, 0, 1, 0, 0, 0, 0, 0, 0, 0)
		}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.wire(newWire(t)).buf.Bytes()
			for _, chunk := range []int{1, 2, 5, 9, 13, len(b)} {
				var p parser
				for rest := b; len(rest) > 0; {
					n := min(chunk, len(rest))
					p.feed(rest[:n])
					rest = rest[n:]
					if p.held < 0 {
						t.Fatalf("fed in chunks of %d: held %d, want >= 0", chunk, p.held)
					}
				}
				if broken := strings.Contains(tt.name, "stops tracking"); p.broken() != broken {
					t.Errorf("fed in chunks of %d: broken %v, want %v", chunk, p.broken(), broken)
				}
				if p.held != tt.want || p.unfinished() != tt.streams {
					t.Errorf("fed in chunks of %d: held %d with %d streams unfinished, want %d with %d", chunk, p.held, p.unfinished(), tt.want, tt.streams)
				}
			}
		})
	}
}

// FuzzParser: random bytes after the preface never panic nor make the
// count negative, and the count is the sum of the streams' messages.
func FuzzParser(f *testing.F) {
	f.Add(newWire(f).headers(1, false).data(1, false, msg(100, 40)).buf.Bytes()[len(http2.ClientPreface):])
	f.Add(newWire(f).headers(1, false).padded(1, msg(100, 30), 20).rst(1).buf.Bytes()[len(http2.ClientPreface):])
	f.Add([]byte{0, 0, 5, 0, flagPadded | flagEndStream, 0, 0, 0, 1, 4, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p parser
		p.feed([]byte(http2.ClientPreface))
		for len(b) > 0 {
			n := min(len(b), 1+int(b[0])%17)
			p.feed(b[:n])
			b = b[n:]
			var sum int64
			for _, m := range p.streams {
				sum += int64(m.got)
			}
			if p.inData {
				sum += int64(p.cur.got)
			}
			if p.held < 0 || p.held != sum {
				t.Fatalf("held %d, want the streams' sum %d (>= 0)", p.held, sum)
			}
		}
	})
}
