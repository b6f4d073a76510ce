package fetcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/egress"
)

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
func Classify(ctx context.Context, err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return &Error{Code: fe.Code, Err: err}
	}
	return &Error{Code: classify(ctx, err), Err: err}
}

func classify(ctx context.Context, err error) fetchv1.ErrorCode {
	var (
		dnsErr    *net.DNSError
		certErr   *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		alertErr  tls.AlertError
		unkAuth   x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invErr    x509.CertificateInvalidError
	)
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
	case errors.As(err, &certErr), errors.As(err, &recordErr), errors.As(err, &alertErr),
		errors.As(err, &unkAuth), errors.As(err, &hostErr), errors.As(err, &invErr):
		return fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE
	case isTimeout(err):
		return fetchv1.ErrorCode_ERROR_CODE_TIMEOUT
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "tls:"), strings.Contains(msg, "x509:"),
		strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE
	case strings.Contains(msg, "malformed"), strings.Contains(msg, "exceeded"),
		strings.Contains(msg, "invalid"), strings.Contains(msg, "protocol error"):
		return fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE
	}
	return fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE
}

// isTimeout reports whether any error in err's tree says it is a timeout:
// an outer wrapper such as *url.Error may answer false for a timeout it
// wraps in another wrapper.
func isTimeout(err error) bool {
	for err != nil {
		if t, ok := err.(interface{ Timeout() bool }); ok && t.Timeout() {
			return true
		}
		switch x := err.(type) {
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				if isTimeout(e) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
