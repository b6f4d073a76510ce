package client_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// scripted is a tiny fetchd on a real gRPC server whose answers a test
// writes: answer sends the messages for job i (by arrival) of stream n
// (from 0), chunks and result, and may return an error to end the stream
// there. It is for the wire cases a real fetchd never produces.
type scripted struct {
	fetchv1.UnimplementedFetchServiceServer
	answer func(ctx context.Context, n int, i uint64, job *fetchv1.FetchRequest, send func(*fetchv1.FetchResponse) error) error

	mu      sync.Mutex // guards streams
	streams int
}

// startScripted serves s on loopback and returns its address; it stops
// when tb ends.
func startScripted(tb testing.TB, s *scripted) string {
	tb.Helper()
	return serveFetchService(tb, s)
}

// Fetch answers the jobs of one stream with the script.
func (s *scripted) Fetch(st fetchv1.FetchService_FetchServer) error {
	s.mu.Lock()
	n := s.streams
	s.streams++
	s.mu.Unlock()
	for i := uint64(0); ; i++ {
		job, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.answer(st.Context(), n, i, job, st.Send); err != nil {
			return err
		}
	}
}

// opened returns how many streams were opened to s.
func (s *scripted) opened() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams
}

// chunkMsg is a chunk message of job i at off.
func chunkMsg(i, off uint64, data string) *fetchv1.FetchResponse {
	c := &fetchv1.BodyChunk{Offset: off, Data: []byte(data)}
	if off == 0 {
		c.Head = &fetchv1.ResponseHead{StatusCode: 200}
	}
	return &fetchv1.FetchResponse{Index: i, Chunk: c}
}

// streamedResult is the result of job i after n body bytes in chunks.
func streamedResult(i uint64, job *fetchv1.FetchRequest, n uint64) *fetchv1.FetchResponse {
	return &fetchv1.FetchResponse{Index: i, Id: job.GetId(), Url: job.GetUrl(), StatusCode: 200,
		Streamed: true, BodyLength: n}
}

// sendAll sends msgs in order, stopping at the first error.
func sendAll(send func(*fetchv1.FetchResponse) error, msgs ...*fetchv1.FetchResponse) error {
	for _, m := range msgs {
		if err := send(m); err != nil {
			return err
		}
	}
	return nil
}
