package fetcher

import (
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"syscall"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/egress"
	"github.com/fetchd/fetchd/server/internal/h1"
)

// errBadResponse marks the errors the fetcher itself finds in a response
// carried by net/http: an unasked upgrade, a gzip body that does not decode.
var errBadResponse = errors.New("bad response")

// Error is a per-job failure with its machine-readable code.
type Error struct {
	Code fetchv1.ErrorCode
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Proto returns e as a fetch.v1 Error.
func (e *Error) Proto() *fetchv1.Error {
	return &fetchv1.Error{Code: e.Code, Message: e.Err.Error()}
}

// Classify maps err, returned while fetching under ctx, to an [*Error].
// ctx is the caller's context: when it is done the job was cancelled,
// whatever the transport reported.
//
// It decides from error types and sentinels: [errors.Is] and [errors.As]
// on the standard library's errors and those of package h1. Where net/http
// offers no type (its HTTP/2 connection errors, a few parse errors), the
// error's own text is matched, in [netHTTPCode] alone. An error that
// matches nothing is ERROR_CODE_INTERNAL: fetchd does not know what went
// wrong, which is a fetchd bug to fix, not the upstream's fault.
func Classify(ctx context.Context, err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return &Error{Code: fe.Code, Err: err}
	}
	return &Error{Code: classify(ctx, err), Err: err}
}

func classify(ctx context.Context, err error) fetchv1.ErrorCode {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, egress.ErrBlocked):
		return fetchv1.ErrorCode_ERROR_CODE_BLOCKED
	case ctx.Err() != nil:
		return fetchv1.ErrorCode_ERROR_CODE_CANCELLED
	case errors.Is(err, errJobTimeout), errors.Is(err, context.DeadlineExceeded):
		return fetchv1.ErrorCode_ERROR_CODE_TIMEOUT
	case errors.Is(err, context.Canceled):
		return fetchv1.ErrorCode_ERROR_CODE_CANCELLED
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return fetchv1.ErrorCode_ERROR_CODE_TIMEOUT
		}
		return fetchv1.ErrorCode_ERROR_CODE_DNS_FAILURE
	case isTLSFailure(err):
		return fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE
	case h1.IsTimeout(err):
		return fetchv1.ErrorCode_ERROR_CODE_TIMEOUT
	case isBadResponse(err):
		// Before the connection errors: a gzip stream that ends early
		// wraps io.ErrUnexpectedEOF in errBadResponse or h1.ErrBadResponse.
		return fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE
	case isConnectionFailure(err):
		return fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE
	}
	if code, ok := netHTTPCode(err); ok {
		return code
	}
	return fetchv1.ErrorCode_ERROR_CODE_INTERNAL
}

// isTLSFailure reports whether err is a failed TLS handshake or
// certificate check.
func isTLSFailure(err error) bool {
	var (
		certErr   *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		alertErr  tls.AlertError
		echErr    *tls.ECHRejectionError
		unkAuth   x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invErr    x509.CertificateInvalidError
		rootsErr  x509.SystemRootsError
	)
	return errors.As(err, &certErr) || errors.As(err, &recordErr) || errors.As(err, &alertErr) ||
		errors.As(err, &echErr) || errors.As(err, &unkAuth) || errors.As(err, &hostErr) ||
		errors.As(err, &invErr) || errors.As(err, &rootsErr) || errors.Is(err, http.ErrSchemeMismatch) ||
		isLocalTLSAlert(err)
}

// isLocalTLSAlert reports whether err is an alert crypto/tls raised itself
// and sent to the upstream (a protocol version or cipher it refuses): a
// [*net.OpError] with Op "local error" around crypto/tls's unexported alert
// type, which exports no other mark.
func isLocalTLSAlert(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "local error"
}

// isBadResponse reports whether err says the upstream's response broke
// HTTP or its encoding: a malformed head or framing, a head over the cap, an
// unasked upgrade, a gzip body that is not gzip or ends early.
func isBadResponse(err error) bool {
	var (
		flateErr flate.CorruptInputError
		protoErr textproto.ProtocolError
	)
	return errors.Is(err, errBadResponse) || errors.Is(err, h1.ErrBadResponse) ||
		errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.As(err, &flateErr) ||
		errors.As(err, &protoErr) || errors.Is(err, http.ErrLineTooLong)
}

// isConnectionFailure reports whether err says the connection failed: it
// could not be made, was reset, or closed before the response was complete.
func isConnectionFailure(err error) bool {
	var (
		opErr *net.OpError
		errno syscall.Errno
	)
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.As(err, &opErr) || errors.As(err, &errno) || errors.Is(err, net.ErrClosed)
}

// netHTTPCode classifies the errors net/http returns without a type to
// match, by their text: a lost HTTP/2 connection or stream, an idle
// connection the upstream closed as it was reused, and its HTTP/1 parse
// errors. Only the innermost errors are matched (those that wrap nothing),
// so a URL or a wrapper's words cannot take part.
func netHTTPCode(err error) (fetchv1.ErrorCode, bool) {
	for _, msg := range leafMessages(err, nil) {
		msg = strings.TrimPrefix(msg, "net/http: ")
		for _, m := range netHTTPMessages {
			if strings.HasPrefix(msg, m.prefix) {
				return m.code, true
			}
		}
	}
	return 0, false
}

// netHTTPMessages are the beginnings of net/http's untyped errors, as of Go
// 1.26 (net/http/transport.go, h2_bundle.go, internal/chunked.go), after a
// "net/http: " prefix if any.
var netHTTPMessages = []struct {
	prefix string
	code   fetchv1.ErrorCode
}{
	// The connection went away under the request.
	{"http: server closed idle connection", fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
	{"http2: client connection force closed", fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
	{"http2: client connection lost", fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
	{"http2: server sent GOAWAY and closed the connection", fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
	{"http2: Transport received Server's graceful shutdown GOAWAY", fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
	{"http2: client conn is closed", fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
	{"http2: client conn not usable", fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
	{"http2: response body closed", fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
	{"http2: timeout awaiting response headers", fetchv1.ErrorCode_ERROR_CODE_TIMEOUT},
	// The upstream reset the stream (RST_STREAM): the HTTP/2 form of a
	// reset connection.
	{"stream error: ", fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
	// The upstream broke the HTTP/2 protocol.
	{"connection error: ", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	{"http2: ", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	// HTTP/1 heads and framing that do not parse.
	{"malformed ", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	{"bad Content-Length", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	{"bad Transfer-Encoding", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	{"unsupported transfer encoding", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	{"too many transfer encodings", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	{"invalid ", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	{"empty hex number for chunk length", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	{"http chunk length too large", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	{"chunked ", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	{"server response headers exceeded", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
	{"too many 1xx informational responses", fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
}

// leafMessages appends the messages of the errors in err's tree that wrap
// nothing.
func leafMessages(err error, msgs []string) []string {
	switch x := err.(type) {
	case nil:
		return msgs
	case interface{ Unwrap() error }:
		if inner := x.Unwrap(); inner != nil {
			return leafMessages(inner, msgs)
		}
	case interface{ Unwrap() []error }:
		for _, e := range x.Unwrap() {
			msgs = leafMessages(e, msgs)
		}
		return msgs
	}
	return append(msgs, err.Error())
}
