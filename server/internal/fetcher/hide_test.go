package fetcher

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testbuf"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/server/internal/egress"
)

// TestFetchHideAddresses: with HideAddresses, a caller's message names no
// resolved address: a refused destination and a name that does not resolve
// get the same BLOCKED result with the same message, and other failures
// (a refused connection) keep their code with the addresses cut out. The
// whole error goes to the log, at debug level. Without the setting, the
// messages are as before.
func TestFetchHideAddresses(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		srv, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://"+net.JoinHostPort("internal.test", r.URL.Query().Get("port"))+"/", http.StatusFound)
		})
		port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
		resolver, _ := startDNS(t, map[string]netip.Addr{
			"upstream.test.": netip.MustParseAddr("127.0.0.1"), // allowed
			"internal.test.": netip.MustParseAddr("127.0.0.2"), // denied
		})
		// Only 127.0.0.1 is open: 127.0.0.2 stands for an internal address.
		policy := egress.NewPolicy(egress.AllowCIDRs(netip.MustParsePrefix("127.0.0.1/32")))
		_, closed, _ := net.SplitHostPort(closedPort(t))
		refused := "http://upstream.test:" + closed + "/"
		tests := []struct {
			name     string
			hide     bool
			url      string
			wantCode fetchv1.ErrorCode
			wantMsg  string // the whole message, when set
			wantIn   string // in the message, when set
			wantLog  string // in the debug log, when set
		}{
			{"denied address", true, "http://internal.test:" + port + "/",
				fetchv1.ErrorCode_ERROR_CODE_BLOCKED, HiddenRefusal, "", "127.0.0.2 is blocked by policy: 127.0.0.0/8 (loopback)"},
			{"name that does not resolve", true, "http://nowhere.test:" + port + "/",
				fetchv1.ErrorCode_ERROR_CODE_BLOCKED, HiddenRefusal, "", "no such host"},
			{"redirect to a denied address", true, "http://upstream.test:" + port + "/?port=" + port,
				fetchv1.ErrorCode_ERROR_CODE_BLOCKED, HiddenRefusal, "", "127.0.0.2 is blocked by policy"},
			{"refused connection", true, refused,
				fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE, "", "connection refused", "127.0.0.1:"},
			{"denied address, shown", false, "http://internal.test:" + port + "/",
				fetchv1.ErrorCode_ERROR_CODE_BLOCKED, "", "127.0.0.2 is blocked by policy: 127.0.0.0/8 (loopback)", ""},
			{"name that does not resolve, shown", false, "http://nowhere.test:" + port + "/",
				fetchv1.ErrorCode_ERROR_CODE_DNS_FAILURE, "", "no such host", ""},
			{"refused connection, shown", false, refused,
				fetchv1.ErrorCode_ERROR_CODE_CONNECTION_FAILURE, "", "127.0.0.1:", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var log testbuf.Buffer
				logger := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
				f := newFetcher(t, engine, Config{Policy: policy, Resolver: resolver, HideAddresses: tt.hide, Logger: logger})
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: tt.url}, testLimits)
				wantCode(t, tt.url, resp, tt.wantCode)
				msg := resp.GetError().GetMessage()
				if tt.wantMsg != "" && msg != tt.wantMsg {
					t.Errorf("Fetch(%q) message = %q, want %q", tt.url, msg, tt.wantMsg)
				}
				if !strings.Contains(msg, tt.wantIn) {
					t.Errorf("Fetch(%q) message = %q, want it to contain %q", tt.url, msg, tt.wantIn)
				}
				if tt.hide && strings.Contains(msg, "127.0.0.") {
					t.Errorf("Fetch(%q) message = %q, names an address", tt.url, msg)
				}
				if tt.wantLog != "" && !strings.Contains(log.String(), tt.wantLog) {
					t.Errorf("Fetch(%q) log = %q, want it to contain %q", tt.url, log.String(), tt.wantLog)
				}
				if !tt.hide && log.String() != "" {
					t.Errorf("Fetch(%q) without HideAddresses logged %q, want nothing", tt.url, log.String())
				}
			})
		}
	})
}
