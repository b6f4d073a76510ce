package server

import (
	"net/http"
	"slices"
	"strconv"
	"sync"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
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
