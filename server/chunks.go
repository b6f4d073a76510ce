package server

import (
	"bytes"
	"context"
	"strings"
	"sync"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// outgoing is one message for the sender: a job's result, or a chunk of its
// body on the way (chunk set).
type outgoing struct {
	resp *fetchv1.FetchResponse
	// held is the body memory resp holds (its body, or its chunk's
	// buffer), released once resp is sent or dropped, unless a chunk's
	// buffer goes back to its worker.
	held  int64
	job   int64      // the job memory of a result's job, released once it is sent
	chunk *chunkSink // the sink of a chunk; nil for a result
	data  []byte     // the chunk's buffer
}

// chunkSink takes one job's streamed body ([fetcher.Sink]) and hands each
// chunk to the sender, which alone calls Send. The worker has at most one
// chunk in the sender's hands: it reads the next only once the sender has
// sent the last and given its buffer back, so a caller that reads slowly
// holds up the upstream read, not memory, and the stream's other jobs take
// turns with the chunks on the stream (results is FIFO).
type chunkSink struct {
	st   *stream
	resp *fetchv1.FetchResponse // the job's result: its index, and the head the first chunk carries
	back chan []byte            // room for one: the buffer of the chunk just sent

	mu   sync.Mutex // guards gone
	gone bool       // the worker stopped waiting for its buffer: the sender frees it
}

func newChunkSink(st *stream, resp *fetchv1.FetchResponse) *chunkSink {
	return &chunkSink{st: st, resp: resp, back: make(chan []byte, 1)}
}

// Send implements [fetcher.Sink].
func (c *chunkSink) Send(ctx context.Context, offset int64, data []byte, reserved int64) ([]byte, error) {
	msg := &fetchv1.FetchResponse{Index: c.resp.GetIndex(), Chunk: &fetchv1.BodyChunk{Offset: uint64(offset), Data: data}}
	if c.st.local {
		// Handed over in memory: data is the buffer the next chunk is
		// read into once this one is sent.
		msg.Chunk.Data = bytes.Clone(data)
	}
	if offset == 0 {
		msg.Chunk.Head = &fetchv1.ResponseHead{
			StatusCode: c.resp.GetStatusCode(),
			FinalUrl:   strings.ToValidUTF8(c.resp.GetFinalUrl(), "\uFFFD"),
			Headers:    c.resp.GetHeaders(), // built valid
		}
		if c.st.local {
			// Its own headers, not the result's.
			msg.Chunk.Head.Headers = cloneHeaders(msg.Chunk.Head.Headers)
		}
	}
	// The worker holds a window token and a workers count: results is
	// open and has room (see stream.results).
	c.st.results <- &outgoing{resp: msg, held: reserved, chunk: c, data: data}
	select {
	case buf := <-c.back:
		return buf, nil
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.back: // sent meanwhile: the buffer is ours to free
		c.st.bodyMem.Release(reserved)
	default:
		c.gone = true
	}
	return nil, context.Cause(ctx)
}

// sent is the sender's, once o's chunk has been sent or dropped: it gives
// the buffer back to the worker, or frees it if the worker has gone.
func (c *chunkSink) sent(o *outgoing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		c.st.bodyMem.Release(o.held)
		return
	}
	c.back <- o.data
}

// cloneHeaders returns a deep copy of hs.
func cloneHeaders(hs []*fetchv1.Header) []*fetchv1.Header {
	if hs == nil {
		return nil
	}
	out := make([]*fetchv1.Header, len(hs))
	for i, h := range hs {
		out[i] = &fetchv1.Header{Name: h.GetName(), Value: h.GetValue()}
	}
	return out
}
