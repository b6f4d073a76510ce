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
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/server/internal/egress"
)

// startDNS runs a tiny authoritative DNS server on 127.0.0.1 (UDP) that
// answers A queries for the names in records (fully qualified, lower case)
// and NXDOMAIN for every other name, and returns a resolver that sends every
// query to it, and a count of the queries answered. It stops when tb ends.
func startDNS(tb testing.TB, records map[string]netip.Addr) (*net.Resolver, *atomic.Int64) {
	tb.Helper()
	return startDNSFunc(tb, func(name string, _ dnsmessage.Type) ([]netip.Addr, bool) {
		addr, ok := records[name]
		return []netip.Addr{addr}, ok
	})
}

// dnsAnswerFunc answers one query for name (fully qualified, lower case):
// the addresses to answer with, of which those of the queried type are
// sent, and whether the name exists (else NXDOMAIN). It is called from one
// goroutine, one query at a time.
type dnsAnswerFunc func(name string, qtype dnsmessage.Type) (addrs []netip.Addr, exists bool)

// startDNSFunc is startDNS with answers from answer.
func startDNSFunc(tb testing.TB, answer dnsAnswerFunc) (*net.Resolver, *atomic.Int64) {
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
			if msg, err := answerDNS(buf[:n], answer); err == nil {
				queries.Add(1)
				pc.WriteTo(msg, from)
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

// answerDNS answers the query in msg with answer.
func answerDNS(msg []byte, answer dnsAnswerFunc) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	addrs, known := answer(strings.ToLower(q.Name.String()), q.Type)
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
	for _, addr := range addrs {
		if !known {
			break
		}
		rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
		switch {
		case q.Type == dnsmessage.TypeA && addr.Is4():
			err = b.AResource(rr, dnsmessage.AResource{A: addr.As4()})
		case q.Type == dnsmessage.TypeAAAA && addr.Is6() && !addr.Is4In6():
			err = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: addr.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func TestFetchDNS(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
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
				f := newFetcher(t, engine, tt.cfg)
				before := queries.Load()
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
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
	})
}

// listenSamePort listens on TCP port P of both 127.0.0.2 and 127.0.0.1, for
// some free P, so that one URL reaches either address depending on what its
// name resolves to.
func listenSamePort(tb testing.TB) (two, one net.Listener) {
	tb.Helper()
	for range 50 {
		two, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			tb.Fatalf("listen on 127.0.0.2: %v", err)
		}
		port := two.Addr().(*net.TCPAddr).Port
		one, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return two, one
		}
		two.Close()
	}
	tb.Fatal("found no port free on both 127.0.0.2 and 127.0.0.1")
	return nil, nil
}

// rebindSetup starts an allowed upstream on 127.0.0.2 and a denied one on
// 127.0.0.1 at the same port, and a policy opening 127.0.0.2 only.
func rebindSetup(tb testing.TB) (port int, allowedConns, deniedConns *atomic.Int64, policy *egress.Policy) {
	tb.Helper()
	two, one := listenSamePort(tb)
	allowed, allowedConns := startServerOn(tb, two, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "allowed") }, false)
	_, deniedConns = startServerOn(tb, one, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "LEAKED") }, false)
	port = allowed.Listener.Addr().(*net.TCPAddr).Port
	return port, allowedConns, deniedConns, egress.NewPolicy(egress.AllowCIDRs(netip.MustParsePrefix("127.0.0.2/32")))
}

var (
	allowedAddr = netip.MustParseAddr("127.0.0.2")
	deniedAddr  = netip.MustParseAddr("127.0.0.1")
)

