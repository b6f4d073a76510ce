package h1

import (
	"compress/gzip"
	"io"
	"sync"
)

// gzipReaders are decoders kept for reuse: each holds a flate window of
// 32 KiB, too much to allocate per response.
var gzipReaders sync.Pool // of *gzip.Reader

// gzipReader decodes a gzipped body with a pooled decoder.
type gzipReader struct{ zr *gzip.Reader }

// newGzipReader reads the gzip header from r.
func newGzipReader(r io.Reader) (*gzipReader, error) {
	if zr, ok := gzipReaders.Get().(*gzip.Reader); ok {
		if err := zr.Reset(r); err != nil {
			gzipReaders.Put(zr)
			return nil, err
		}
		return &gzipReader{zr}, nil
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	return &gzipReader{zr}, nil
}

func (g *gzipReader) Read(p []byte) (int, error) { return g.zr.Read(p) }

// release returns the decoder to the pool; g must not be used after.
func (g *gzipReader) release() {
	g.zr.Reset(eofReader{}) // drop the reference to the body
	gzipReaders.Put(g.zr)
	g.zr = nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
