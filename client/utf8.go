package client

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// invalidUTF8 returns the path of the first string field of m, nested
// messages included, that is not valid UTF-8, or "". Such a job cannot be
// marshalled (proto3 strings are UTF-8), and sending it would fail the
// stream; it is answered ERROR_CODE_INVALID_REQUEST instead, as fetchd
// answers one sent by a client that does not check.
func invalidUTF8(m protoreflect.Message) string {
	var bad string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				if bad = invalidValue(fd, l.Get(i), fmt.Sprintf("%s[%d]", name, i)); bad != "" {
					return false
				}
			}
		case fd.IsMap():
			// No map in the contract holds strings today.
		default:
			bad = invalidValue(fd, v, name)
		}
		return bad == ""
	})
	return bad
}

func invalidValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if !utf8.ValidString(v.String()) {
			return path
		}
	case protoreflect.MessageKind:
		if inner := invalidUTF8(v.Message()); inner != "" {
			return path + "." + inner
		}
	}
	return ""
}
