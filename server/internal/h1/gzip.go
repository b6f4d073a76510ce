package h1

import (
	"compress/gzip"
	"io"
	"net/http"
	"sync"
)

// gzipReaders are decoders kept for reuse: each holds a flate window of
// 32 KiB, too much to allocate per response.
var gzipReaders sync.Pool // of *gzip.Reader

// GzipReader decodes a gzipped body with a pooled decoder. Both engines
// decode gzip with it.
type GzipReader struct{ zr *gzip.Reader }

// NewGzipReader reads the gzip header from r.
func NewGzipReader(r io.Reader) (*GzipReader, error) {
	if zr, ok := gzipReaders.Get().(*gzip.Reader); ok {
		if err := zr.Reset(r); err != nil {
			gzipReaders.Put(zr)
			return nil, err
		}
		return &GzipReader{zr}, nil
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	return &GzipReader{zr}, nil
}

func (g *GzipReader) Read(p []byte) (int, error) { return g.zr.Read(p) }

// Release returns the decoder to the pool; g must not be used after.
func (g *GzipReader) Release() {
	g.zr.Reset(eofReader{}) // drop the reference to the body
	gzipReaders.Put(g.zr)
	g.zr = nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// AsksGzip reports whether a transport adds Accept-Encoding: gzip to req,
// by net/http's rule: not for a HEAD, nor when the request names an
// encoding or a range itself.
func AsksGzip(req *http.Request) bool {
	return req.Method != http.MethodHead && req.Header.Get("Accept-Encoding") == "" && req.Header.Get("Range") == ""
}

// MarkDecoded marks resp, whose body is being decoded from gzip, as
// net/http does: no Content-Encoding or Content-Length, an unknown length.
func MarkDecoded(resp *http.Response) {
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	resp.Uncompressed = true
}