// TestFetchDNSRebinding: a name that resolves to an allowed address when
// first looked up and to a denied one the next time. The guard judges each
// dial's resolved address, so the second fetch is refused before connect:
// the denied upstream, listening on the very address and port the name now
// points to, never sees a connection.
func TestFetchDNSRebinding(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		port, allowedConns, deniedConns, policy := rebindSetup(t)
		var aQueries atomic.Int64
		resolver, _ := startDNSFunc(t, func(name string, qtype dnsmessage.Type) ([]netip.Addr, bool) {
			if name != "rebind.test." {
				return nil, false
			}
			if qtype != dnsmessage.TypeA {
				return nil, true
			}
			if aQueries.Add(1) == 1 {
				return []netip.Addr{allowedAddr}, true
			}
			return []netip.Addr{deniedAddr}, true
		})
		f := newFetcher(t, engine, Config{Policy: policy, Resolver: resolver})
		url := "http://rebind.test:" + strconv.Itoa(port) + "/"

		first := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
		wantCode(t, url, first, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED)
		if first.GetStatusCode() != 200 || string(first.GetBody()) != "allowed" {
			t.Fatalf("first Fetch(%q) = %d %q, want 200 %q", url, first.GetStatusCode(), first.GetBody(), "allowed")
		}
		// A fresh connection for the second fetch: it must resolve again.
		f.Close()

		second := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
		wantCode(t, url, second, fetchv1.ErrorCode_ERROR_CODE_BLOCKED)
		if msg := second.GetError().GetMessage(); !strings.Contains(msg, "127.0.0.1") {
			t.Errorf("second Fetch(%q).Error.Message = %q, want it to name 127.0.0.1", url, msg)
		}
		if n := aQueries.Load(); n != 2 {
			t.Errorf("the fake DNS server answered %d A queries for rebind.test, want 2 (one per fetch)", n)
		}
		if n := allowedConns.Load(); n != 1 {
			t.Errorf("allowed upstream saw %d connections, want 1", n)
		}
		if n := deniedConns.Load(); n != 0 {
			t.Errorf("denied upstream saw %d connections, want 0: the guard must refuse before connect", n)
		}
	})
}

// TestFetchDNSMixedAnswers: one answer holding an allowed and a denied
// address, in either order. Go's dialer tries the addresses in turn; the
// guard refuses the denied one before connect and the dial falls through to
// the allowed one, so the fetch succeeds, and the denied upstream never sees
// a connection. With only denied addresses the fetch is BLOCKED.
func TestFetchDNSMixedAnswers(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		port, allowedConns, deniedConns, policy := rebindSetup(t)
		records := map[string][]netip.Addr{
			"allowed-first.test.": {allowedAddr, deniedAddr},
			"denied-first.test.":  {deniedAddr, allowedAddr},
			"denied-only.test.":   {deniedAddr, netip.MustParseAddr("169.254.169.254")},
		}
		resolver, _ := startDNSFunc(t, func(name string, _ dnsmessage.Type) ([]netip.Addr, bool) {
			addrs, ok := records[name]
			return addrs, ok
		})
		tests := []struct {
			host     string
			wantCode fetchv1.ErrorCode
			wantBody string
		}{
			{"allowed-first.test", fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, "allowed"},
			{"denied-first.test", fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, "allowed"},
			{"denied-only.test", fetchv1.ErrorCode_ERROR_CODE_BLOCKED, ""},
		}
		for _, tt := range tests {
			t.Run(tt.host, func(t *testing.T) {
				// A Fetcher per case: every fetch resolves and dials anew.
				f := newFetcher(t, engine, Config{Policy: policy, Resolver: resolver})
				url := "http://" + net.JoinHostPort(tt.host, strconv.Itoa(port)) + "/"
				before := allowedConns.Load()
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: url}, testLimits)
				wantCode(t, url, resp, tt.wantCode)
				if string(resp.GetBody()) != tt.wantBody {
					t.Errorf("Fetch(%q) body = %q, want %q", url, resp.GetBody(), tt.wantBody)
				}
				t.Logf("Fetch(%q) with answer %v: status %d, error %v, allowed upstream connections +%d",
					url, records[tt.host+"."], resp.GetStatusCode(), resp.GetError(), allowedConns.Load()-before)
				if n := deniedConns.Load(); n != 0 {
					t.Fatalf("denied upstream saw %d connections, want 0", n)
				}
				if got, want := allowedConns.Load()-before, int64(len(tt.wantBody)/len("allowed")); got != want {
					t.Errorf("Fetch(%q): allowed upstream saw %d new connections, want %d", url, got, want)
				}
			})
		}
	})
}
