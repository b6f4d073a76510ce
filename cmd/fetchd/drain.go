package main

import (
	"context"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// callTracker counts the open fetch streams, the work a drain waits for.
// Other streams wait for their caller, not for fetchd, and must not hold
// the drain: health Watch streams end through [drainingHealth], and any
// other stream (reflection's, which grpcurl keeps open beside its call) has
// its next receive fail once end is closed, when the fetch streams are done.
type callTracker struct {
	end   <-chan struct{} // closed when the other streams must end
	recvs sync.WaitGroup  // receives of other streams still blocked in gRPC

	mu     sync.Mutex    // guards open and idleCh
	open   int           // fetch streams in their handler
	idleCh chan struct{} // made by idle; closed when open drops to 0
}

// intercept is a stream interceptor that counts the fetch streams while
// their handler runs.
func (c *callTracker) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	switch {
	case info.FullMethod == healthpb.Health_Watch_FullMethodName:
		return handler(srv, ss)
	case !isFetchMethod(info.FullMethod):
		return handler(srv, &endingStream{ServerStream: ss, end: c.end, recvs: &c.recvs})
	}
	c.mu.Lock()
	c.open++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.open--
		if c.open == 0 && c.idleCh != nil {
			close(c.idleCh)
			c.idleCh = nil
		}
	}()
	return handler(srv, ss)
}

// isFetchMethod reports whether fullMethod is one of the fetch service's:
// the work that drains wait for and that keeps a connection's slot.
func isFetchMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/"+fetchv1.FetchService_ServiceDesc.ServiceName+"/")
}

// endingStream is a server stream whose receives fail with UNAVAILABLE
// once end is closed, so that a handler waiting for its caller's next
// message returns. A receive cut short this way leaves gRPC's own receive
// blocked until the stream ends, just after its handler returns; recvs
// counts those, and serve waits for them once the server has stopped.
type endingStream struct {
	grpc.ServerStream
	end   <-chan struct{}
	recvs *sync.WaitGroup
}

func (s *endingStream) RecvMsg(m any) error {
	select {
	case <-s.end:
		return errStreamEnded
	default:
	}
	done := make(chan error, 1)
	s.recvs.Go(func() { done <- s.ServerStream.RecvMsg(m) })
	select {
	case err := <-done:
		return err
	case <-s.end:
		return errStreamEnded
	}
}

var errStreamEnded = status.Error(codes.Unavailable, "fetchd has drained; the stream ends")

// idle returns a channel closed once no counted stream is open: at once if
// none is now. Call it once, when the server drains.
func (c *callTracker) idle() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	if c.open == 0 {
		close(ch)
	} else {
		c.idleCh = ch
	}
	return ch
}

// drainingHealth is the health service of both ports. Its Watch streams
// follow [health.Server]'s, and end with UNAVAILABLE once endWatches is
// called, after they have sent the final status (NOT_SERVING once the
// server drains).
type drainingHealth struct {
	*health.Server
	end     chan struct{} // closed by endWatches
	endOnce sync.Once
}

// endWatches ends every Watch stream, current and future.
func (h *drainingHealth) endWatches() { h.endOnce.Do(func() { close(h.end) }) }

// Watch implements grpc.health.v1.Health.Watch.
func (h *drainingHealth) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var wg sync.WaitGroup
	returned := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-h.end:
			cancel()
		case <-returned:
		}
	}()
	defer wg.Wait()
	defer close(returned)

	ws := &watchStream{Health_WatchServer: stream, ctx: ctx}
	err := h.Server.Watch(req, ws)
	select {
	case <-h.end:
	default:
		return err
	}
	if stream.Context().Err() != nil {
		return err
	}
	// Watch may have seen the end before the last change of status: send
	// it, so that the watcher learns NOT_SERVING before the stream ends.
	if resp, cerr := h.Server.Check(stream.Context(), req); cerr == nil && (!ws.sent || resp.GetStatus() != ws.last) {
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return status.Error(codes.Unavailable, "fetchd has drained; the health watch ends")
}

// watchStream is a Watch stream with the context that endWatches cancels,
// which remembers the last status sent.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx  context.Context
	sent bool
	last healthpb.HealthCheckResponse_ServingStatus
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(r *healthpb.HealthCheckResponse) error {
	w.sent, w.last = true, r.GetStatus()
	return w.Health_WatchServer.Send(r)
}
