package client

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// unsendable says why j cannot be sent without failing the stream it is
// sent on, or returns "". Such a job is answered ERROR_CODE_INVALID_REQUEST
// by the client instead, so that it fails alone, as fetchd fails a job it
// can decode but not run.
func (cl *call) unsendable(j *Job) string {
	if field := invalidUTF8(j.ProtoReflect()); field != "" {
		// proto.Marshal refuses it: the stream's Send would fail.
		return "field " + field + " is not valid UTF-8 (proto3 strings must be); not sent"
	}
	if n := proto.Size(j); n > cl.opts.maxJobBytes {
		return fmt.Sprintf("job message of %d bytes is over the limit of %d (client.WithMaxJobBytes, "+
			"fetchd's -max-recv-msg-bytes); not sent: fetchd would end the whole stream", n, cl.opts.maxJobBytes)
	}
	return ""
}

// invalidUTF8 returns the path of the first string field of m, nested
// messages included, that is not valid UTF-8, or "". Paths are built only
// for what is found bad: this runs on every job.
func invalidUTF8(m protoreflect.Message) string {
	var bad string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				if inner, ok := invalidValue(fd, l.Get(i)); !ok {
					bad = fmt.Sprintf("%s[%d]%s", fd.Name(), i, inner)
					return false
				}
			}
		case fd.IsMap():
			// No map in the contract holds strings today.
		default:
			if inner, ok := invalidValue(fd, v); !ok {
				bad = string(fd.Name()) + inner
				return false
			}
		}
		return true
	})
	return bad
}

// invalidValue reports ok false when v is, or holds, a string that is not
// valid UTF-8, with the path inside v to it ("" for v itself).
func invalidValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) (inner string, ok bool) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return "", utf8.ValidString(v.String())
	case protoreflect.MessageKind:
		if in := invalidUTF8(v.Message()); in != "" {
			return "." + in, false
		}
	}
	return "", true
}
