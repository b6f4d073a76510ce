package client

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// send sends jobs on st until the input is exhausted (then it half-closes
// and reports true) or the stream fails.
func (cl *call) send(ctx context.Context, st fetchv1.FetchService_FetchClient, sent *sentJobs, first []uint64) bool {
	opts := cl.streamOptions()
	sendOne := func(idx uint64) bool {
		job, ok := cl.attempt(idx)
		if !ok {
			return true
		}
		if opts != nil {
			job = proto.CloneOf(job)
			job.StreamOptions = opts
			opts = nil
		}
		sent.add(idx)
		return st.Send(job) == nil
	}
	for _, idx := range first {
		if !sendOne(idx) {
			return false
		}
	}
	fresh := cl.fresh
	for {
		// Resubmitted jobs first: they are the oldest.
		select {
		case idx := <-cl.retry:
			if !sendOne(idx) {
				return false
			}
			continue
		default:
		}
		if fresh == nil {
			st.CloseSend()
			return true
		}
		select {
		case idx := <-cl.retry:
			if !sendOne(idx) {
				return false
			}
		case idx, ok := <-fresh:
			if !ok {
				fresh = nil
				continue
			}
			if !sendOne(idx) {
				return false
			}
		case <-ctx.Done():
			return false
		}
	}
}

// streamOptions returns the options for a stream's first message, or nil.
func (cl *call) streamOptions() *fetchv1.StreamOptions {
	o := cl.opts
	chunk := o.streamChunkBytes()
	if o.concurrency == 0 && o.timeout == 0 && o.maxBodyBytes == 0 && !o.digest && !o.discardBody && chunk == 0 {
		return nil
	}
	so := &fetchv1.StreamOptions{
		Concurrency:  o.concurrency,
		MaxBodyBytes: o.maxBodyBytes,
		Digest:       o.digest,
		DiscardBody:  o.discardBody,
		ChunkBytes:   chunk,
	}
	if o.timeout > 0 {
		so.Timeout = durationpb.New(o.timeout)
	}
	return so
}

// sentJobs maps a stream's own indexes (by arrival on that stream) to the
// call's indexes, for the jobs sent on it and not yet answered.
type sentJobs struct {
	mu    sync.Mutex // guards next and local
	next  uint64
	local map[uint64]uint64
}

func (s *sentJobs) add(global uint64) {
	s.mu.Lock()
	s.local[s.next] = global
	s.next++
	s.mu.Unlock()
}

func (s *sentJobs) answer(local uint64) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.local[local]
	delete(s.local, local)
	return g, ok
}

// lookup returns the call's index of the job sent as local and not yet
// answered, or an error saying why there is none: it was answered already,
// or never sent.
func (s *sentJobs) lookup(local uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g, ok := s.local[local]; ok {
		return g, nil
	}
	if local < s.next {
		return 0, fmt.Errorf("%w: a chunk for job %d after its result", errProtocol, local)
	}
	return 0, fmt.Errorf("%w: a chunk for job %d, which was never sent", errProtocol, local)
}

func (s *sentJobs) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.local) == 0
}

func (s *sentJobs) unanswered() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint64, 0, len(s.local))
	for _, g := range s.local {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}
