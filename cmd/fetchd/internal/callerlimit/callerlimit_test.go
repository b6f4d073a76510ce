package callerlimit

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/fetchd/fetchd/cmd/fetchd/internal/tokenauth"
)

func fromIP(ip string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
}

func TestLimitPerCaller(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(1, 3)
	l.now = func() time.Time { return now }
	a, b := fromIP("10.0.0.1"), fromIP("10.0.0.2")
	for i := range 3 {
		if err := l.Limit(a); err != nil {
			t.Fatalf("call %d of burst 3: %v", i, err)
		}
	}
	if err := l.Limit(a); err == nil {
		t.Error("4th call at once = nil, want over the rate")
	}
	if err := l.Limit(b); err != nil {
		t.Errorf("another caller: %v, want its own bucket", err)
	}
	now = now.Add(time.Second)
	if err := l.Limit(a); err != nil {
		t.Errorf("after 1s: %v, want one token refilled", err)
	}
	// Idle buckets are dropped.
	now = now.Add(idleAfter + time.Minute)
	l.Limit(b)
	l.mu.Lock()
	n := len(l.callers)
	l.mu.Unlock()
	if n != 1 {
		t.Errorf("%d buckets after the sweep, want 1", n)
	}
}

func TestKey(t *testing.T) {
	tok := tokenauth.New("s3cret")
	authed, err := tok.AuthFunc()(metadata.NewIncomingContext(fromIP("10.0.0.1"), metadata.Pairs("authorization", "Bearer s3cret")))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"ip", fromIP("10.0.0.1"), "ip:10.0.0.1"},
		{"ipv6", fromIP("::1"), "ip:::1"},
		{"token wins over ip", authed, tokenauth.Caller(authed)},
		{"nothing", context.Background(), "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Key(tt.ctx); got != tt.want {
				t.Errorf("Key = %q, want %q", got, tt.want)
			}
		})
	}
}
