package client_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fetchd/fetchd/client"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// bigUpstream serves /?size=N, N bytes of the testupstream pattern, made as it is
// sent (never held whole). With wait=1 it answers only once release is
// closed; with hold=K its first request for a URL sends K bytes and then
// waits for release before the rest.
type bigUpstream struct {
	*httptest.Server
	release chan struct{}

	mu   sync.Mutex // guards seen
	seen map[string]int
}

func startBigUpstream(tb testing.TB) *bigUpstream {
	tb.Helper()
	u := &bigUpstream{release: make(chan struct{}), seen: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	tb.Cleanup(func() {
		u.releaseAll()
		u.Close()
	})
	return u
}

// releaseAll lets every waiting request go on, once.
func (u *bigUpstream) releaseAll() {
	select {
	case <-u.release:
	default:
		close(u.release)
	}
}

func (u *bigUpstream) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size, _ := strconv.ParseInt(q.Get("size"), 10, 64)
	hold, _ := strconv.ParseInt(q.Get("hold"), 10, 64)
	u.mu.Lock()
	u.seen[r.URL.String()]++
	first := u.seen[r.URL.String()] == 1
	u.mu.Unlock()
	wait := func() bool {
		select {
		case <-u.release:
			return true
		case <-r.Context().Done():
			return false
		}
	}
	if q.Get("wait") != "" && !wait() {
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	buf := make([]byte, 32<<10)
	for off := int64(0); off < size; {
		if first && hold > 0 && off >= hold {
			w.(http.Flusher).Flush()
			if !wait() {
				return
			}
			first = false
		}
		p := buf[:min(int64(len(buf)), size-off)]
		if first && hold > 0 {
			p = p[:min(int64(len(p)), hold-off)]
		}
		testupstream.Pattern(off, p)
		if _, err := w.Write(p); err != nil {
			return
		}
		off += int64(len(p))
	}
}

// fileWriters opens a BodyWriter per job that writes a temporary file in
// dir and renames it to <index>.body on Finish, and counts what it did.
type fileWriters struct {
	dir       string
	failWrite int // with n > 0, every writer's nth Write fails

	mu       sync.Mutex // guards the fields below
	opened   int
	finished int
	aborted  int
	written  map[uint64]int64 // bytes written, by index, to the writer open now
	results  map[uint64]*client.Result
}

func newFileWriters(tb testing.TB) *fileWriters {
	tb.Helper()
	return &fileWriters{dir: tb.TempDir(), written: map[uint64]int64{}, results: map[uint64]*client.Result{}}
}

// errDiskFull is what a failing writer's Write returns.
var errDiskFull = fmt.Errorf("disk full (on purpose)")

func (fw *fileWriters) open(idx uint64) (client.BodyWriter, error) {
	f, err := os.CreateTemp(fw.dir, fmt.Sprintf(".%d.*.tmp", idx))
	if err != nil {
		return nil, err
	}
	fw.mu.Lock()
	fw.opened++
	fw.written[idx] = 0
	fw.mu.Unlock()
	return &fileWriter{fw: fw, idx: idx, f: f}, nil
}

// counts returns how many writers were opened, finished and aborted.
func (fw *fileWriters) counts() (opened, finished, aborted int) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.opened, fw.finished, fw.aborted
}

// bytesWritten returns what the writer of job idx open now has written.
func (fw *fileWriters) bytesWritten(idx uint64) int64 {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.written[idx]
}

// finishedAt reports whether job idx's writer was finished.
func (fw *fileWriters) finishedAt(idx uint64) bool {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.results[idx] != nil
}

// file returns the path of job idx's finished body.
func (fw *fileWriters) file(idx uint64) string {
	return filepath.Join(fw.dir, fmt.Sprintf("%d.body", idx))
}

// fileSum returns the size and SHA-256 of job idx's finished body.
func (fw *fileWriters) fileSum(tb testing.TB, idx uint64) (int64, [32]byte) {
	tb.Helper()
	f, err := os.Open(fw.file(idx))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		tb.Fatal(err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return n, sum
}

// leftovers returns the temporary files left in dir.
func (fw *fileWriters) leftovers(tb testing.TB) []string {
	tb.Helper()
	m, err := filepath.Glob(filepath.Join(fw.dir, ".*.tmp"))
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

type fileWriter struct {
	fw     *fileWriters
	idx    uint64
	f      *os.File
	writes int
}

func (w *fileWriter) Write(p []byte) (int, error) {
	w.writes++
	if w.writes == w.fw.failWrite {
		return 0, errDiskFull
	}
	n, err := w.f.Write(p)
	w.fw.mu.Lock()
	w.fw.written[w.idx] += int64(n)
	w.fw.mu.Unlock()
	return n, err
}

func (w *fileWriter) Finish(r *client.Result) error {
	w.fw.mu.Lock()
	w.fw.finished++
	w.fw.results[w.idx] = r
	w.fw.mu.Unlock()
	if err := w.f.Close(); err != nil {
		os.Remove(w.f.Name())
		return err
	}
	return os.Rename(w.f.Name(), w.fw.file(w.idx))
}

func (w *fileWriter) Abort() {
	w.fw.mu.Lock()
	w.fw.aborted++
	w.fw.mu.Unlock()
	w.f.Close()
	os.Remove(w.f.Name())
}

// waitTimeout bounds the waits of these tests.
const waitTimeout = 20 * time.Second

// patternSumOf returns the SHA-256 of b.
func patternSumOf(b []byte) [32]byte { return sha256.Sum256(b) }
