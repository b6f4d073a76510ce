package fetcher

import (
	"crypto/sha256"
	"hash"
	"io"
	"sync"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// discardBufSize is the size of the buffer a discarded body is read
// through: the most of it ever held.
const discardBufSize = 32 << 10

// discardBufs holds the buffers discarded bodies are read through.
var discardBufs = sync.Pool{New: func() any { return new([discardBufSize]byte) }}

// readBody reads the response body r into result per job: the body itself
// (capped at job.MaxBody), or with job.Discard only its count (capped the
// same way, job.MaxBody then being the discard cap), and with job.Digest
// the SHA-256 of the bytes counted, computed as they are read.
// body_length, body_sha256 and truncated are set even when the read fails
// part way: they then describe the bytes read before the failure.
func readBody(r io.Reader, contentLength int64, job *Job, result *fetchv1.FetchResponse) error {
	var h hash.Hash
	if job.Digest {
		h = sha256.New()
	}
	var (
		n         int64
		truncated bool
		err       error
	)
	if job.Discard {
		n, truncated, err = readDiscard(r, job.MaxBody, h)
	} else {
		var b []byte
		b, truncated, err = readCapped(r, contentLength, job.MaxBody, h)
		result.Body, n = b, int64(len(b))
	}
	result.BodyLength, result.Truncated = uint64(n), truncated
	if h != nil {
		result.BodySha256 = h.Sum(nil)
	}
	return err
}

// readCapped reads r up to max bytes and reports whether more were there.
// A non-positive max means no cap beyond memory. The buffer grows
// geometrically but never past max+1 bytes: the byte after the cap only
// tells that the body is longer. h, when non-nil, is fed the bytes kept
// as they are read.
func readCapped(r io.Reader, contentLength, max int64, h hash.Hash) ([]byte, bool, error) {
	limit := max
	if limit <= 0 {
		limit = 1<<63 - 2
	}
	size := int64(512)
	if contentLength >= 0 {
		// Trust the upstream's Content-Length only up to 64 KiB: it may lie.
		// +1 so that the read that meets EOF needs no growth.
		size = min(contentLength, 64<<10) + 1
	}
	buf := make([]byte, 0, min(size, limit+1))
	for {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*int64(cap(buf)), limit+1))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):min(int64(cap(buf)), limit+1)])
		if h != nil {
			h.Write(buf[len(buf):min(int64(len(buf)+n), limit)])
		}
		buf = buf[:len(buf)+n]
		switch {
		case int64(len(buf)) > limit:
			return buf[:limit], true, nil
		case err == io.EOF:
			return buf, false, nil
		case err != nil:
			return buf, false, err
		}
	}
}

// readDiscard reads r up to max bytes through a small fixed buffer,
// holding none of it, and returns how many it read and whether more were
// there. A non-positive max means no cap. h, when non-nil, is fed the
// bytes counted as they are read.
func readDiscard(r io.Reader, max int64, h hash.Hash) (int64, bool, error) {
	limit := max
	if limit <= 0 {
		limit = 1<<63 - 2
	}
	bp := discardBufs.Get().(*[discardBufSize]byte)
	defer discardBufs.Put(bp)
	var total int64
	for {
		// Read at most one byte past the cap: it only tells that the body
		// is longer.
		n, err := r.Read(bp[:min(discardBufSize, limit+1-total)])
		keep := min(int64(n), limit-total)
		if h != nil {
			h.Write(bp[:keep])
		}
		total += keep
		switch {
		case int64(n) > keep:
			return total, true, nil
		case err == io.EOF:
			return total, false, nil
		case err != nil:
			return total, false, err
		}
	}
}
