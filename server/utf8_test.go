package server

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"unicode/utf8"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// TestUpstreamNotUTF8: response headers and redirect targets that are not
// UTF-8 (an ISO-8859-1 file name, as real servers send) come back as valid
// strings and the stream goes on, on both HTTP engines.
func TestUpstreamNotUTF8(t *testing.T) {
	up := testupstream.StartRaw(t, func(c net.Conn, _ <-chan struct{}) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		switch req.URL.Path {
		case "/redirect":
			fmt.Fprint(c, "HTTP/1.1 302 Found\r\nLocation: /caf\xe9?q=\xff\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		default:
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename=\"caf\xe9.pdf\"\r\nX-Raw: \xff\xfe\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		}
	})
	for _, lean := range []bool{true, false} {
		t.Run(fmt.Sprintf("lean=%v", lean), func(t *testing.T) {
			c, _ := startServer(t, WithLeanHTTP(lean))
			res, err := fetchAll(testctx.New(t), t, c, []*fetchv1.FetchRequest{
				job(up.URL + "file"), job(up.URL + "redirect"), job(up.URL + "last"),
			})
			if err != nil || len(res) != 3 {
				t.Fatalf("Fetch: %d results, %v; want 3 and no stream error", len(res), err)
			}
			for _, r := range res {
				if r.GetError() != nil || r.GetStatusCode() != 200 {
					t.Errorf("job %d: status %d, error %v; want 200", r.GetIndex(), r.GetStatusCode(), r.GetError())
				}
				if !utf8.ValidString(r.GetFinalUrl()) {
					t.Errorf("job %d: final_url %q not UTF-8", r.GetIndex(), r.GetFinalUrl())
				}
				for _, h := range r.GetHeaders() {
					if h.GetName() == "Content-Disposition" && h.GetValue() != `attachment; filename="café.pdf"` {
						t.Errorf("job %d: %s = %q, want the ISO-8859-1 bytes decoded", r.GetIndex(), h.GetName(), h.GetValue())
					}
					if h.GetName() == "X-Raw" && h.GetValue() != "ÿþ" {
						t.Errorf("job %d: %s = %q, want %q", r.GetIndex(), h.GetName(), h.GetValue(), "ÿþ")
					}
				}
			}
		})
	}
}
