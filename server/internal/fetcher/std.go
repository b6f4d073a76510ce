package fetcher

import (
	"fmt"
	"io"
	"net/http"

	"github.com/fetchd/fetchd/server/internal/h1"
)

// stdTransport carries requests through net/http's transport under the
// rules of the lean engine, so that a caller gets the same result from
// either (see the package doc):
//   - gzip is asked for and decoded when the body's Content-Encoding is
//     exactly one "gzip" ([h1.Gzipped]); any other body, "gzip, gzip" or two
//     Content-Encoding fields included, is returned as received with its
//     headers. net/http's own decoding would take one layer off two fields
//     and drop both.
//   - a gzip body whose framing is complete but whose gzip is broken or ends
//     early is an errBadResponse, not the io.ErrUnexpectedEOF of a cut
//     connection.
//   - a 101 is an errBadResponse: fetchd never asks for an upgrade, and
//     net/http would hand over the raw connection as the body.
type stdTransport struct{ rt http.RoundTripper }

func (t stdTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	send := req
	askGzip := h1.AsksGzip(req)
	if askGzip {
		// Asked for by us, gzip is left to us by net/http: decoded below.
		send = new(http.Request)
		*send = *req
		send.Header = req.Header.Clone()
		send.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := t.rt.RoundTrip(send)
	if err != nil {
		return nil, err
	}
	resp.Request = req
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: unsolicited %s", errBadResponse, resp.Status)
	}
	if askGzip && h1.Gzipped(resp) {
		resp.Body = &gzipBody{body: resp.Body}
		h1.MarkDecoded(resp)
	}
	return resp, nil
}

// gzipBody decodes a gzip response body on its first Read, with h1's pooled
// decoder, which it gives back once a Read meets the end or an error (not
// on Close, which may run beside a Read).
type gzipBody struct {
	body    io.ReadCloser
	zr      *h1.GzipReader
	bodyErr error // the error, other than io.EOF, of a read of body
	err     error // sticky: what every Read returns once one failed
}

func (g *gzipBody) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if g.zr == nil {
		zr, err := h1.NewGzipReader(bodyReader{g})
		if err != nil {
			g.err = g.wrap(err)
			return 0, g.err
		}
		g.zr = zr
	}
	n, err := g.zr.Read(p)
	if err != nil {
		g.err = g.wrap(err)
		g.zr.Release()
	}
	return n, g.err
}

// wrap marks err, from the decoder, an errBadResponse when the body's
// framing was intact: then the gzip itself is broken.
func (g *gzipBody) wrap(err error) error {
	if err == io.EOF || g.bodyErr != nil {
		return err
	}
	return fmt.Errorf("%w: gzip body: %w", errBadResponse, err)
}

func (g *gzipBody) Close() error { return g.body.Close() }

// bodyReader reads a gzipBody's encoded bytes and notes a read error.
type bodyReader struct{ g *gzipBody }

func (r bodyReader) Read(p []byte) (int, error) {
	n, err := r.g.body.Read(p)
	if err != nil && err != io.EOF {
		r.g.bodyErr = err
	}
	return n, err
}
