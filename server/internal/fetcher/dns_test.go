package fetcher

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// startDNS runs a tiny authoritative DNS server on 127.0.0.1 (UDP) that
// answers A queries for the names in records (fully qualified, lower case)
// and NXDOMAIN for every other name, and returns a resolver that sends every
// query to it, and a count of the queries answered. It stops when tb ends.
func startDNS(tb testing.TB, records map[string]netip.Addr) (*net.Resolver, *atomic.Int64) {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	queries := new(atomic.Int64)
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if answer, err := answerDNS(buf[:n], records); err == nil {
				queries.Add(1)
				pc.WriteTo(answer, from)
			}
		}
	})
	tb.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	addr := pc.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}, queries
}

// answerDNS answers the query in msg from records.
func answerDNS(msg []byte, records map[string]netip.Addr) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	addr, known := records[strings.ToLower(q.Name.String())]
	rh := dnsmessage.Header{
		ID: h.ID, Response: true, Authoritative: true,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true,
	}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if known && q.Type == dnsmessage.TypeA && addr.Is4() {
		rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
		if err := b.AResource(rr, dnsmessage.AResource{A: addr.As4()}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func TestFetchDNS(t *testing.T) {
	t.Parallel()
	srv, conns := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "via DNS") })
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	resolver, queries := startDNS(t, map[string]netip.Addr{
		"upstream.test.": netip.MustParseAddr("127.0.0.1"),
	})
	tests := []struct {
		name      string
		cfg       Config
		host      string
		wantCode  fetchv1.ErrorCode
		wantBody  string
		wantConns int64 // connections the upstream has seen after this case
	}{
		{
			name:     "NXDOMAIN",
			cfg:      Config{Policy: loopbackPolicy(), Resolver: resolver},
			host:     "does-not-exist.test",
			wantCode: fetchv1.ErrorCode_ERROR_CODE_DNS_FAILURE,
		},
		{
			// The guard judges the resolved address, not the name.
			name:     "name resolving to loopback, default policy",
			cfg:      Config{Resolver: resolver},
			host:     "upstream.test",
			wantCode: fetchv1.ErrorCode_ERROR_CODE_BLOCKED,
		},
		{
			name:      "name resolving to loopback, loopback allowed",
			cfg:       Config{Policy: loopbackPolicy(), Resolver: resolver},
			host:      "upstream.test",
			wantBody:  "via DNS",
			wantConns: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := "http://" + net.JoinHostPort(tt.host, strconv.Itoa(port)) + "/"
			f := newFetcher(t, tt.cfg)
			before := queries.Load()
			resp := doFetch(testCtx(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
			wantCode(t, url, resp, tt.wantCode)
			if string(resp.GetBody()) != tt.wantBody {
				t.Errorf("Fetch(%q) body = %q, want %q", url, resp.GetBody(), tt.wantBody)
			}
			if queries.Load() == before {
				t.Errorf("Fetch(%q): the fake DNS server saw no query, want the name resolved through it", url)
			}
			if n := conns.Load(); n != tt.wantConns {
				t.Errorf("after Fetch(%q) the upstream has seen %d connections, want %d", url, n, tt.wantConns)
			}
		})
	}
}
