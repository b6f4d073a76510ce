package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/fetchd/fetchd/client"
)

// bodyFiles writes the bodies of a run to -out DIR as they arrive, through
// client.WithBodyWriter: each to DIR/.<index>.body.tmp, renamed when its
// result has a response (status != 0) to DIR/<index>.body, or
// DIR/<index>.body.partial if the body failed part way (see bodyPath), and
// removed otherwise, or when its stream broke (the job may come again, to
// a new file). No body is held in memory.
type bodyFiles struct {
	dir string
	bar *progress // counts the bytes written; set before the run starts
}

// bodyPath returns the name of the body file of r, job idx's result, in
// dir: <index>.body for a body received whole (up to the cap: it may be
// truncated), <index>.body.partial for one that failed part way (r has an
// error), so that a half body never stands under the name of a whole one.
func bodyPath(dir string, idx uint64, r *client.Result) string {
	name := strconv.FormatUint(idx, 10) + ".body"
	if r.GetError() != nil {
		name += ".partial"
	}
	return filepath.Join(dir, name)
}

// open is the client's BodyWriter opener.
func (b *bodyFiles) open(idx uint64) (client.BodyWriter, error) {
	tmp := filepath.Join(b.dir, "."+strconv.FormatUint(idx, 10)+".body.tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("-out: %w", err)
	}
	return &bodyFile{files: b, idx: idx, f: f}, nil
}

// bodyFile is the temporary file of one job's body.
type bodyFile struct {
	files *bodyFiles
	idx   uint64
	f     *os.File
}

func (w *bodyFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.files.bar.addBytes(n)
	if err != nil {
		return n, fmt.Errorf("-out: %w", err)
	}
	return n, nil
}

// Finish renames the file into place when r has a response, and removes it
// otherwise.
func (w *bodyFile) Finish(r *client.Result) error {
	err := w.f.Close()
	if err == nil && r.GetStatusCode() != 0 {
		err = os.Rename(w.f.Name(), bodyPath(w.files.dir, w.idx, r))
	} else {
		err = errors.Join(err, os.Remove(w.f.Name()))
	}
	if err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	return nil
}

// Abort removes the file.
func (w *bodyFile) Abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}
