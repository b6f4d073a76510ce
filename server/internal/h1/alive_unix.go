//go:build unix

package h1

import (
	"syscall"
)

// peeker checks, without blocking and without consuming anything, whether
// a pooled connection has something to read: an upstream that closed it
// (EOF, or a reset), or bytes it sent unasked. net/http learns the same
// from the read it keeps pending on every idle connection; this costs one
// system call when the connection is taken from the pool instead.
type peeker struct {
	rc    syscall.RawConn
	fn    func(fd uintptr) bool // kept, so that a check allocates nothing
	quiet bool                  // result of the last check: nothing to read
	buf   [1]byte
}

func newPeeker(c any) *peeker {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &peeker{rc: rc}
	p.fn = func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		p.quiet = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait
	}
	return p
}

// idle reports whether the connection has nothing to read, which is what
// a connection fit for a new request looks like.
func (p *peeker) idle() bool {
	if p == nil {
		return true
	}
	if err := p.rc.Read(p.fn); err != nil {
		return false
	}
	return p.quiet
}
