package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/fetchd/fetchd/internal/testupstream"
)

// TestDigestDiscardEndToEnd: fetchctl against a real fetchd. -digest gives
// the SHA-256 of the body the upstream sent, and of the file -out writes;
// -discard returns no body but counts it, past the inline cap.
func TestDigestDiscardEndToEnd(t *testing.T) {
	addr := startBackend(t)
	up := testupstream.New(t)
	const size = 5 << 20 // over the default 3 MiB inline cap
	sum := sha256.Sum256(bytes.Repeat([]byte{'x'}, size))
	want := hex.EncodeToString(sum[:])
	u := up.URL + "/?size=5242880"

	t.Run("discard", func(t *testing.T) {
		r := runCtl(t, nil, nil, "-addr", addr, "-digest", "-discard", u)
		r.wantCode(t, 0)
		l := byIndex(t, r.lines(t))[0]
		if l.Bytes != size || l.Truncated || l.SHA256 != want || l.Body != nil || l.Status != 200 {
			t.Errorf("fetchctl -digest -discard = %+v, want %d bytes, not truncated, sha256 %s, no body", l, size, want)
		}
	})
	t.Run("inline to a file", func(t *testing.T) {
		dir := t.TempDir()
		small := up.URL + "/?size=1000"
		r := runCtl(t, nil, nil, "-addr", addr, "-digest", "-out", dir, small)
		r.wantCode(t, 0)
		l := byIndex(t, r.lines(t))[0]
		b, err := os.ReadFile(filepath.Join(dir, "0.body"))
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(b)
		if l.Bytes != 1000 || l.SHA256 != hex.EncodeToString(got[:]) || len(b) != 1000 {
			t.Errorf("fetchctl -digest -out = %+v, file of %d bytes with sha256 %x; want 1000 bytes and the line's sha256", l, len(b), got)
		}
	})
}
