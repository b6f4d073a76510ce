package client

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"google.golang.org/grpc/metadata"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/retry"
)

// send sends m's jobs on st as the router hands them out, until the router
// has no more for it (then it half-closes) or the stream fails. After its
// first job it reads the stream's header, where fetchd announces its pool
// and host cap, to learn how many jobs m should take at once.
func (cl *call) send(ctx context.Context, st fetchv1.FetchService_FetchClient, sent *sentJobs, m *member) {
	opts := cl.streamOptions()
	announced := false
	for {
		idx, ok, done := cl.router.next(m)
		if done {
			st.CloseSend()
			return
		}
		if !ok {
			select {
			case <-m.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		job, ok := cl.attempt(idx)
		if !ok {
			cl.router.answered(idx) // answered already, or just now
			continue
		}
		if opts != nil {
			job = proto.CloneOf(job)
			job.StreamOptions = opts
			opts = nil
		}
		sent.add(idx)
		if st.Send(job) != nil {
			return
		}
		if !announced {
			announced = true
			md, err := st.Header()
			if err != nil {
				return
			}
			credit, hostCredit := cl.credits(md)
			cl.router.setCredit(m, credit, hostCredit)
		}
	}
}

// credits returns how many jobs a backend should hold at once, in all and
// per host, from what its fetchd announced in md: twice its pool and twice
// its host cap (or its pool, with no cap), within the call's own
// concurrency. A fetchd that announces nothing gets no limit.
func (cl *call) credits(md metadata.MD) (credit, hostCredit int) {
	pool := headerInt(md, retry.HeaderConcurrency)
	if pool <= 0 {
		return 0, 0
	}
	if c := int(cl.opts.concurrency); c > 0 {
		pool = min(pool, c)
	}
	host := pool
	if h := headerInt(md, retry.HeaderHostConcurrency); h > 0 {
		host = min(h, pool)
	}
	return 2 * pool, 2 * host
}

// headerInt returns the number in md's key, or 0.
func headerInt(md metadata.MD, key string) int {
	v := md.Get(key)
	if len(v) == 0 {
		return 0
	}
	n, err := strconv.Atoi(v[0])
	if err != nil {
		return 0
	}
	return n
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
