package fetcher

import (
	"context"
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

// FreeBodyBytes is how much of a body a fetch may hold without taking it
// from the [Memory] budget: a body that fits costs no wait, and the budget
// is taken only by bodies that grow past it.
const FreeBodyBytes = 64 << 10

// Memory is the budget of body bytes held at once, shared by every fetch
// (a [golang.org/x/sync/semaphore.Weighted] is one). A fetch takes, in one
// Acquire, all it may hold beyond [FreeBodyBytes] before its buffer grows
// past that, so that no fetch waits holding part of the budget: the budget
// cannot deadlock.
type Memory interface {
	Acquire(ctx context.Context, n int64) error
	Release(n int64)
}

// Sink takes the chunks of a streamed body ([Job.Chunk]) on their way to the
// caller.
type Sink interface {
	// Send hands over data, the body's bytes from offset on, together with
	// reserved bytes of the [Memory] budget that data's buffer holds; the
	// response head is already in result. It blocks until the sink can take
	// another chunk, then gives back a buffer of the same capacity and
	// reservation for the next one. On error (ctx ended, the stream broke)
	// the sink keeps buffer and reservation and frees both itself.
	Send(ctx context.Context, offset int64, data []byte, reserved int64) ([]byte, error)
}

// body reads a response body into a result: whole (capped), in chunks
// through a [Sink], or counted and dropped.
type body struct {
	mem    Memory // nil: no budget
	job    *Job
	result *fetchv1.FetchResponse
	h      hash.Hash // nil unless job.Digest
	held   int64     // budget bytes held for the buffer in hand
}

// readBody reads the response body r into result per job: the body itself
// (capped at job.MaxBody); with job.Chunk, a body longer than one chunk in
// chunks through job.Sink; with job.Discard only its count. With
// job.Digest it sets the SHA-256 of the bytes counted, computed as they are
// read. body_length, body_sha256 and truncated are set even when the read
// fails part way: they then describe the bytes read before the failure. It
// returns the budget bytes that result.Body still holds, for the caller to
// release once the result is sent.
func readBody(ctx context.Context, mem Memory, r io.Reader, contentLength int64, job *Job, result *fetchv1.FetchResponse) (int64, error) {
	b := &body{mem: mem, job: job, result: result}
	returned := false
	defer func() {
		if !returned {
			b.trim(0) // a panic (a bug): give the budget back
		}
	}()
	if job.Digest {
		b.h = sha256.New()
	}
	var (
		n         int64
		truncated bool
		err       error
	)
	switch {
	case job.Discard:
		n, truncated, err = readDiscard(r, job.MaxBody, b.h)
	case job.Chunk > 0 && job.Sink != nil && (job.MaxBody <= 0 || job.MaxBody > job.Chunk):
		n, truncated, err = b.readChunks(ctx, r, contentLength)
	default:
		var buf []byte
		buf, truncated, err = b.readCapped(ctx, r, contentLength, job.MaxBody)
		if b.h != nil {
			b.h.Write(buf)
		}
		result.Body, n = buf, int64(len(buf))
	}
	result.BodyLength, result.Truncated = uint64(n), truncated
	if b.h != nil {
		result.BodySha256 = b.h.Sum(nil)
	}
	returned = true
	return b.held, err
}

// reserve takes from the budget what a buffer of size bytes holds beyond
// FreeBodyBytes and beyond what b holds already.
func (b *body) reserve(ctx context.Context, size int64) error {
	need := max(size-FreeBodyBytes, 0) - b.held
	if need <= 0 || b.mem == nil {
		return nil
	}
	if err := b.mem.Acquire(ctx, need); err != nil {
		return err
	}
	b.held += need
	return nil
}

// trim gives back what b holds beyond a buffer of size bytes.
func (b *body) trim(size int64) {
	if extra := b.held - max(size-FreeBodyBytes, 0); extra > 0 && b.mem != nil {
		b.mem.Release(extra)
		b.held -= extra
	}
}

// readCapped reads r up to max bytes and reports whether more were there.
// A non-positive max means no cap beyond memory. The buffer grows
// geometrically but never past max+1 bytes: the byte after the cap only
// tells that the body is longer, and is kept in the buffer's capacity
// (buf[:max+1]). Before it grows past FreeBodyBytes it takes from the
// budget, at once, all it may need: max+1, or the Content-Length+1 when
// that is less (the transports never read past a Content-Length). On
// return b holds what the buffer's capacity needs.
func (b *body) readCapped(ctx context.Context, r io.Reader, contentLength, max int64) ([]byte, bool, error) {
	limit := max
	if limit <= 0 {
		limit = 1<<63 - 2
	}
	need := limit + 1 // the most the buffer can grow to
	size := int64(512)
	if contentLength >= 0 {
		need = min(need, contentLength+1)
		// Trust the upstream's Content-Length only up to FreeBodyBytes
		// before reserving: it may lie. +1 so that the read that meets
		// EOF needs no growth.
		size = min(contentLength, FreeBodyBytes-1) + 1
	}
	buf := make([]byte, 0, min(size, need))
	defer func() { b.trim(int64(cap(buf))) }()
	for {
		if len(buf) == cap(buf) {
			if int64(cap(buf)) >= need {
				need = limit + 1 // more than the Content-Length: trust it no longer
			}
			grow := min(2*int64(cap(buf)), need)
			if grow > FreeBodyBytes {
				if err := b.reserve(ctx, need); err != nil {
					return buf, false, err
				}
				if contentLength >= 0 {
					grow = need // known and reserved: no more copies
				}
			}
			grown := make([]byte, len(buf), grow)
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):min(int64(cap(buf)), limit+1)])
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

// readChunks reads a body that may be longer than one chunk: it reads up to
// one chunk and a byte, and returns a body that fits inline in the result.
// A longer one goes to the sink chunk by chunk, through one buffer of a
// chunk and a byte: a chunk is read only once the sink has taken the one
// before, so the caller's flow control reaches the upstream. Up to
// job.MaxBody bytes are sent; a longer body is truncated.
func (b *body) readChunks(ctx context.Context, r io.Reader, contentLength int64) (int64, bool, error) {
	job, size := b.job, b.job.Chunk
	buf, more, err := b.readCapped(ctx, r, contentLength, size)
	if !more {
		if b.h != nil {
			b.h.Write(buf)
		}
		b.result.Body = buf
		return int64(len(buf)), false, err
	}
	limit := job.MaxBody
	if limit <= 0 {
		limit = 1<<63 - 2
	}
	b.result.Streamed = true
	buf = buf[:size+1] // the chunk and the byte after it
	var sent int64
	for {
		// buf holds bytes read and not sent, up to a chunk and one byte;
		// err is the read's error: nil when buf is full, so that there
		// is more.
		chunk := buf[:min(int64(len(buf)), size, limit-sent)]
		rest := buf[len(chunk):]
		atCap := sent+int64(len(chunk)) >= limit
		var ahead byte
		if len(rest) > 0 {
			ahead = rest[0]
		}
		if b.h != nil {
			b.h.Write(chunk)
		}
		reserved := b.held
		b.held = 0 // the sink's now, until it gives the buffer back
		next, serr := job.Sink.Send(ctx, sent, chunk, reserved)
		if serr != nil {
			return sent + int64(len(chunk)), false, serr // read, and digested
		}
		b.held = reserved
		sent += int64(len(chunk))
		switch {
		case atCap && len(rest) > 0:
			b.trim(0) // streamed: the result holds no body
			return sent, true, nil
		case len(rest) == 0:
			// Not full, so the read ended: the body's end, or a failure
			// after these bytes.
			b.trim(0)
			if err == io.EOF {
				err = nil
			}
			return sent, false, err
		case err != nil:
			buf = append(next[:0], ahead) // the last byte, then err again
		default:
			buf, err = fill(r, next[:cap(next)], ahead)
		}
	}
}

// fill reads r into buf after the byte ahead until buf is full or the
// read fails, and returns the bytes it holds and the read's error (io.EOF
// at the end of the body; nil when buf is full).
func fill(r io.Reader, buf []byte, ahead byte) ([]byte, error) {
	buf[0] = ahead
	n := 1
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return buf[:n], err
		}
	}
	return buf, nil
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
