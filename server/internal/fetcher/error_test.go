package fetcher

import (
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server/internal/egress"
	"github.com/fetchd/fetchd/server/internal/h1"
)

// urlErr wraps err the way http.Client.Do does.
func urlErr(err error) error {
	return &url.Error{Op: "Get", URL: "http://upstream.test/", Err: err}
}

// dialErr wraps a syscall error the way a failed dial does.
func dialErr(op string, errno syscall.Errno) error {
	return urlErr(&net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)})
}

func TestClassify(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	blocked := &egress.BlockedError{Addr: netip.MustParseAddr("169.254.169.254"), Reason: "link-local 169.254.0.0/16"}

	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want fetchv1.ErrorCode
	}{
		{"DNS not found", live, urlErr(&net.OpError{Op: "dial", Net: "tcp",
			Err: &net.DNSError{Err: "no such host", Name: "x.test", IsNotFound: true}}), fetchv1.ErrorCode_ERROR_CODE_DNS_FAILURE},
		{"DNS server failure", live, &net.DNSError{Err: "server misbehaving", Name: "x.test", IsTemporary: true}, fetchv1.ErrorCode_ERROR_CODE_DNS_FAILURE},
		{"DNS timeout", live, &net.DNSError{Err: "i/o timeout", Name: "x.test", IsTimeout: true}, fetchv1.ErrorCode_ERROR_CODE_TIMEOUT},
		{"certificate verification", live, urlErr(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE},
		{"unknown authority", live, fmt.Errorf("handshake: %w", x509.UnknownAuthorityError{}), fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE},
		{"hostname mismatch", live, urlErr(x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x.test"}), fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE},
		{"certificate invalid", live, urlErr(x509.CertificateInvalidError{Cert: &x509.Certificate{}, Reason: x509.Expired}), fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE},
		{"TLS record header", live, urlErr(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE},
		{"TLS alert", live, urlErr(&net.OpError{Op: "remote error", Err: tls.AlertError(40)}), fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE},
		{"connection refused", live, dialErr("connect", syscall.ECONNREFUSED), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		{"connection reset", live, dialErr("read", syscall.ECONNRESET), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		{"broken pipe", live, dialErr("write", syscall.EPIPE), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		{"host unreachable", live, dialErr("connect", syscall.EHOSTUNREACH), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		{"unexpected EOF", live, fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		{"EOF before response", live, urlErr(io.EOF), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		{"deadline exceeded", live, urlErr(context.DeadlineExceeded), fetchv1.ErrorCode_ERROR_CODE_TIMEOUT},
		{"timeout under a wrapper that hides it", live, urlErr(fmt.Errorf("read: %w",
			&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded})), fetchv1.ErrorCode_ERROR_CODE_TIMEOUT},
		{"timeout in a joined error", live, urlErr(errors.Join(errors.New("x"),
			&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded})), fetchv1.ErrorCode_ERROR_CODE_TIMEOUT},
		{"job timeout cause", live, withCauseErr(context.Canceled, errJobTimeout), fetchv1.ErrorCode_ERROR_CODE_TIMEOUT},
		{"network timeout", live, urlErr(&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}), fetchv1.ErrorCode_ERROR_CODE_TIMEOUT},
		{"idle read timeout", live, fmt.Errorf("read body: %w", &h1.IdleReadError{Idle: time.Second,
			Err: &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}}), fetchv1.ErrorCode_ERROR_CODE_TIMEOUT},
		{"idle read timeout before the head", live, urlErr(&h1.IdleReadError{Idle: time.Second,
			Err: &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}}), fetchv1.ErrorCode_ERROR_CODE_TIMEOUT},
		{"context canceled", live, urlErr(context.Canceled), fetchv1.ErrorCode_ERROR_CODE_CANCELLED},
		{"blocked", live, urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: blocked}), fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{"ErrBlocked wrapped", live, fmt.Errorf("dial: %w", egress.ErrBlocked), fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{"port blocked", live, urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: &egress.BlockedError{
			Addr: netip.MustParseAddr("8.8.8.8"), Port: 22, Reason: "port 22 not allowed"}}), fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{"redirect to a denied host", live, urlErr(&Error{Code: fetchv1.ErrorCode_ERROR_CODE_BLOCKED, Err: fmt.Errorf("redirect: %w",
			&egress.BlockedError{Host: "denied.test", Reason: "host deny list denied.test"})}), fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
		{"*Error passes its code", live, urlErr(&Error{Code: fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED, Err: errors.New("stopped after 10 redirects")}), fetchv1.ErrorCode_ERROR_CODE_REDIRECT_REFUSED},
		{"*Error INTERNAL passes", live, &Error{Code: fetchv1.ErrorCode_ERROR_CODE_INTERNAL, Err: errors.New("bug")}, fetchv1.ErrorCode_ERROR_CODE_INTERNAL},
		{"response headers too big", live, urlErr(errors.New("net/http: server response headers exceeded 4096 bytes; aborted")), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"malformed response", live, urlErr(errors.New(`net/http: malformed HTTP response "SSH-2.0"`)), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		// HTTP/2 and net/http connection losses, which net/http reports
		// without a type: connection failures, which callers may retry.
		{"HTTP/2 connection force closed", live, urlErr(errors.New("http2: client connection force closed via ClientConn.Close")), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		{"HTTP/2 connection lost", live, urlErr(errors.New("http2: client connection lost")), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		{"HTTP/2 GOAWAY then close", live, fmt.Errorf("read body: %w", errors.New(`http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug=""`)), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		{"HTTP/2 stream reset", live, fmt.Errorf("read body: %w", errors.New("stream error: stream ID 1; INTERNAL_ERROR; received from peer")), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		{"HTTP/2 protocol violation", live, urlErr(errors.New("connection error: PROTOCOL_ERROR")), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"server closed idle connection", live, urlErr(errors.New("http: server closed idle connection")), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		{"closed network connection", live, fmt.Errorf("read body: %w", net.ErrClosed), fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE},
		// A broken body is a bad response, even where it ends in
		// io.ErrUnexpectedEOF: the framing was complete, the gzip was not.
		{"gzip cut short, lean", live, fmt.Errorf("read body: %w", fmt.Errorf("%w: gzip body: %w", h1.ErrBadResponse, io.ErrUnexpectedEOF)), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"gzip cut short, net/http", live, fmt.Errorf("read body: %w", fmt.Errorf("%w: gzip body: %w", errBadResponse, io.ErrUnexpectedEOF)), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"gzip header", live, fmt.Errorf("read body: %w", gzip.ErrHeader), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"gzip checksum", live, fmt.Errorf("read body: %w", gzip.ErrChecksum), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"flate corrupt", live, fmt.Errorf("read body: %w", flate.CorruptInputError(12)), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"malformed MIME header", live, urlErr(textproto.ProtocolError("malformed MIME header line: no colon")), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"malformed chunked encoding", live, fmt.Errorf("read body: %w", errors.New("malformed chunked encoding")), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"chunk line too long", live, fmt.Errorf("read body: %w", http.ErrLineTooLong), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"h1 unsolicited 101", live, urlErr(fmt.Errorf("%w: unsolicited 101 Switching Protocols", h1.ErrBadResponse)), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"net/http unsolicited 101", live, urlErr(fmt.Errorf("%w: unsolicited 101 Switching Protocols", errBadResponse)), fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE},
		{"scheme mismatch", live, urlErr(http.ErrSchemeMismatch), fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE},
		{"local TLS alert", live, urlErr(&net.OpError{Op: "local error", Err: errors.New("tls: protocol version not supported")}), fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE},
		// Nothing known: a fetchd bug, not a bad response by default,
		// whatever words a URL or wrapper holds.
		{"unknown", live, urlErr(errors.New("something fetchd has never seen")), fetchv1.ErrorCode_ERROR_CODE_INTERNAL},
		{"unknown under a URL with words", live, &url.Error{Op: "Get", URL: "http://malformed.test/invalid", Err: errors.New("something new")}, fetchv1.ErrorCode_ERROR_CODE_INTERNAL},
		{"h1 read on closed body", live, fmt.Errorf("read body: %w", errors.New("h1: read on closed response body")), fetchv1.ErrorCode_ERROR_CODE_INTERNAL},
		// The caller went away: whatever the transport said, the job was
		// cancelled, except that a refused destination stays BLOCKED.
		{"cancelled: reset", cancelled, dialErr("read", syscall.ECONNRESET), fetchv1.ErrorCode_ERROR_CODE_CANCELLED},
		{"cancelled: deadline exceeded", cancelled, urlErr(context.DeadlineExceeded), fetchv1.ErrorCode_ERROR_CODE_CANCELLED},
		{"cancelled: job timeout cause", cancelled, withCauseErr(context.Canceled, errJobTimeout), fetchv1.ErrorCode_ERROR_CODE_CANCELLED},
		{"cancelled: context canceled", cancelled, urlErr(context.Canceled), fetchv1.ErrorCode_ERROR_CODE_CANCELLED},
		{"cancelled: DNS", cancelled, &net.DNSError{Err: "no such host", Name: "x.test", IsNotFound: true}, fetchv1.ErrorCode_ERROR_CODE_CANCELLED},
		{"cancelled: TLS", cancelled, urlErr(x509.UnknownAuthorityError{}), fetchv1.ErrorCode_ERROR_CODE_CANCELLED},
		{"cancelled: blocked wins", cancelled, urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: blocked}), fetchv1.ErrorCode_ERROR_CODE_BLOCKED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.ctx, tt.err)
			if got.Code != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", tt.err, got.Code, tt.want)
			}
			if !errors.Is(got, tt.err) || got.Error() != tt.err.Error() {
				t.Errorf("Classify(%v) error = %q, want it to wrap the original", tt.err, got.Error())
			}
			p := got.Proto()
			if p.GetCode() != tt.want || p.GetMessage() != tt.err.Error() {
				t.Errorf("Classify(%v).Proto() = %v, want code %v, message %q", tt.err, p, tt.want, tt.err.Error())
			}
		})
	}
}

// withCauseErr builds the error withCause gives for err under a job context
// whose cause is cause.
func withCauseErr(err, cause error) error { return fmt.Errorf("%w (%w)", err, cause) }

func TestErrorUnwrap(t *testing.T) {
	inner := errors.New("inner")
	e := &Error{Code: fetchv1.ErrorCode_ERROR_CODE_BAD_RESPONSE, Err: fmt.Errorf("outer: %w", inner)}
	if !errors.Is(e, inner) {
		t.Errorf("errors.Is(%v, inner) = false, want true", e)
	}
	if e.Error() != "outer: inner" {
		t.Errorf("Error() = %q, want %q", e.Error(), "outer: inner")
	}
	var fe *Error
	if !errors.As(fmt.Errorf("wrapped: %w", e), &fe) || fe != e {
		t.Errorf("errors.As(wrapped) = %v, want %v", fe, e)
	}
}
