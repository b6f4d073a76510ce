package server

import (
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// FuzzDecodeJob: whatever bytes a caller sends as a job, decodeJob returns
// a request, never panics, agrees with proto on what decodes, and leaves
// every string it echoes valid UTF-8 (or the result could not be sent).
func FuzzDecodeJob(f *testing.F) {
	seeds := []*fetchv1.FetchRequest{
		{Url: "http://example.com/", Id: "a", Method: "POST", Body: []byte("x")},
		{Url: "http://example.com/", Headers: []*fetchv1.Header{{Name: "A", Value: "b"}}},
		{StreamOptions: &fetchv1.StreamOptions{Concurrency: 2}, Retry: &fetchv1.RetryPolicy{MaxAttempts: 2}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		bad := append([]byte(nil), b...)
		bad[len(bad)/2] = 0xff
		f.Add(bad)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := decodeJob(b)
		if in.req == nil {
			t.Fatal("decodeJob returned no request")
		}
		strictErr := proto.Unmarshal(b, new(fetchv1.FetchRequest))
		if (strictErr == nil) != (in.bad == nil) {
			t.Fatalf("decodeJob bad = %v, proto.Unmarshal = %v: they must agree", in.bad, strictErr)
		}
		if in.bad == nil {
			return
		}
		for _, s := range []string{in.req.GetUrl(), in.req.GetId(), in.req.GetMethod()} {
			if !utf8.ValidString(s) {
				t.Fatalf("echoed string %q is not UTF-8", s)
			}
		}
		for _, h := range in.req.GetHeaders() {
			if !utf8.ValidString(h.GetName()) || !utf8.ValidString(h.GetValue()) {
				t.Fatalf("header %q: %q is not UTF-8", h.GetName(), h.GetValue())
			}
		}
		if _, err := proto.Marshal(&fetchv1.FetchResponse{Url: in.req.GetUrl(), Id: in.req.GetId(),
			Error: &fetchv1.Error{Message: in.bad.Error()}}); err != nil {
			t.Fatalf("the invalid job's result cannot be marshalled: %v", err)
		}
	})
}
