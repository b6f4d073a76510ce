package main

import (
	"strings"
	"testing"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

func chunkMsg(index, offset uint64, n int) *fetchv1.FetchResponse {
	return &fetchv1.FetchResponse{Index: index, Chunk: &fetchv1.BodyChunk{Offset: offset, Data: make([]byte, n)}}
}

func streamedResult(index uint64, length uint64) *fetchv1.FetchResponse {
	return &fetchv1.FetchResponse{Index: index, StatusCode: 200, Streamed: true, BodyLength: length}
}

func TestBodyTally(t *testing.T) {
	const want = 10
	tests := []struct {
		name    string
		jobs    int
		msgs    []*fetchv1.FetchResponse
		wantErr string // "" when every message and the end must pass
	}{
		{"streamed", 1, []*fetchv1.FetchResponse{chunkMsg(0, 0, 4), chunkMsg(0, 4, 6), streamedResult(0, want)}, ""},
		{"inline", 1, []*fetchv1.FetchResponse{{Index: 0, StatusCode: 200, Body: make([]byte, want), BodyLength: want}}, ""},
		{"two jobs interleaved", 2, []*fetchv1.FetchResponse{chunkMsg(1, 0, 5), chunkMsg(0, 0, 5), chunkMsg(1, 5, 5), streamedResult(1, want), chunkMsg(0, 5, 5), streamedResult(0, want)}, ""},
		{"a chunk short", 1, []*fetchv1.FetchResponse{chunkMsg(0, 0, 4), chunkMsg(0, 4, 5), streamedResult(0, want)}, "9 body bytes, want 10"},
		{"body_length wrong", 1, []*fetchv1.FetchResponse{chunkMsg(0, 0, 10), streamedResult(0, 11)}, "body_length 11, want 10"},
		{"inline body short", 1, []*fetchv1.FetchResponse{{Index: 0, StatusCode: 200, Body: make([]byte, 9), BodyLength: want}}, "9 body bytes, want 10"},
		{"gap", 1, []*fetchv1.FetchResponse{chunkMsg(0, 0, 4), chunkMsg(0, 5, 6)}, "offset 5, want 4"},
		{"truncated", 1, []*fetchv1.FetchResponse{{Index: 0, StatusCode: 200, Body: make([]byte, want), BodyLength: want, Truncated: true}}, "truncated"},
		{"status", 1, []*fetchv1.FetchResponse{{Index: 0, StatusCode: 404, Body: make([]byte, want), BodyLength: want}}, "status 404"},
		{"job error", 1, []*fetchv1.FetchResponse{{Index: 0, Error: &fetchv1.Error{Code: fetchv1.ErrorCode_ERROR_CODE_TIMEOUT, Message: "slow"}}}, "slow"},
		{"chunks but not streamed", 1, []*fetchv1.FetchResponse{chunkMsg(0, 0, 10), {Index: 0, StatusCode: 200, BodyLength: want}}, "not marked streamed"},
		{"chunk after result", 1, []*fetchv1.FetchResponse{chunkMsg(0, 0, 10), streamedResult(0, want), chunkMsg(0, 10, 1)}, "after its result"},
		{"two results", 1, []*fetchv1.FetchResponse{chunkMsg(0, 0, 10), streamedResult(0, want), streamedResult(0, want)}, "second result"},
		{"index out of range", 1, []*fetchv1.FetchResponse{chunkMsg(1, 0, 10)}, "index 1"},
		{"missing result", 2, []*fetchv1.FetchResponse{chunkMsg(0, 0, 10), streamedResult(0, want)}, "1 results for 2 jobs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newBodyTally(tt.jobs, want)
			var err error
			for _, m := range tt.msgs {
				if _, err = tl.add(m); err != nil {
					break
				}
			}
			if err == nil {
				err = tl.finish()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("tally = %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("tally = %v, want an error with %q", err, tt.wantErr)
			}
			if tt.wantErr == "" && tl.bytes != int64(tt.jobs)*want {
				t.Errorf("tally counted %d bytes, want %d", tl.bytes, int64(tt.jobs)*want)
			}
		})
	}
}
