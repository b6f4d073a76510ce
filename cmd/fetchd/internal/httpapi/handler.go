package httpapi

import (
	"errors"
	"fmt"
	"mime"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Path is the path of the FetchBatch call.
const Path = "/v1/fetch"

// ContentTypeNDJSON is the Content-Type of a streamed answer: one JSON
// value per line.
const ContentTypeNDJSON = "application/x-ndjson"

// DefaultMaxRequestBytes is the default [Config.MaxRequestBytes], gRPC's
// default receive limit.
const DefaultMaxRequestBytes = 4 << 20

// fetchBatch is the name of the method served.
const fetchBatch = "FetchBatch"

// Config configures a [Handler].
type Config struct {
	// Register registers the fetch.v1.FetchService whose FetchBatch
	// handler serves the calls, as [server.Server.Register] does. Required.
	Register func(grpc.ServiceRegistrar)
	// Interceptors run around each call, the first outermost, as
	// [grpc.ChainStreamInterceptor] runs them. Default: none.
	Interceptors []grpc.StreamServerInterceptor
	// MaxRequestBytes caps a request body; a larger one is refused with
	// 413. Zero means [DefaultMaxRequestBytes].
	MaxRequestBytes int64
}

// Handler is the [http.Handler] of FetchBatch over HTTP/JSON. Create it
// with [New].
type Handler struct {
	srv      any                // the service implementation, for handler
	handler  grpc.StreamHandler // the service's FetchBatch handler
	method   string             // its full method name
	chain    grpc.StreamServerInterceptor
	maxBytes int64
}

// New returns the Handler of cfg. It fails if cfg.Register registers no
// FetchBatch stream.
func New(cfg Config) (*Handler, error) {
	if cfg.Register == nil {
		return nil, errors.New("httpapi: Config.Register is nil")
	}
	var reg registrar
	cfg.Register(&reg)
	if reg.desc == nil {
		return nil, errors.New("httpapi: Config.Register registered no service")
	}
	h := &Handler{srv: reg.impl, maxBytes: cfg.MaxRequestBytes, chain: chain(cfg.Interceptors)}
	if h.maxBytes <= 0 {
		h.maxBytes = DefaultMaxRequestBytes
	}
	for _, sd := range reg.desc.Streams {
		if sd.StreamName == fetchBatch && sd.ServerStreams && !sd.ClientStreams {
			h.handler = sd.Handler
			h.method = "/" + reg.desc.ServiceName + "/" + fetchBatch
		}
	}
	if h.handler == nil {
		return nil, fmt.Errorf("httpapi: service %s has no server-streaming %s", reg.desc.ServiceName, fetchBatch)
	}
	return h, nil
}

// ServeHTTP serves one call: see the package doc for the wire format.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != Path {
		writeStatus(w, http.StatusNotFound, status.New(codes.NotFound, "no such path: POST "+Path+" is the only one"))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeStatus(w, http.StatusMethodNotAllowed, status.Newf(codes.Unimplemented, "method %s not allowed: POST %s", r.Method, Path))
		return
	}
	if err := checkContent(r.Header); err != nil {
		writeStatus(w, http.StatusUnsupportedMediaType, status.New(codes.InvalidArgument, err.Error()))
		return
	}
	ss := newStream(w, r, h.maxBytes)
	info := &grpc.StreamServerInfo{FullMethod: h.method, IsServerStream: true}
	var err error
	if h.chain != nil {
		err = h.chain(h.srv, ss, info, h.handler)
	} else {
		err = h.handler(h.srv, ss)
	}
	ss.finish(err)
}

// checkContent accepts a body that is JSON, or says nothing else: no
// Content-Type, application/json, or application/x-www-form-urlencoded,
// which curl -d sends unless told otherwise. A compressed body is refused.
func checkContent(hdr http.Header) error {
	if ce := hdr.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return fmt.Errorf("Content-Encoding %q not supported: send the JSON body uncompressed", ce)
	}
	ct := hdr.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %w", ct, err)
	}
	switch mt {
	case "application/json", "application/x-www-form-urlencoded":
		return nil
	}
	return fmt.Errorf("Content-Type %q not supported: the body is a protobuf-JSON fetch.v1.FetchBatchRequest (application/json)", ct)
}

// chain returns one interceptor running ics in order, the first outermost;
// nil for none.
func chain(ics []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	if len(ics) == 0 {
		return nil
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return ics[0](srv, ss, info, next(ics[1:], info, handler))
	}
}

// next returns handler behind ics.
func next(ics []grpc.StreamServerInterceptor, info *grpc.StreamServerInfo, handler grpc.StreamHandler) grpc.StreamHandler {
	if len(ics) == 0 {
		return handler
	}
	return func(srv any, ss grpc.ServerStream) error {
		return ics[0](srv, ss, info, next(ics[1:], info, handler))
	}
}

// registrar captures the service a Register function registers.
type registrar struct {
	desc *grpc.ServiceDesc
	impl any
}

// RegisterService implements [grpc.ServiceRegistrar].
func (r *registrar) RegisterService(desc *grpc.ServiceDesc, impl any) { r.desc, r.impl = desc, impl }
