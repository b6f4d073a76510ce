package server

import (
	"context"
	"errors"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFinishStatus checks that a stream's final status, the one its log line
// and the gRPC interceptors report, is the one the caller got.
func TestFinishStatus(t *testing.T) {
	tooBig := status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5000 vs. 1000)")
	tests := []struct {
		name     string
		recvErr  error
		sendErr  error
		ctxEnd   string // "": open; "cancel": the caller cancelled; "deadline": the caller's deadline passed and it reset the stream
		drained  bool
		wantCode codes.Code
	}{
		{name: "message over the limit ends the call", recvErr: tooBig, ctxEnd: "cancel", wantCode: codes.ResourceExhausted},
		{name: "undecodable message", recvErr: status.Error(codes.Internal, "grpc: failed to unmarshal"), ctxEnd: "cancel", wantCode: codes.Internal},
		{name: "caller cancelled", recvErr: status.Error(codes.Canceled, "context canceled"), ctxEnd: "cancel", wantCode: codes.Canceled},
		{name: "deadline passed, stream reset by the caller", recvErr: status.Error(codes.Canceled, "context canceled"), ctxEnd: "deadline", wantCode: codes.DeadlineExceeded},
		{name: "send failed after the deadline", sendErr: status.Error(codes.Unavailable, "transport is closing"), ctxEnd: "deadline", wantCode: codes.DeadlineExceeded},
		{name: "caller cancelled shortly before the deadline", recvErr: status.Error(codes.Canceled, "context canceled"), ctxEnd: "cancel near the deadline", wantCode: codes.Canceled},
		{name: "drained", drained: true, wantCode: codes.Unavailable},
		{name: "half-closed", recvErr: nil, wantCode: codes.OK},
		{name: "recv error on an open call", recvErr: io.ErrUnexpectedEOF, wantCode: codes.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := New(WithLogger(quiet))
				defer s.Close()
				parent, cancelParent := context.WithTimeout(context.Background(), time.Second)
				defer cancelParent()
				ctx, cancel := context.WithCancel(parent)
				defer cancel()
				switch tt.ctxEnd {
				case "cancel":
					cancel()
				case "deadline":
					// The caller's timer fires and it resets the stream
					// a little before the server's copy of the deadline:
					// ctx says Canceled.
					time.Sleep(time.Second - deadlineSlack/2)
					cancel()
				case "cancel near the deadline":
					time.Sleep(time.Second - 2*deadlineSlack)
					cancel()
				}
				err := s.finish(ctx, time.Now(), &summary{}, tt.recvErr, tt.sendErr, tt.drained)
				if got := status.Code(err); got != tt.wantCode && !(tt.wantCode == codes.Unknown && errors.Is(err, io.ErrUnexpectedEOF)) {
					t.Errorf("finish(recv %v, send %v, ctx %q) = %v, want code %v", tt.recvErr, tt.sendErr, tt.ctxEnd, err, tt.wantCode)
				}
			})
		})
	}
}
