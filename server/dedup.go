package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/durationpb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

// flights tracks fetches in flight by dedup key, so that identical jobs
// share one fetch. The zero value is ready to use.
type flights struct {
	mu sync.Mutex // guards m
	m  map[string]*flight
}

// flight is one shared fetch; resp is set before done is closed.
type flight struct {
	started   chan struct{} // closed once the leader's fetch starts, or the flight ends
	startOnce sync.Once
	done      chan struct{}
	resp      *fetchv1.FetchResponse
	followers int // jobs that joined the flight; guarded by flights.mu
}

// start marks the leader's fetch started; it may be called more than once.
func (f *flight) start() { f.startOnce.Do(func() { close(f.started) }) }

// join returns the flight for key and whether the caller leads it (and
// must finish or abandon it). An empty key never joins: the caller leads
// alone.
func (fs *flights) join(key string) (*flight, bool) {
	if key == "" {
		return nil, true
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[key]; ok {
		f.followers++
		return f, false
	}
	if fs.m == nil {
		fs.m = make(map[string]*flight)
	}
	fs.m[key] = &flight{started: make(chan struct{}), done: make(chan struct{})}
	return nil, true
}

// start tells the followers that the leader's fetch has started: their
// deadlines run from then.
func (fs *flights) start(key string) {
	if key == "" {
		return
	}
	fs.mu.Lock()
	f := fs.m[key]
	fs.mu.Unlock()
	if f != nil {
		f.start()
	}
}

// finish publishes the leader's result to the followers: a copy of its
// fields, so that the followers never read resp itself, which the leader
// hands over next (and a local caller may write to; see ServeLocal). The
// copy's values (body, headers, error) are shared.
func (fs *flights) finish(key string, resp *fetchv1.FetchResponse) {
	if key == "" {
		return
	}
	fs.mu.Lock()
	f := fs.m[key]
	delete(fs.m, key)
	followers := f != nil && f.followers > 0
	fs.mu.Unlock()
	if f != nil {
		if followers {
			shared := new(fetchv1.FetchResponse)
			copyResult(shared, resp)
			resp = shared
		}
		f.resp = resp
		f.start()
		close(f.done)
	}
}

// abandon ends a flight whose leader never fetched: its followers see a
// cancelled result and fetch for themselves.
func (fs *flights) abandon(key string) {
	fs.finish(key, &fetchv1.FetchResponse{Error: &fetchv1.Error{
		Code: fetchv1.ErrorCode_ERROR_CODE_CANCELLED, Message: "the identical job this one waited for was cancelled"}})
}

func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// follow waits for the identical job in flight, at most until t's own
// deadline, and copies its result. A job's deadline runs from when its
// fetch starts, so a follower's runs from when the leader's fetch starts
// (or from when it joins a fetch already running): it gets its own TIMEOUT
// once its timeout has passed, whatever the leader's, and the leader goes
// on. If the leader's result is a TIMEOUT or CANCELLED that t's own
// deadline has not reached (the leader had a shorter timeout, or its
// caller went away), t is fetched after all, with the time it has left.
func (st *stream) follow(ctx context.Context, ln *lane, t *task, f *flight) {
	select {
	case <-f.started:
	case <-ctx.Done():
		t.resp.Error = &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_CANCELLED, Message: ctx.Err().Error()}
		st.done(ln, t)
		return
	}
	start := time.Now()
	deadline := start.Add(t.job.Timeout)
	timer := time.NewTimer(t.job.Timeout)
	defer timer.Stop()
	select {
	case <-f.done:
	case <-timer.C:
		st.followerTimeout(ln, t, start)
		return
	case <-ctx.Done():
		t.resp.Error = &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_CANCELLED, Message: ctx.Err().Error()}
		st.done(ln, t)
		return
	}
	switch code := f.resp.GetError().GetCode(); {
	case ctx.Err() != nil, code != fetchv1.ErrorCode_ERROR_CODE_CANCELLED && code != fetchv1.ErrorCode_ERROR_CODE_TIMEOUT:
		st.copyShared(ctx, ln, t, f)
		return
	case !time.Now().Before(deadline):
		st.followerTimeout(ln, t, start)
		return
	}
	// The leader ended before t's deadline without an answer: t fetches
	// for itself, waiting for its permit only until its deadline.
	pctx, cancel := context.WithDeadline(ctx, deadline)
	p, err := st.acquirePermit(pctx, ln)
	cancel()
	switch {
	case err != nil && ctx.Err() == nil:
		st.followerTimeout(ln, t, start)
		return
	case err != nil:
		t.resp.Error = &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_CANCELLED, Message: err.Error()}
		st.done(ln, t)
		return
	}
	st.attempts(ctx, ln, t, p, deadline, 1)
	st.done(ln, t)
}

