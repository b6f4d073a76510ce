package client_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// TestInvalidUTF8Job: a job with a string that is not UTF-8 (proto cannot
// marshal it) gets ERROR_CODE_INVALID_REQUEST, and the call goes on.
func TestInvalidUTF8Job(t *testing.T) {
	eachMode(t, func(t *testing.T, mode string) {
		up := testupstream.New(t)
		c := fetchdClient(t, mode, nil)
		jobs := []*client.Job{
			client.Get(up.URL + "/?size=1"),
			client.Get(up.URL + "/caf\xe9"),
			{Url: up.URL + "/", Headers: []*fetchv1.Header{{Name: "X-A", Value: "\xff"}}},
			{Url: up.URL + "/?size=2", Id: "last"},
		}
		for _, ordered := range []bool{false, true} {
			seq := c.Fetch(testctx.New(t), slices.Values(jobs))
			if ordered {
				seq = c.FetchOrdered(testctx.New(t), slices.Values(jobs))
			}
			for _, r := range collect(t, seq, len(jobs)) {
				want := fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED
				if r.GetIndex() == 1 || r.GetIndex() == 2 {
					want = fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST
				}
				if r.GetError().GetCode() != want || (want != 0 && !strings.Contains(r.GetError().GetMessage(), "UTF-8")) {
					t.Errorf("ordered=%v: job %d error %v, want %v", ordered, r.GetIndex(), r.GetError(), want)
				}
			}
		}
		if up.Hits() != 4 {
			t.Errorf("upstream hits = %d, want 4 (two good jobs, two calls)", up.Hits())
		}
	})
}

// TestJobOverMessageLimit: a job larger than the server's message limit
// (grpc-go's default 4 MiB here) is answered ERROR_CODE_INVALID_REQUEST
// without being sent; the server would have ended the whole stream.
func TestJobOverMessageLimit(t *testing.T) {
	eachMode(t, func(t *testing.T, mode string) {
		up := testupstream.New(t)
		c := fetchdClient(t, mode, nil, client.WithMaxJobBytes(4<<20))
		jobs := []*client.Job{
			client.Get(up.URL + "/?size=1"),
			{Url: up.URL + "/", Method: "POST", Body: make([]byte, 5<<20)},
			{Url: up.URL + "/?size=2", Method: "POST", Body: []byte("small")},
		}
		for _, r := range collect(t, c.FetchOrdered(testctx.New(t), slices.Values(jobs)), len(jobs)) {
			want := fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED
			if r.GetIndex() == 1 {
				want = fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST
			}
			if r.GetError().GetCode() != want || (want != 0 && !strings.Contains(r.GetError().GetMessage(), "-max-recv-msg-bytes")) {
				t.Errorf("job %d error %v, want %v", r.GetIndex(), r.GetError(), want)
			}
		}
	})
}
