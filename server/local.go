package server

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

// ServeLocal runs one Fetch stream for a caller in this process, without
// gRPC and without protobuf encoding: jobs and results pass in memory, and
// the stream behaves as a [Server.Fetch] call would (windows, queue, stream
// options on the first job, per-job errors, chunks, the final status).
//
// recv returns the next job, or io.EOF once the caller has half-closed; any
// other error ends the stream with it, and a context error as a call whose
// caller went away. The server calls recv from a goroutine of its own, one
// call at a time, and may still be in it when ServeLocal returns (when the
// server drains, it reads once more to learn whether the caller has
// half-closed): recv must return once ctx is done, and the caller must end
// ctx after ServeLocal returns. [Server.Close] waits for that last call.
//
// send takes each result, and each chunk of a streamed body, in order; only
// the goroutine that called ServeLocal calls send, and setTrailer. A send
// error ends the stream, as a broken connection would. Every message passed
// to send is the caller's from then on: the server neither reads nor writes
// it afterwards (a chunk's data is a copy of the buffer the fetch reads
// into). The results of identical jobs that shared one fetch
// (FetchResponse.shared) share that fetch's body, headers and error values
// with its other results: read them, do not modify them in place.
//
// The server never modifies a request recv returns, and holds it until the
// job's result is sent. A request with a string field that is not valid
// UTF-8 (which proto.Marshal would refuse) gets its own
// ERROR_CODE_INVALID_REQUEST result, as over gRPC.
//
// ServeLocal returns nil when every job read was answered after the caller
// half-closed, else the gRPC status error the Fetch call would end with:
// codes.Unavailable when the server drains (with the [TrailerUnstarted]
// trailer passed to setTrailer when every job without a result was never
// started), codes.Canceled or codes.DeadlineExceeded when ctx ends. The
// caller's identity ([Config.Caller]) comes from ctx, which has no gRPC
// peer: with the default [PeerCaller] every local stream is the same caller
// "".
func (s *Server) ServeLocal(ctx context.Context, recv func() (*fetchv1.FetchRequest, error), send func(*fetchv1.FetchResponse) error, setTrailer func(metadata.MD)) error {
	in := func() (inbound, error) {
		req, err := recv()
		if err != nil {
			return inbound{}, err
		}
		return localJob(req), nil
	}
	return s.serve(ctx, in, send, setTrailer, nil, true)
}

// localJob is a job handed over in memory, checked as [decodeJob] checks
// one that arrives encoded: a string that is not UTF-8 makes it an invalid
// request, echoed from a copy with its strings made valid.
func localJob(req *fetchv1.FetchRequest) inbound {
	if req == nil {
		return inbound{req: new(fetchv1.FetchRequest)}
	}
	fields := invalidStrings(req.ProtoReflect(), "")
	if len(fields) == 0 {
		return inbound{req: req}
	}
	fixed := proto.CloneOf(req)
	fixStrings(fixed.ProtoReflect())
	return inbound{req: fixed, bad: &fetcher.Error{
		Code: fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST,
		Err:  fmt.Errorf("%s not valid UTF-8 (proto3 strings must be; send bytes that are not text base64- or percent-encoded)", fieldList(fields)),
	}}
}

// invalidStrings returns the paths of m's string fields, nested messages
// included, that are not valid UTF-8, named as [decodeJob] names them.
func invalidStrings(m protoreflect.Message, prefix string) []string {
	var bad []string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		path := prefix + string(fd.Name())
		switch {
		case fd.IsMap():
			// No map in the contract.
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				bad = append(bad, invalidValue(fd, l.Get(i), fmt.Sprintf("%s[%d]", path, i))...)
			}
		default:
			bad = append(bad, invalidValue(fd, v, path)...)
		}
		return true
	})
	return bad
}

func invalidValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) []string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if !utf8.ValidString(v.String()) {
			return []string{path}
		}
	case protoreflect.MessageKind:
		return invalidStrings(v.Message(), path+".")
	}
	return nil
}

// fixStrings makes every string field of m, nested messages included,
// valid UTF-8, replacing what is not with U+FFFD.
func fixStrings(m protoreflect.Message) {
	fix := func(v protoreflect.Value) protoreflect.Value {
		return protoreflect.ValueOfString(strings.ToValidUTF8(v.String(), "\uFFFD"))
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				switch fd.Kind() {
				case protoreflect.StringKind:
					l.Set(i, fix(l.Get(i)))
				case protoreflect.MessageKind:
					fixStrings(l.Get(i).Message())
				}
			}
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, fix(v))
		case fd.Kind() == protoreflect.MessageKind:
			fixStrings(v.Message())
		}
		return true
	})
}
