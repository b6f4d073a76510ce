package main

import (
	"fmt"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// bodyTally checks the messages of one chunked Fetch stream
// (StreamOptions.chunk_bytes) whose jobs each fetch a body of want bytes:
// every job's chunks come in order with no gap and before its one result,
// and the result is a 200, not truncated, with body_length want and want
// body bytes in its chunks and its inline body together. It counts the
// body bytes and keeps none of them.
type bodyTally struct {
	want    int64
	got     []int64 // body bytes received so far, per job index
	done    []bool  // the job's result has come
	results int
	bytes   int64 // body bytes received, every job's
}

func newBodyTally(jobs int, want int64) *bodyTally {
	return &bodyTally{want: want, got: make([]int64, jobs), done: make([]bool, jobs)}
}

// add takes the next message of the stream. It reports whether m was a
// job's result, and returns an error for the first message that breaks the
// contract or the benchmark's expectation.
func (t *bodyTally) add(m *fetchv1.FetchResponse) (result bool, err error) {
	i := m.GetIndex()
	if i >= uint64(len(t.got)) {
		return false, fmt.Errorf("message for job index %d of %d jobs", i, len(t.got))
	}
	if c := m.GetChunk(); c != nil {
		if t.done[i] {
			return false, fmt.Errorf("job %d: a chunk after its result", i)
		}
		if c.GetOffset() != uint64(t.got[i]) {
			return false, fmt.Errorf("job %d: chunk at offset %d, want %d", i, c.GetOffset(), t.got[i])
		}
		n := int64(len(c.GetData()))
		t.got[i] += n
		t.bytes += n
		return false, nil
	}
	if t.done[i] {
		return true, fmt.Errorf("job %d: a second result", i)
	}
	t.done[i] = true
	t.results++
	n := int64(len(m.GetBody()))
	t.got[i] += n
	t.bytes += n
	switch {
	case m.GetError() != nil:
		return true, fmt.Errorf("job %d: %v: %s", i, m.GetError().GetCode(), m.GetError().GetMessage())
	case m.GetStatusCode() != 200:
		return true, fmt.Errorf("job %d: status %d, want 200", i, m.GetStatusCode())
	case m.GetTruncated():
		return true, fmt.Errorf("job %d: body truncated at %d bytes", i, m.GetBodyLength())
	case m.GetBodyLength() != uint64(t.want):
		return true, fmt.Errorf("job %d: body_length %d, want %d", i, m.GetBodyLength(), t.want)
	case t.got[i] != t.want:
		return true, fmt.Errorf("job %d: %d body bytes, want %d", i, t.got[i], t.want)
	case t.got[i] > n && !m.GetStreamed():
		return true, fmt.Errorf("job %d: body came in chunks but the result is not marked streamed", i)
	case m.GetStreamed() && n > 0:
		return true, fmt.Errorf("job %d: streamed, with %d bytes inline too", i, n)
	}
	return true, nil
}

// finish returns an error unless every job had its result.
func (t *bodyTally) finish() error {
	if t.results != len(t.got) {
		return fmt.Errorf("%d results for %d jobs", t.results, len(t.got))
	}
	return nil
}
