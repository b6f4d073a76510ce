package server

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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
	done chan struct{}
	resp *fetchv1.FetchResponse
}

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
		return f, false
	}
	if fs.m == nil {
		fs.m = make(map[string]*flight)
	}
	fs.m[key] = &flight{done: make(chan struct{})}
	return nil, true
}

// finish publishes the leader's result to the followers.
func (fs *flights) finish(key string, resp *fetchv1.FetchResponse) {
	if key == "" {
		return
	}
	fs.mu.Lock()
	f := fs.m[key]
	delete(fs.m, key)
	fs.mu.Unlock()
	if f != nil {
		f.resp = resp
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

// follow waits for the identical job in flight and copies its result. If
// that job was cancelled (its caller went away), t is fetched after all.
func (st *stream) follow(ctx context.Context, ln *lane, t *task, f *flight) {
	select {
	case <-f.done:
	case <-ctx.Done():
		t.resp.Error = &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_CANCELLED, Message: ctx.Err().Error()}
		st.done(ln, t)
		return
	}
	if f.resp.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_CANCELLED || ctx.Err() != nil {
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
		return
	}
	p, err := st.acquirePermit(ctx, ln)
	if err != nil {
		t.resp.Error = &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_CANCELLED, Message: err.Error()}
		st.done(ln, t)
		return
	}
	st.attempts(ctx, ln, t, p, time.Now().Add(t.job.Timeout), 1)
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
// may share: GET and HEAD without a body, same URL, headers and body cap,
// and the same digest and discard modes (a discarded fetch has no body to
// share with an inline job, and an inline one may lack the digest).
func dedupKey(j *fetcher.Job) string {
	if (j.Method != "GET" && j.Method != "HEAD") || len(j.Body) > 0 {
		return ""
	}
	var b strings.Builder
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
