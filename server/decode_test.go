package server

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// notUTF8 marshals m and turns the first byte of every occurrence of mark,
// a placeholder inside one of m's strings, into 0xff: the same length, so
// the message stays well framed, but that string is no longer UTF-8. No Go
// client can send that (proto.Marshal refuses); grpc-js does, for a JS
// string with a lone surrogate.
func notUTF8(tb testing.TB, m proto.Message, mark string) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	bad := "\xff" + mark[1:]
	if !bytes.Contains(b, []byte(mark)) {
		tb.Fatalf("mark %q not in the message", mark)
	}
	return bytes.ReplaceAll(b, []byte(mark), []byte(bad))
}

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestDecodeJob(t *testing.T) {
	const u = "http://example.com/MARK"
	tests := []struct {
		name    string
		msg     []byte
		wantBad string // in the error message; "" means it decodes
		wantURL string
		wantID  string
	}{
		{"valid", mustMarshal(t, &fetchv1.FetchRequest{Url: u, Id: "a"}), "", u, "a"},
		{"url", notUTF8(t, &fetchv1.FetchRequest{Url: u, Id: "a"}, "MARK"), "field url is not valid UTF-8", "http://example.com/\uFFFDARK", "a"},
		{"id", notUTF8(t, &fetchv1.FetchRequest{Url: "http://example.com/", Id: "MARK"}, "MARK"), "field id is", "http://example.com/", "\uFFFDARK"},
		{"method", notUTF8(t, &fetchv1.FetchRequest{Url: "http://example.com/", Method: "MARK"}, "MARK"), "field method is", "http://example.com/", ""},
		{"second header value", notUTF8(t, &fetchv1.FetchRequest{Url: "http://example.com/", Headers: []*fetchv1.Header{
			{Name: "A", Value: "b"}, {Name: "C", Value: "MARK"},
		}}, "MARK"), "field headers[1].value is", "http://example.com/", ""},
		{"url and header name", notUTF8(t, &fetchv1.FetchRequest{Url: u, Headers: []*fetchv1.Header{{Name: "MARK", Value: "v"}}}, "MARK"),
			"fields url and headers[0].name are", "http://example.com/\uFFFDARK", ""},
		{"truncated", mustMarshal(t, &fetchv1.FetchRequest{Url: u})[:5], "malformed job message", "", ""},
		{"bad wire type", []byte{0x0f}, "malformed job message", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := decodeJob(tt.msg)
			if in.req == nil {
				t.Fatal("decodeJob returned no request")
			}
			if tt.wantBad == "" {
				if in.bad != nil {
					t.Fatalf("decodeJob: bad %v, want none", in.bad)
				}
			} else {
				var fe interface{ Proto() *fetchv1.Error }
				if !errors.As(in.bad, &fe) || fe.Proto().GetCode() != fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST ||
					!strings.Contains(in.bad.Error(), tt.wantBad) {
					t.Fatalf("decodeJob: bad %v, want ERROR_CODE_INVALID_REQUEST with %q", in.bad, tt.wantBad)
				}
			}
			if in.req.GetUrl() != tt.wantURL || in.req.GetId() != tt.wantID {
				t.Errorf("decodeJob: url %q id %q, want %q %q", in.req.GetUrl(), in.req.GetId(), tt.wantURL, tt.wantID)
			}
		})
	}
}

// rawCodec sends []byte messages as they are and decodes replies as proto,
// so that a test can send what a Go client cannot.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (rawCodec) Unmarshal(b []byte, v any) error { return proto.Unmarshal(b, v.(proto.Message)) }
func (rawCodec) Name() string                    { return "proto" }

// rawConn serves a Server on loopback and returns a connection to it.
func rawConn(tb testing.TB) *grpc.ClientConn {
	tb.Helper()
	s := New(WithAllowCIDRs(loopback), WithLogger(quiet), WithDedup(false))
	return serveConn(tb, s)
}

