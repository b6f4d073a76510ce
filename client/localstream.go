package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/server"
)

// localResults is how many results a local stream holds sent by the
// engine and not yet received by the client, as gRPC's flow-control window
// holds a few: the engine's sender and the client's receiver then need
// not meet for every result.
const localResults = 64

// localStream is a Fetch stream to the embedded engine: the client's end,
// a [grpc.BidiStreamingClient], of channels into [server.Server.ServeLocal].
// As with a gRPC stream, one goroutine may call Send and CloseSend, and
// another Recv.
type localStream struct {
	// ctx is the stream's, which [grpc.ClientStream] returns from
	// Context: the call's, cancelled once the engine has served the
	// stream.
	ctx    context.Context
	cancel context.CancelFunc
	e      *engine

	jobs       chan *fetchv1.FetchRequest  // unbuffered: the engine reads a job when it has room for it
	halfClosed chan struct{}               // closed by CloseSend
	results    chan *fetchv1.FetchResponse // results and chunks, in order
	done       chan struct{}               // closed once ServeLocal has returned

	// Set before done is closed, read only after.
	err     error
	trailer metadata.MD
}

func newLocalStream(ctx context.Context, e *engine) *localStream {
	ctx, cancel := context.WithCancel(ctx)
	return &localStream{
		ctx:        ctx,
		cancel:     cancel,
		e:          e,
		jobs:       make(chan *fetchv1.FetchRequest),
		halfClosed: make(chan struct{}),
		results:    make(chan *fetchv1.FetchResponse, localResults),
		done:       make(chan struct{}),
	}
}

// serve runs the stream on srv until it ends, then ends the stream's
// context, which ends the engine's last read of it.
func (ls *localStream) serve(srv *server.Server) {
	defer close(ls.done)
	defer ls.cancel()
	recv := func() (*fetchv1.FetchRequest, error) {
		select {
		case j := <-ls.jobs:
			return j, nil
		case <-ls.halfClosed:
			return nil, io.EOF
		case <-ls.ctx.Done():
			return nil, ls.ctx.Err()
		}
	}
	send := func(r *fetchv1.FetchResponse) error {
		select {
		case ls.results <- r:
			return nil
		case <-ls.ctx.Done():
			return ls.ctx.Err()
		}
	}
	setTrailer := func(md metadata.MD) { ls.trailer = metadata.Join(ls.trailer, md) }
	err := srv.ServeLocal(ls.ctx, recv, send, setTrailer)
	if err != nil && ls.e.isStopped() {
		err = fmt.Errorf("%w (%w)", errEngineStopped, err)
	}
	ls.err = err
}

// Send hands the engine a job, once it takes it. It returns io.EOF if the
// stream has ended, as a gRPC stream's Send does; Recv returns why.
func (ls *localStream) Send(j *fetchv1.FetchRequest) error {
	select {
	case <-ls.halfClosed:
		return errors.New("client: send on a local stream after CloseSend")
	default:
	}
	select {
	case ls.jobs <- j:
		return nil
	case <-ls.done:
		return io.EOF
	case <-ls.ctx.Done():
		return io.EOF
	}
}

// CloseSend half-closes the stream: the engine reads io.EOF after the
// jobs sent. Call it once, from the goroutine that calls Send.
func (ls *localStream) CloseSend() error {
	close(ls.halfClosed)
	return nil
}

// Recv returns the next result or chunk, or, once the engine has served
// the stream and every message has been received, io.EOF if it ended OK,
// else its status error (wrapping [ErrClosed] if the client was closed).
// It returns an error only once the engine's work for the stream is over:
// after a cancel, once its jobs have ended.
func (ls *localStream) Recv() (*fetchv1.FetchResponse, error) {
	select {
	case r := <-ls.results:
		return r, nil
	case <-ls.done:
	}
	select {
	case r := <-ls.results: // sent before the end
		return r, nil
	default:
	}
	if ls.err == nil {
		return nil, io.EOF
	}
	return nil, ls.err
}

// Header returns no metadata: the engine sends none.
func (ls *localStream) Header() (metadata.MD, error) { return nil, nil }

// Trailer returns the stream's trailer once Recv has returned an error,
// else nil.
func (ls *localStream) Trailer() metadata.MD {
	select {
	case <-ls.done:
		return ls.trailer
	default:
		return nil
	}
}

// Context returns the stream's context.
func (ls *localStream) Context() context.Context { return ls.ctx }

// SendMsg is Send for m, a *fetchv1.FetchRequest.
func (ls *localStream) SendMsg(m any) error {
	j, ok := m.(*fetchv1.FetchRequest)
	if !ok {
		return fmt.Errorf("client: local stream: SendMsg of %T, want *fetchv1.FetchRequest", m)
	}
	return ls.Send(j)
}

// RecvMsg is Recv into m, a *fetchv1.FetchResponse.
func (ls *localStream) RecvMsg(m any) error {
	dst, ok := m.(*fetchv1.FetchResponse)
	if !ok {
		return fmt.Errorf("client: local stream: RecvMsg into %T, want *fetchv1.FetchResponse", m)
	}
	r, err := ls.Recv()
	if err != nil {
		return err
	}
	proto.Reset(dst)
	proto.Merge(dst, r)
	return nil
}
