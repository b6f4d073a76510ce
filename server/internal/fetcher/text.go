package fetcher

import "unicode/utf8"

// headerText returns a response header name or value as a valid UTF-8
// string: protobuf strings must be, and a result that is not cannot be sent
// at all. HTTP field values are bytes; the ones that are not UTF-8 are
// taken as ISO-8859-1 (RFC 9110, section 5.5: obs-text), which maps every
// byte to the code point of the same value, so that a caller can recover
// the bytes the upstream sent.
func headerText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	r := make([]rune, len(s))
	for i := range len(s) {
		r[i] = rune(s[i])
	}
	return string(r)
}
