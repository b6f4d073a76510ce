package fetcher

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/server/internal/egress"
)

// namedLoopback starts a fake DNS server resolving every name under .test
// to 127.0.0.1, and counts the queries per name (fully qualified).
func namedLoopback(tb testing.TB) (*net.Resolver, func(name string) int) {
	tb.Helper()
	var (
		mu      sync.Mutex // guards queries
		queries = map[string]int{}
	)
	resolver, _ := startDNSFunc(tb, func(name string, _ dnsmessage.Type) ([]netip.Addr, bool) {
		mu.Lock()
		queries[name]++
		mu.Unlock()
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, strings.HasSuffix(name, ".test.")
	})
	return resolver, func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		return queries[name]
	}
}

// TestFetchHostLists: host names on the deny list, or off the allow list,
// are refused on the job's URL and on every redirect hop, before the name
// is resolved: BLOCKED, not REDIRECT_REFUSED.
func TestFetchHostLists(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		var (
			mu     sync.Mutex // guards landed
			landed = map[string]int{}
		)
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			if to := r.URL.Query().Get("to"); to != "" {
				http.Redirect(w, r, to, http.StatusFound)
				return
			}
			mu.Lock()
			landed[r.Host]++
			mu.Unlock()
			io.WriteString(w, "landed at "+r.Host)
		})
		port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
		at := func(host string) string { return "http://" + net.JoinHostPort(host, port) + "/" }
		via := func(from, to string) string { return at(from) + "?to=" + url.QueryEscape(to) }
		resolver, queries := namedLoopback(t)
		loopback := egress.AllowCIDRs(netip.MustParsePrefix("127.0.0.0/8"))
		denyPolicy := egress.NewPolicy(loopback, egress.DenyHosts("denied.test", "*.internal.test"))
		allowPolicy := egress.NewPolicy(loopback, egress.AllowHosts("start.test", "*.ok.test"))

		tests := []struct {
			name       string
			policy     *egress.Policy
			url        string
			wantCode   fetchv1.ErrorCode
			wantBody   string
			neverAsked string // a name that must be neither resolved nor reached
		}{
			{"URL host denied", denyPolicy, at("denied.test"), fetchv1.ErrorCode_ERROR_CODE_BLOCKED, "", "denied.test"},
			{"URL host denied by wildcard", denyPolicy, at("db.internal.test"), fetchv1.ErrorCode_ERROR_CODE_BLOCKED, "", "db.internal.test"},
			{"redirect to denied host", denyPolicy, via("start.test", at("denied.test")), fetchv1.ErrorCode_ERROR_CODE_BLOCKED, "", "denied.test"},
			{"redirect to denied host, other spelling", denyPolicy, via("start.test", at("DENIED.Test.")), fetchv1.ErrorCode_ERROR_CODE_BLOCKED, "", "denied.test"},
			{"redirect to wildcard-denied host", denyPolicy, via("start.test", at("a.db.internal.test")), fetchv1.ErrorCode_ERROR_CODE_BLOCKED, "", "a.db.internal.test"},
			{"redirect through a hop to a denied host", denyPolicy, via("start.test", via("other.test", at("denied.test"))), fetchv1.ErrorCode_ERROR_CODE_BLOCKED, "", "denied.test"},
			{"redirect to the wildcard's apex", denyPolicy, via("start.test", at("internal.test")), fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, "landed at internal.test:" + port, ""},
			{"redirect to another host", denyPolicy, via("start.test", at("other.test")), fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, "landed at other.test:" + port, ""},
			{"allow list: URL host allowed", allowPolicy, at("start.test"), fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, "landed at start.test:" + port, ""},
			{"allow list: redirect to allowed wildcard", allowPolicy, via("start.test", at("a.ok.test")), fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, "landed at a.ok.test:" + port, ""},
			{"allow list: URL host not on it", allowPolicy, at("stranger.test"), fetchv1.ErrorCode_ERROR_CODE_BLOCKED, "", "stranger.test"},
			{"allow list: redirect off it", allowPolicy, via("start.test", at("stranger2.test")), fetchv1.ErrorCode_ERROR_CODE_BLOCKED, "", "stranger2.test"},
			{"allow list: redirect to an IP literal", allowPolicy, via("start.test", at("127.0.0.1")), fetchv1.ErrorCode_ERROR_CODE_BLOCKED, "", "127.0.0.1"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f := newFetcher(t, engine, Config{Policy: tt.policy, Resolver: resolver})
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: tt.url}, testLimits)
				wantCode(t, tt.url, resp, tt.wantCode)
				if string(resp.GetBody()) != tt.wantBody {
					t.Errorf("Fetch(%q) body = %q, want %q", tt.url, resp.GetBody(), tt.wantBody)
				}
				if tt.neverAsked == "" {
					return
				}
				if msg := resp.GetError().GetMessage(); !strings.Contains(strings.ToLower(msg), tt.neverAsked) {
					t.Errorf("Fetch(%q).Error.Message = %q, want it to name %s", tt.url, msg, tt.neverAsked)
				}
				if n := queries(tt.neverAsked + "."); n != 0 {
					t.Errorf("Fetch(%q): %s was resolved %d times, want 0: host lists are checked before DNS", tt.url, tt.neverAsked, n)
				}
				mu.Lock()
				n := landed[net.JoinHostPort(tt.neverAsked, port)]
				mu.Unlock()
				if n != 0 {
					t.Errorf("Fetch(%q): %s was fetched %d times, want 0", tt.url, tt.neverAsked, n)
				}
			})
		}
	})
}

// TestFetchPorts: with AllowPorts, a job or a redirect to any other port is
// BLOCKED before connect.
func TestFetchPorts(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		other, otherConns := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "LEAKED") })
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/redirect" {
				http.Redirect(w, r, other.URL+"/", http.StatusFound)
				return
			}
			io.WriteString(w, "ok")
		})
		port := uint16(srv.Listener.Addr().(*net.TCPAddr).Port)
		otherPort := strconv.Itoa(other.Listener.Addr().(*net.TCPAddr).Port)
		f := newFetcher(t, engine, Config{Policy: egress.NewPolicy(
			egress.AllowCIDRs(netip.MustParsePrefix("127.0.0.0/8")), egress.AllowPorts(port))})
		tests := []struct {
			name     string
			url      string
			wantCode fetchv1.ErrorCode
			wantBody string
		}{
			{"allowed port", srv.URL + "/", fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, "ok"},
			{"other port", other.URL + "/", fetchv1.ErrorCode_ERROR_CODE_BLOCKED, ""},
			{"scheme default port", "http://127.0.0.1/", fetchv1.ErrorCode_ERROR_CODE_BLOCKED, ""},
			{"redirect to other port", srv.URL + "/redirect", fetchv1.ErrorCode_ERROR_CODE_BLOCKED, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: tt.url}, testLimits)
				wantCode(t, tt.url, resp, tt.wantCode)
				if string(resp.GetBody()) != tt.wantBody {
					t.Errorf("Fetch(%q) body = %q, want %q", tt.url, resp.GetBody(), tt.wantBody)
				}
				if tt.wantCode == fetchv1.ErrorCode_ERROR_CODE_BLOCKED && !strings.Contains(resp.GetError().GetMessage(), "not allowed") {
					t.Errorf("Fetch(%q).Error.Message = %q, want it to say the port is not allowed", tt.url, resp.GetError().GetMessage())
				}
			})
		}
		if n := otherConns.Load(); n != 0 {
			t.Errorf("upstream on port %s saw %d connections, want 0", otherPort, n)
		}
	})
}