// TestInvalidUTF8Job: a job whose strings are not UTF-8 gets
// ERROR_CODE_INVALID_REQUEST with its index and id, and the jobs after it
// on the same stream are fetched.
func TestInvalidUTF8Job(t *testing.T) {
	up := testupstream.New(t)
	conn := rawConn(t)
	ctx := testctx.New(t)
	desc := &grpc.StreamDesc{StreamName: "Fetch", ServerStreams: true, ClientStreams: true}
	cs, err := conn.NewStream(ctx, desc, "/fetch.v1.FetchService/Fetch", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	msgs := [][]byte{
		mustMarshal(t, &fetchv1.FetchRequest{Url: up.URL + "/?size=1", Id: "first"}),
		notUTF8(t, &fetchv1.FetchRequest{Url: up.URL + "/MARK", Id: "bad"}, "MARK"),
		notUTF8(t, &fetchv1.FetchRequest{Url: up.URL + "/", Id: "MARK"}, "MARK"),
		mustMarshal(t, &fetchv1.FetchRequest{Url: up.URL + "/?size=2", Id: "last"}),
	}
	for _, m := range msgs {
		if err := cs.SendMsg(m); err != nil {
			t.Fatalf("SendMsg: %v", err)
		}
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]*fetchv1.FetchResponse{}
	for {
		r := new(fetchv1.FetchResponse)
		if err := cs.RecvMsg(r); err != nil {
			if err != io.EOF {
				t.Fatalf("stream ended with %v, want OK: a bad job must not end the stream", err)
			}
			break
		}
		got[r.GetIndex()] = r
	}
	if len(got) != len(msgs) {
		t.Fatalf("got %d results, want %d", len(got), len(msgs))
	}
	for i, want := range []struct {
		id   string
		code fetchv1.ErrorCode
	}{
		{"first", fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED},
		{"bad", fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST},
		{"\uFFFDARK", fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST},
		{"last", fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED},
	} {
		r := got[uint64(i)]
		if r.GetId() != want.id || r.GetError().GetCode() != want.code {
			t.Errorf("job %d: id %q, error %v; want %q, %v", i, r.GetId(), r.GetError(), want.id, want.code)
		}
	}
	if up.Hits() != 2 {
		t.Errorf("upstream hits = %d, want 2", up.Hits())
	}
}

// TestInvalidUTF8BatchJob: the same inside a FetchBatch; a batch whose
// options do not decode is an error of the call.
func TestInvalidUTF8BatchJob(t *testing.T) {
	up := testupstream.New(t)
	conn := rawConn(t)
	batch := notUTF8(t, &fetchv1.FetchBatchRequest{
		Jobs: []*fetchv1.FetchRequest{
			{Url: up.URL + "/?size=1", Id: "0"},
			{Url: up.URL + "/MARK", Id: "1"},
			{Url: up.URL + "/?size=2", Id: "2"},
		},
		Options: &fetchv1.StreamOptions{Concurrency: 1},
	}, "MARK")
	desc := &grpc.StreamDesc{StreamName: "FetchBatch", ServerStreams: true}

	t.Run("bad job", func(t *testing.T) {
		cs, err := conn.NewStream(testctx.New(t), desc, "/fetch.v1.FetchService/FetchBatch", grpc.ForceCodec(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.SendMsg(batch); err != nil {
			t.Fatal(err)
		}
		cs.CloseSend()
		codesByID := map[string]fetchv1.ErrorCode{}
		for {
			r := new(fetchv1.FetchBatchResponse)
			if err := cs.RecvMsg(r); err != nil {
				if err != io.EOF {
					t.Fatalf("FetchBatch ended with %v, want OK", err)
				}
				break
			}
			codesByID[r.GetResult().GetId()] = r.GetResult().GetError().GetCode()
		}
		want := map[string]fetchv1.ErrorCode{
			"0": fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED,
			"1": fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST,
			"2": fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED,
		}
		for id, code := range want {
			if c, ok := codesByID[id]; !ok || c != code {
				t.Errorf("job %s: error code %v (answered %v), want %v", id, c, ok, code)
			}
		}
	})
	t.Run("bad options", func(t *testing.T) {
		cs, err := conn.NewStream(testctx.New(t), desc, "/fetch.v1.FetchService/FetchBatch", grpc.ForceCodec(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		// Field 2 (options) well framed, holding a field of wire type 7,
		// which does not exist.
		if err := cs.SendMsg([]byte{0x12, 0x01, 0x0f}); err != nil {
			t.Fatal(err)
		}
		cs.CloseSend()
		err = cs.RecvMsg(new(fetchv1.FetchBatchResponse))
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("FetchBatch with malformed options: %v, want InvalidArgument", err)
		}
	})
}

// TestServiceDesc: the descriptor Register uses serves the same methods as
// the generated one.
func TestServiceDesc(t *testing.T) {
	gen := fetchv1.FetchService_ServiceDesc
	if serviceDesc.ServiceName != gen.ServiceName || serviceDesc.Metadata != gen.Metadata ||
		len(serviceDesc.Methods) != len(gen.Methods) || len(serviceDesc.Streams) != len(gen.Streams) {
		t.Fatalf("serviceDesc = %+v, want the methods of %+v", serviceDesc, gen)
	}
	for i, s := range gen.Streams {
		o := serviceDesc.Streams[i]
		if o.StreamName != s.StreamName || o.ServerStreams != s.ServerStreams || o.ClientStreams != s.ClientStreams {
			t.Errorf("stream %d = %+v, want %+v", i, o, s)
		}
	}
}
