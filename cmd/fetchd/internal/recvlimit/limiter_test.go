package recvlimit

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pipe is one connection to a Limiter: the client's end, and the server's
// end wrapped by the Limiter.
type pipe struct {
	client net.Conn
	server net.Conn
}

func newPipe(tb testing.TB, l *Limiter) *pipe {
	tb.Helper()
	c, s := net.Pipe()
	p := &pipe{client: c, server: l.Wrap(s)}
	tb.Cleanup(func() {
		p.client.Close()
		p.server.Close()
	})
	return p
}

// send writes b from the client and reads it on the server's end, as
// gRPC's reader would; it returns the server's read error.
func (p *pipe) send(tb testing.TB, b []byte) error {
	tb.Helper()
	var wg sync.WaitGroup
	wg.Go(func() { p.client.Write(b) })
	_, err := io.ReadFull(p.server, make([]byte, len(b)))
	if err != nil {
		p.client.Close() // the writer may wait on a closed server end
	}
	wg.Wait()
	return err
}

// unfinished returns a connection's first bytes with one stream's message
// of n+1 bytes unfinished after n.
func unfinished(tb testing.TB, n int) []byte {
	tb.Helper()
	w := newWire(tb).headers(1, false)
	for sent, first := 0, true; sent < n || first; first = false {
		k := min(n-sent, 16<<10-5)
		if first {
			w.data(1, false, msg(n+1, k))
		} else {
			w.data(1, false, make([]byte, k))
		}
		sent += k
	}
	return w.buf.Bytes()
}

func TestLimiterClosesLargest(t *testing.T) {
	var log bytes.Buffer
	l := New(Config{Budget: 100 << 10, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	a, b, c := newPipe(t, l), newPipe(t, l), newPipe(t, l)
	for _, s := range []struct {
		p *pipe
		n int
	}{{a, 60 << 10}, {b, 30 << 10}} {
		if err := s.p.send(t, unfinished(t, s.n)); err != nil {
			t.Fatalf("send %d unfinished bytes under the budget: %v", s.n, err)
		}
	}
	if got, want := l.Held(), int64(90<<10); got != want {
		t.Fatalf("Held() = %d, want %d", got, want)
	}
	// c pushes the total over the budget: a, the largest, is closed.
	if err := c.send(t, unfinished(t, 20<<10)); err != nil {
		t.Fatalf("send of the connection that went over the budget: %v, want it untouched", err)
	}
	if got, want := l.Held(), int64(50<<10); got != want {
		t.Errorf("Held() after the close = %d, want %d", got, want)
	}
	if _, err := a.server.Read(make([]byte, 1)); err == nil {
		t.Errorf("Read of the largest connection after the budget = nil error, want it closed")
	}
	// b still works: it finishes its message.
	var last bytes.Buffer
	http2.NewFramer(&last, nil).WriteData(1, false, []byte{0})
	if err := b.send(t, last.Bytes()); err != nil {
		t.Errorf("send on a connection under the budget: %v", err)
	}
	if got, want := l.Held(), int64(20<<10); got != want {
		t.Errorf("Held() after b's message is whole = %d, want %d", got, want)
	}
	if n := strings.Count(log.String(), "level=WARN"); n != 1 {
		t.Errorf("log has %d WARN lines, want 1 (the closed connection):\n%s", n, log.String())
	}
	// A closed connection gives back what it held.
	c.server.Close()
	if got := l.Held(); got != 0 {
		t.Errorf("Held() after every connection closed = %d, want 0", got)
	}
}

func TestLimiterClosesConnections(t *testing.T) {
	tests := []struct {
		name  string
		bytes func(tb testing.TB) []byte
	}{
		{"bytes that make no sense", func(tb testing.TB) []byte {
			return newWire(tb).raw(0, 0x40, 0x01, 0, 0, 0, 0, 0, 1).buf.Bytes()
		}},
		{"too many streams with an unfinished message", func(tb testing.TB) []byte {
			w := newWire(tb)
			for id := uint32(1); id <= 2*5+1; id += 2 {
				w.headers(id, false).data(id, false, msg(10, 1))
			}
			return w.buf.Bytes()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			l := New(Config{MaxStreams: 5, Logger: slog.New(slog.NewTextHandler(&log, nil))})
			p := newPipe(t, l)
			p.send(t, tt.bytes(t))
			if _, err := p.server.Read(make([]byte, 1)); err == nil {
				t.Errorf("Read after %s = nil error, want the connection closed", tt.name)
			}
			if !strings.Contains(log.String(), tt.name) {
				t.Errorf("log = %q, want a line about %s", log.String(), tt.name)
			}
		})
	}
}

// TestLimiterWholeMessagesNotCounted: thousands of whole messages, split
// across frames anyhow, never add up: a budget of one message holds them.
func TestLimiterWholeMessagesNotCounted(t *testing.T) {
	l := New(Config{Budget: 1 << 10})
	p := newPipe(t, l)
	w := newWire(t).headers(1, false)
	var stream []byte
	for range 5000 {
		stream = append(stream, msg(200, 200)...)
	}
	for len(stream) > 0 { // frames of 999 bytes: prefixes split anywhere
		n := min(len(stream), 999)
		w.data(1, false, stream[:n])
		stream = stream[n:]
	}
	if err := p.send(t, w.buf.Bytes()); err != nil {
		t.Fatalf("send of 5000 whole messages: %v, want the connection untouched", err)
	}
	if got := l.Held(); got != 0 {
		t.Errorf("Held() after whole messages = %d, want 0", got)
	}
}
