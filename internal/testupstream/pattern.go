package testupstream

import (
	"crypto/sha256"
	"net/http"
	"strconv"
)

// Pattern fills p with the bytes of the pattern body at offset off: the
// same for every request, cheap to make as it is sent, and not periodic in
// any chunk size, so that a piece out of place changes the digest.
func Pattern(off int64, p []byte) {
	for i := range p {
		x := uint64(off) + uint64(i)
		p[i] = byte(x ^ x>>8 ^ x>>17)
	}
}

// PatternBytes returns the first n bytes of the pattern body.
func PatternBytes(n int) []byte {
	b := make([]byte, n)
	Pattern(0, b)
	return b
}

// PatternSum returns the SHA-256 of the first n bytes of the pattern body.
func PatternSum(n int64) [32]byte {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for off := int64(0); off < n; off += int64(len(buf)) {
		p := buf[:min(int64(len(buf)), n-off)]
		Pattern(off, p)
		h.Write(p)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// servePattern sends n bytes of the pattern body, made as they are sent in
// 32 KiB writes and never held whole, with a Content-Length unless chunked.
// It counts the bytes written and the bodies cut short by a failed write
// (the client went away).
func (u *Upstream) servePattern(w http.ResponseWriter, n int64, chunked bool) {
	w.Header().Set("Content-Type", "application/octet-stream")
	if !chunked {
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	}
	buf := make([]byte, 32<<10)
	for off := int64(0); off < n; {
		p := buf[:min(int64(len(buf)), n-off)]
		Pattern(off, p)
		if _, err := w.Write(p); err != nil {
			u.cut.Add(1)
			return
		}
		if chunked {
			w.(http.Flusher).Flush() // a chunk per write
		}
		u.written.Add(int64(len(p)))
		off += int64(len(p))
	}
}

// Written returns the pattern body bytes written so far (pattern=).
func (u *Upstream) Written() int64 { return u.written.Load() }

// Cut returns how many pattern bodies were cut short because the client
// went away.
func (u *Upstream) Cut() int64 { return u.cut.Load() }
