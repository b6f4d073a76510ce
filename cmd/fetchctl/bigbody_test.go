package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fetchd/fetchd/internal/testmem"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// fileSum returns the size and hex SHA-256 of the file at path.
func fileSum(tb testing.TB, path string, h hash.Hash) (int64, string) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	n, err := io.Copy(h, f)
	if err != nil {
		tb.Fatal(err)
	}
	return n, hex.EncodeToString(h.Sum(nil))
}

// TestRunOutLargeBody: -out streams a 200 MiB body (20 MiB with -short)
// to its file byte-identical, far past the inline cap, while the heap of
// the whole process (fetchctl, and the in-process fetchd) stays small;
// -digest's sha256 is the file's.
func TestRunOutLargeBody(t *testing.T) {
	size := int64(200 << 20)
	if testing.Short() {
		size = 20 << 20
	}
	addr := startBackend(t)
	up := testupstream.New(t)
	dir := t.TempDir()
	var r *ctlRun
	use := testmem.Measure(func() {
		r = runCtl(t, nil, nil, "-addr", addr, "-digest", "-out", dir, fmt.Sprintf("%s/?pattern=%d", up.URL, size))
	})
	r.wantCode(t, 0)
	lines := r.lines(t)
	if len(lines) != 1 {
		t.Fatalf("fetchctl printed %d lines, want 1", len(lines))
	}
	l := lines[0]
	n, sum := fileSum(t, filepath.Join(dir, "0.body"), sha256.New())
	if l.File != filepath.Join(dir, "0.body") || l.Status != 200 || l.Error != nil || l.Truncated || l.Bytes != int(size) {
		t.Errorf("line = %+v, want status 200, %d bytes, not truncated, file %s", l, size, filepath.Join(dir, "0.body"))
	}
	want := testupstream.PatternSum(size)
	if n != size || sum != hex.EncodeToString(want[:]) || l.SHA256 != sum {
		t.Errorf("file of %d bytes with sha256 %s; upstream sent %d with %x; line says %s", n, sum, size, want, l.SHA256)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 || strings.HasPrefix(entries[0].Name(), ".") {
		t.Errorf("%s holds %d entries, want only 0.body", dir, len(entries))
	}
	const maxHeld = 48 << 20
	if use.Held > maxHeld {
		t.Errorf("heap held up to %.1f MiB more during the run, want at most %.0f MiB for a %.0f MiB body",
			testmem.MiB(use.Held), testmem.MiB(maxHeld), testmem.MiB(uint64(size)))
	}
	t.Logf("%.0f MiB body: heap held %.1f MiB at most above the %.1f MiB before; %.0f MiB allocated",
		testmem.MiB(uint64(size)), testmem.MiB(use.Held), testmem.MiB(use.Base), testmem.MiB(use.Allocated))
}

// TestRunOutPartialBody: a body that fails part way is kept as
// <index>.body.partial, named in its line with its error, and never stands
// under the name of a whole body.
func TestRunOutPartialBody(t *testing.T) {
	const declared, sent = 5 << 20, 2<<20 + 12345
	raw := testupstream.StartRaw(t, func(c net.Conn, _ <-chan struct{}) {
		buf := make([]byte, 4096)
		if n, err := c.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "\r\n\r\n") {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", declared)
		c.Write(testupstream.PatternBytes(sent)) // then close: cut part way
	})
	addr := startBackend(t)
	dir := t.TempDir()
	r := runCtl(t, nil, nil, "-addr", addr, "-digest", "-out", dir, "http://"+raw.Addr+"/")
	r.wantCode(t, 0)
	lines := r.lines(t)
	if len(lines) != 1 {
		t.Fatalf("fetchctl printed %d lines, want 1", len(lines))
	}
	l := lines[0]
	partial := filepath.Join(dir, "0.body.partial")
	if l.Error == nil || l.Error.Code != "ERROR_CODE_CONNECTION_FAILURE" || l.File != partial || l.Bytes != sent {
		t.Errorf("line = %+v; want CONNECTION_FAILURE, %d bytes, file %s", l, sent, partial)
	}
	n, sum := fileSum(t, partial, sha256.New())
	want := sha256.Sum256(testupstream.PatternBytes(sent))
	if n != sent || sum != hex.EncodeToString(want[:]) || l.SHA256 != sum {
		t.Errorf("%s: %d bytes, sha256 %s, line says %s; want the %d bytes sent", partial, n, sum, l.SHA256, sent)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%s holds %d entries, want only 0.body.partial", dir, len(entries))
	}
}
