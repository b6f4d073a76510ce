package client

import (
	"errors"
	"fmt"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// BodyWriter takes the body of one attempt of one job, as it arrives, for
// a call made with [WithBodyWriter]. The client calls its methods from one
// goroutine at a time: Write with the body's bytes in order, then exactly
// one of Finish or Abort, and nothing after.
//
// A job resubmitted after its stream broke part way through its body gets
// a new writer: the client aborts the old one, and the next attempt's
// body, which starts again at its first byte, goes to the writer open
// returns for it.
type BodyWriter interface {
	// Write takes the next bytes of the body. An error fails the call,
	// and the client then calls Abort.
	Write(p []byte) (int, error)
	// Finish is called once the whole body was written, with the job's
	// result (whose Body is nil), before the result is yielded: a file
	// writer renames its file here, or removes it if the result does
	// not deserve one. An error fails the call.
	Finish(r *Result) error
	// Abort is called instead of Finish when the body will not be
	// completed: its stream broke (the job may be resubmitted, to a new
	// writer), the call ended, or Write failed. It releases what the
	// writer holds, such as a temporary file.
	Abort()
}

// ErrBodyWriter is what a call ends with, wrapped with the writer's own
// error, when a [BodyWriter] or the open function of [WithBodyWriter]
// fails.
var ErrBodyWriter = errors.New("client: body writer failed")

// errProtocol is why a stream was dropped when its backend broke the chunk
// protocol: a chunk out of order, for no job pending or after its result,
// or a result that does not match its chunks. The stream's jobs are then
// resubmitted as after any broken stream.
var errProtocol = errors.New("chunk protocol error")

// bodies are the bodies arriving on one stream, by the call's job index.
// It is used by the stream's receiving goroutine only.
type bodies struct {
	open    func(index uint64) (BodyWriter, error) // nil: reassemble into Result.Body
	discard bool                                   // WithDiscardBody: no inline body gets a writer
	partial map[uint64]*body                       // jobs whose chunks began and whose result has not come
}

// body is one job's body so far.
type body struct {
	next uint64     // the offset of the next chunk
	w    BodyWriter // with a body writer
	buf  []byte     // without: the bytes so far
}

func newBodies(o *options) *bodies {
	return &bodies{open: o.bodyWriter, discard: o.discardBody, partial: map[uint64]*body{}}
}

// chunk takes a chunk of job idx's body. It returns an error wrapping
// errProtocol when the chunk is out of order, or ErrBodyWriter when the
// writer failed.
func (bs *bodies) chunk(idx uint64, c *fetchv1.BodyChunk) error {
	b := bs.partial[idx]
	if b == nil {
		b = &body{}
		bs.partial[idx] = b
	}
	if c.GetOffset() != b.next {
		return fmt.Errorf("%w: job %d: a chunk at offset %d, want %d", errProtocol, idx, c.GetOffset(), b.next)
	}
	data := c.GetData()
	b.next += uint64(len(data))
	if bs.open == nil {
		b.buf = append(b.buf, data...)
		return nil
	}
	if b.w == nil {
		w, err := bs.open(idx)
		if err != nil {
			return fmt.Errorf("%w: open job %d: %w", ErrBodyWriter, idx, err)
		}
		b.w = w
	}
	if _, err := b.w.Write(data); err != nil {
		return fmt.Errorf("%w: job %d: %w", ErrBodyWriter, idx, err)
	}
	return nil
}

// result completes job idx's body with its result r: r.Body becomes the
// reassembled body, or, with a body writer, the body goes to its writer,
// which is finished. It returns an error wrapping errProtocol when r does
// not match the chunks before it, or ErrBodyWriter when the writer failed.
func (bs *bodies) result(idx uint64, r *Result) error {
	b := bs.partial[idx]
	var got uint64
	if b != nil {
		got = b.next
	}
	switch {
	case b != nil && !r.GetStreamed():
		return fmt.Errorf("%w: job %d: a result not marked streamed after %d body bytes in chunks", errProtocol, idx, got)
	case r.GetStreamed() && len(r.GetBody()) > 0:
		return fmt.Errorf("%w: job %d: a streamed result with %d body bytes inline", errProtocol, idx, len(r.GetBody()))
	case r.GetStreamed() && r.GetBodyLength() != got:
		return fmt.Errorf("%w: job %d: a streamed result of body_length %d after %d bytes in chunks", errProtocol, idx, r.GetBodyLength(), got)
	}
	delete(bs.partial, idx)
	if bs.open == nil {
		if b != nil {
			r.Body = b.buf
		}
		return nil
	}
	if b == nil {
		if len(r.GetBody()) == 0 && (r.GetStatusCode() == 0 || bs.discard) {
			return nil // no response, no body: no writer
		}
		b = &body{}
		w, err := bs.open(idx)
		if err != nil {
			return fmt.Errorf("%w: open job %d: %w", ErrBodyWriter, idx, err)
		}
		b.w = w
		if _, err := w.Write(r.GetBody()); err != nil {
			w.Abort()
			return fmt.Errorf("%w: job %d: %w", ErrBodyWriter, idx, err)
		}
		r.Body = nil
	}
	if b.w == nil {
		// Streamed, with chunks all empty: open it now, for its result.
		w, err := bs.open(idx)
		if err != nil {
			return fmt.Errorf("%w: open job %d: %w", ErrBodyWriter, idx, err)
		}
		b.w = w
	}
	if err := b.w.Finish(r); err != nil {
		return fmt.Errorf("%w: finish job %d: %w", ErrBodyWriter, idx, err)
	}
	return nil
}

// abortAll drops the bodies whose result did not come, aborting their
// writers. The stream is over.
func (bs *bodies) abortAll() {
	for idx, b := range bs.partial {
		if b.w != nil {
			b.w.Abort()
		}
		delete(bs.partial, idx)
	}
}
