package httpapi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// stream is a [grpc.ServerStream] made of one HTTP exchange: RecvMsg
// reads the request body once, SendMsg writes a result line and flushes
// it. Its handler's goroutine alone calls RecvMsg and SendMsg, as gRPC
// requires of a handler.
type stream struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	body     io.ReadCloser
	ctx      context.Context
	maxBytes int64

	read     bool // RecvMsg has read the body
	tooLarge bool // and it was over maxBytes
	started  bool // the 200 is written, with at least one line

	mu      sync.Mutex  // guards header and trailer
	header  metadata.MD // set by SetHeader, sent with the first line
	trailer metadata.MD // set by SetTrailer, sent at the end
}

// newStream returns the stream of r, answered on w.
func newStream(w http.ResponseWriter, r *http.Request, maxBytes int64) *stream {
	return &stream{
		w:        w,
		rc:       http.NewResponseController(w),
		body:     r.Body,
		ctx:      callContext(r),
		maxBytes: maxBytes,
	}
}

// callContext returns r's context with what gRPC would have put in a
// call's: the peer (its address, and the TLS state as AuthInfo) and the
// incoming metadata (the Authorization header as "authorization").
func callContext(r *http.Request) context.Context {
	ctx := r.Context()
	p := &peer.Peer{Addr: addrOf(r.RemoteAddr)}
	if la, ok := ctx.Value(http.LocalAddrContextKey).(net.Addr); ok {
		p.LocalAddr = la
	}
	if r.TLS != nil {
		p.AuthInfo = credentials.TLSInfo{
			State:          *r.TLS,
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		}
	}
	ctx = peer.NewContext(ctx, p)
	md := metadata.MD{}
	if vs := r.Header.Values("Authorization"); len(vs) > 0 {
		md["authorization"] = vs
	}
	return metadata.NewIncomingContext(ctx, md)
}

// addrOf parses an http.Request's RemoteAddr, ip:port, as the TCP address
// gRPC would give.
func addrOf(remote string) net.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return stringAddr(remote)
}

// stringAddr is a peer address that does not parse as ip:port.
type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

// Context returns the call's context: the request's, done when the caller
// disconnects.
func (s *stream) Context() context.Context { return s.ctx }

// SetHeader adds md to the headers sent with the first line.
func (s *stream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("httpapi: SetHeader after the first message")
	}
	s.header = metadata.Join(s.header, md)
	return nil
}

// SendHeader adds md to the headers; they are sent with the first line.
func (s *stream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

// SetTrailer adds md to the trailer sent at the end.
func (s *stream) SetTrailer(md metadata.MD) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trailer = metadata.Join(s.trailer, md)
}

// RecvMsg reads the request body, at most maxBytes of it, as a
// protobuf-JSON FetchBatchRequest, into m; the next call returns io.EOF.
// m is any proto message the request's binary form decodes into: the
// server's handler receives raw bytes.
func (s *stream) RecvMsg(m any) error {
	if s.read {
		return io.EOF
	}
	s.read = true
	pm, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "httpapi: RecvMsg into %T, not a proto message", m)
	}
	b, err := io.ReadAll(http.MaxBytesReader(s.w, s.body, s.maxBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		s.tooLarge = true
		return status.Errorf(codes.ResourceExhausted, "request body larger than %d bytes (-max-recv-msg-bytes)", s.maxBytes)
	case err != nil && s.ctx.Err() != nil:
		return status.FromContextError(s.ctx.Err()).Err()
	case err != nil:
		return status.Errorf(codes.InvalidArgument, "read request body: %v", err)
	}
	req := new(fetchv1.FetchBatchRequest)
	if err := protojson.Unmarshal(b, req); err != nil {
		return status.Errorf(codes.InvalidArgument, "request body is not a protobuf-JSON fetch.v1.FetchBatchRequest: %s", plain(err))
	}
	bin, err := proto.Marshal(req)
	if err == nil {
		err = proto.Unmarshal(bin, pm)
	}
	if err != nil {
		return status.Errorf(codes.Internal, "httpapi: re-encode the request: %v", err)
	}
	return nil
}

// SendMsg writes m as one line and flushes it: the result of a
// FetchBatchResponse, any other message as it is.
func (s *stream) SendMsg(m any) error {
	var msg proto.Message
	switch v := m.(type) {
	case *fetchv1.FetchBatchResponse:
		msg = v.GetResult()
	case proto.Message:
		msg = v
	default:
		return status.Errorf(codes.Internal, "httpapi: SendMsg of %T, not a proto message", m)
	}
	b, err := marshal(msg)
	if err != nil {
		return status.Errorf(codes.Internal, "httpapi: marshal result: %v", err)
	}
	if !s.started {
		s.mu.Lock()
		s.started = true
		hdr := s.w.Header()
		setMetadata(hdr, s.header)
		s.mu.Unlock()
		hdr.Set("Content-Type", ContentTypeNDJSON)
		hdr.Set("X-Content-Type-Options", "nosniff")
		s.w.WriteHeader(http.StatusOK)
	}
	if _, err := s.w.Write(append(b, '\n')); err != nil {
		return s.writeErr(err)
	}
	if err := s.rc.Flush(); err != nil {
		return s.writeErr(err)
	}
	return nil
}

// writeErr is the status of a failed write: the caller went away.
func (s *stream) writeErr(err error) error {
	if cerr := s.ctx.Err(); cerr != nil {
		return status.FromContextError(cerr).Err()
	}
	return status.Errorf(codes.Unavailable, "write to caller: %v", err)
}

// finish ends the answer with the call's outcome err: nothing more after
// results if nil; else a JSON status, or a last status line once results
// were sent.
func (s *stream) finish(err error) {
	s.mu.Lock()
	header, trailer := s.header, s.trailer
	s.mu.Unlock()
	if !s.started {
		setMetadata(s.w.Header(), metadata.Join(header, trailer))
		if err == nil {
			s.w.Header().Set("Content-Type", ContentTypeNDJSON)
			s.w.WriteHeader(http.StatusOK)
			return
		}
		st := status.Convert(err)
		code := HTTPStatus(st.Code())
		if s.tooLarge && st.Code() == codes.ResourceExhausted {
			code = http.StatusRequestEntityTooLarge
		}
		writeStatus(s.w, code, st)
		return
	}
	if err == nil || s.ctx.Err() != nil {
		return // done, or nobody is reading
	}
	if _, werr := s.w.Write(statusLine(status.Convert(err), trailer)); werr == nil {
		s.rc.Flush()
	}
}

// setMetadata adds md to hdr, but for the keys gRPC reserves.
func setMetadata(hdr http.Header, md metadata.MD) {
	for k, vs := range md {
		if strings.HasPrefix(k, "grpc-") || strings.HasPrefix(k, ":") || strings.HasSuffix(k, "-bin") {
			continue
		}
		for _, v := range vs {
			hdr.Add(k, v)
		}
	}
}
