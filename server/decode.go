package server

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/fetcher"
)

// A job whose message does not decode must get its own error result, not
// end the stream: grpc-go's codec would end the whole call with INTERNAL
// ("string field contains invalid UTF-8"), and grpc-js encodes a JS string
// with a lone surrogate exactly that way. So the fetch service receives each
// job message as raw bytes (the unknown fields of an [emptypb.Empty], which
// proto does not validate) and decodes it here: strictly first, as proto3
// requires; only when that fails does it look for the string fields that
// are not UTF-8, and then the job is an invalid request. Every other message
// (health, reflection, FetchBatch's options) is decoded as strictly as
// before.

// rawMessage returns an empty message to receive one message's bytes into.
func rawMessage() *emptypb.Empty { return new(emptypb.Empty) }

// rawBytes returns the bytes a rawMessage received.
func rawBytes(m *emptypb.Empty) []byte { return m.ProtoReflect().GetUnknown() }

// inbound is one job as received: its request, and why it is invalid when it
// could not be decoded as sent. req is never nil; when bad is set, req holds
// what could be decoded, with every string made valid, so that its index,
// id and url can be echoed.
type inbound struct {
	req *fetchv1.FetchRequest
	bad error
}

// decodeJob decodes one FetchRequest message.
func decodeJob(b []byte) inbound {
	req := new(fetchv1.FetchRequest)
	err := proto.Unmarshal(b, req)
	if err == nil {
		return inbound{req: req}
	}
	fixed, fields := validStrings(b, req.ProtoReflect().Descriptor(), "")
	if len(fields) > 0 {
		req.Reset()
		if proto.Unmarshal(fixed, req) == nil {
			return inbound{req: req, bad: &fetcher.Error{
				Code: fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST,
				Err:  fmt.Errorf("%s not valid UTF-8 (proto3 strings must be; send bytes that are not text base64- or percent-encoded)", fieldList(fields)),
			}}
		}
	}
	return inbound{req: new(fetchv1.FetchRequest), bad: &fetcher.Error{
		Code: fetchv1.ErrorCode_ERROR_CODE_INVALID_REQUEST,
		Err:  fmt.Errorf("malformed job message: %w", err),
	}}
}

// inbounds returns decoded jobs as a batch's job source.
func inbounds(reqs []*fetchv1.FetchRequest) func() (inbound, bool) {
	return func() (inbound, bool) {
		if len(reqs) == 0 {
			return inbound{}, false
		}
		in := inbound{req: reqs[0]}
		reqs[0] = nil // the stream holds it from here
		reqs = reqs[1:]
		return in, true
	}
}

// decodeBatch checks the framing of a FetchBatchRequest message and
// decodes its options, and returns its jobs as a source that decodes each
// only when the stream reads it: a batch of a million jobs holds its
// message's bytes, not a million decoded jobs, and the job memory budget
// and the stream's queue bound what is decoded at once. A job that does
// not decode becomes an invalid inbound of its own; a batch whose framing
// or options do not decode is an error of the whole call.
func decodeBatch(b []byte) (func() (inbound, bool), *fetchv1.StreamOptions, error) {
	var opts *fetchv1.StreamOptions
	for rest := b; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return nil, nil, fmt.Errorf("malformed batch: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if m < 0 {
			return nil, nil, fmt.Errorf("malformed batch: %w", protowire.ParseError(m))
		}
		field := rest[:n+m]
		rest = rest[n+m:]
		if num == 1 && typ == protowire.BytesType {
			continue // a job: decoded when read
		}
		// Options, or unknown fields: strictly, as proto would.
		if opts == nil {
			opts = new(fetchv1.StreamOptions)
		}
		var one fetchv1.FetchBatchRequest
		if err := proto.Unmarshal(field, &one); err != nil {
			return nil, nil, fmt.Errorf("malformed batch: %w", err)
		}
		if o := one.GetOptions(); o != nil {
			proto.Merge(opts, o) // a repeated message field merges, as proto does
		}
	}
	return func() (inbound, bool) {
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			m := protowire.ConsumeFieldValue(num, typ, b[n:]) // checked above
			value := b[n : n+m]
			b = b[n+m:]
			if num == 1 && typ == protowire.BytesType {
				v, _ := protowire.ConsumeBytes(value)
				return decodeJob(v), true
			}
		}
		return inbound{}, false
	}, opts, nil
}

// validStrings returns b, a message of type md, with every string field
// (nested messages included) that is not valid UTF-8 made valid, and the
// paths of those fields. It returns no paths when b cannot be walked.
func validStrings(b []byte, md protoreflect.MessageDescriptor, prefix string) ([]byte, []string) {
	var (
		out    []byte
		fields []string
		counts map[protowire.Number]int // repeated fields seen so far, for paths
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, nil
		}
		field := b[:n+m]
		b = b[n+m:]
		fd := md.Fields().ByNumber(num)
		if fd == nil || typ != protowire.BytesType || (fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.MessageKind) {
			out = append(out, field...)
			continue
		}
		path := prefix + string(fd.Name())
		if fd.IsList() {
			if counts == nil {
				counts = make(map[protowire.Number]int)
			}
			path = fmt.Sprintf("%s[%d]", path, counts[num])
			counts[num]++
		}
		v, _ := protowire.ConsumeBytes(field[n:])
		if fd.Kind() == protoreflect.MessageKind {
			inner, bad := validStrings(v, fd.Message(), path+".")
			if inner == nil && len(v) > 0 {
				return nil, nil
			}
			fields = append(fields, bad...)
			v = inner
		} else if !utf8.Valid(v) {
			fields = append(fields, path)
			v = []byte(strings.ToValidUTF8(string(v), "\uFFFD"))
		}
		out = protowire.AppendTag(out, num, typ)
		out = protowire.AppendBytes(out, v)
	}
	return out, fields
}

// fieldList names fields for a message: "field url is", "fields id and
// headers[0].value are".
func fieldList(fields []string) string {
	if len(fields) == 1 {
		return "field " + fields[0] + " is"
	}
	return "fields " + strings.Join(fields[:len(fields)-1], ", ") + " and " + fields[len(fields)-1] + " are"
}

// validUTF8 makes the strings of a fetched result that may quote upstream
// bytes valid UTF-8, replacing what is not with U+FFFD: a result with one
// invalid string cannot be marshalled, and gRPC would end the whole stream.
// It covers the final URL and the error message (which may quote upstream
// bytes, or a panic's value). The headers are made valid where they are
// built, the fetcher decoding header bytes as ISO-8859-1; the index, id and
// url come from the job, valid since [decodeJob].
func validUTF8(r *fetchv1.FetchResponse) {
	fix := func(s *string) {
		if !utf8.ValidString(*s) {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
	}
	fix(&r.FinalUrl)
	if r.Error != nil {
		fix(&r.Error.Message)
	}
}