// copyShared gives t the leader's result of flight f.
func (st *stream) copyShared(ctx context.Context, ln *lane, t *task, f *flight) {
	// The body is shared, but each result holds its own part of the
	// budget for it until sent: the leader's may go first.
	if n := int64(cap(f.resp.GetBody())) - fetcher.FreeBodyBytes; n > 0 {
		if err := st.bodyMem.Acquire(ctx, n); err != nil {
			t.resp.Error = &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_CANCELLED, Message: err.Error()}
			st.done(ln, t)
			return
		}
		t.held = n
	}
	copyResult(t.resp, f.resp)
	st.done(ln, t)
}

// followerTimeout gives t, a follower that never fetched, its own TIMEOUT:
// its timeout passed while it waited for the identical job in flight.
func (st *stream) followerTimeout(ln *lane, t *task, start time.Time) {
	t.resp.Duration = durationpb.New(time.Since(start))
	t.resp.Error = &fetchv1.Error{
		Code:    fetchv1.ErrorCode_ERROR_CODE_TIMEOUT,
		Message: fmt.Sprintf("job timeout of %v expired while an identical job in flight was fetched (job timeout expired)", t.job.Timeout),
	}
	st.done(ln, t)
}

// copyResult copies the outcome of a shared fetch into dst, keeping dst's
// own index, id and url.
func copyResult(dst, src *fetchv1.FetchResponse) {
	dst.FinalUrl = src.GetFinalUrl()
	dst.StatusCode = src.GetStatusCode()
	dst.Headers = src.GetHeaders()
	dst.Body = src.GetBody()
	dst.BodyLength = src.GetBodyLength()
	dst.BodySha256 = src.GetBodySha256()
	dst.Truncated = src.GetTruncated()
	dst.Streamed = src.GetStreamed()
	dst.Duration = src.GetDuration()
	dst.Error = src.GetError()
	dst.Attempts = src.GetAttempts()
	dst.Shared = true
}

// dedupKey identifies a job whose result another identical job in flight
// may share: of the same caller (any caller if caller is ""), GET and HEAD
// without a body, same URL, headers and body cap, and the same digest and
// discard modes (a discarded fetch has no body to share with an inline
// job, and an inline one may lack the digest).
func dedupKey(caller string, j *fetcher.Job) string {
	if (j.Method != "GET" && j.Method != "HEAD") || len(j.Body) > 0 {
		return ""
	}
	var b strings.Builder
	if caller != "" {
		b.WriteString("caller:")
		b.WriteString(strconv.Quote(caller))
		b.WriteByte('\n')
	}
	b.WriteString(j.Method)
	b.WriteByte(' ')
	b.WriteString(j.URL.String())
	for _, k := range sortedKeys(j.Header) {
		for _, v := range j.Header[k] {
			b.WriteByte('\n')
			b.WriteString(k)
			b.WriteByte(':')
			b.WriteString(v)
		}
	}
	b.WriteString("\ncap:")
	b.WriteString(itoa(j.MaxBody))
	if j.Digest {
		b.WriteString("\ndigest")
	}
	if j.Discard {
		b.WriteString("\ndiscard")
	}
	return b.String()
}

// PeerCaller is the default [Config.Caller]: the IP address of the peer of
// ctx's call, or its whole address if it has no IP (a Unix socket), or ""
// outside a gRPC call.
func PeerCaller(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if tcp, ok := p.Addr.(*net.TCPAddr); ok {
		return "ip:" + tcp.AddrPort().Addr().Unmap().String()
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return "ip:" + host
	}
	return "addr:" + p.Addr.String()
}
