package h1

import (
	"net"
	"testing"
)

// BenchmarkPeek measures the check a pooled connection gets before it is
// reused: one non-blocking MSG_PEEK on an idle loopback connection.
func BenchmarkPeek(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if s := <-accepted; s != nil {
		defer s.Close()
	}
	p := newPeeker(c)
	b.ReportAllocs()
	for b.Loop() {
		if !p.idle() {
			b.Fatal("idle() = false on an idle connection")
		}
	}
}
