package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"unicode/utf8"

	"github.com/fetchd/fetchd/client"
)

// resultLine is the JSON line printed for one result. Bodies are left out
// unless -body ("body" when valid UTF-8, else "body_base64") or -out
// ("file") ask for them. "bytes" is the number of body bytes fetchd read
// (body_length): the length of the body returned, or with -discard of the
// body it read and did not return. "sha256" is there with -digest when
// fetchd set body_sha256 (not for results without a body read, such as
// errors).
type resultLine struct {
	Index      uint64     `json:"index"`
	ID         string     `json:"id"`
	URL        string     `json:"url"`
	FinalURL   string     `json:"final_url,omitempty"` // set when it differs from url
	Status     int32      `json:"status"`
	Bytes      int        `json:"bytes"`
	Truncated  bool       `json:"truncated"`
	SHA256     string     `json:"sha256,omitempty"` // -digest: body_sha256 in lowercase hex, when fetchd set it
	DurationMS float64    `json:"duration_ms"`
	Error      *lineError `json:"error,omitempty"`
	File       string     `json:"file,omitempty"`
	Body       *string    `json:"body,omitempty"`
	BodyBase64 []byte     `json:"body_base64,omitempty"` // encoding/json writes []byte as base64
}

// lineError is the error of a result.
type lineError struct {
	Code    string `json:"code"` // the fetch.v1 ErrorCode name, such as ERROR_CODE_TIMEOUT
	Message string `json:"message"`
}

// output writes result lines to stdout.
// It is used by one goroutine.
type output struct {
	w      io.Writer
	body   bool   // -body
	dir    string // -out
	digest bool   // -digest
	buf    bytes.Buffer
	enc    *json.Encoder // writes to buf
}

// newOutput returns an output to w; with dir set it creates dir.
func newOutput(w io.Writer, body bool, dir string, digest bool) (*output, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("-out: %w", err)
		}
	}
	o := &output{w: w, body: body, dir: dir, digest: digest}
	o.enc = json.NewEncoder(&o.buf)
	o.enc.SetEscapeHTML(false)
	return o, nil
}

// write prints r's line, in one write so that lines reach a pipe whole and
// at once. With -out its body is already in its file (bodyFiles), which
// the line names when r has a response; -body then reads it back.
func (o *output) write(r *client.Result) error {
	l := newLine(r)
	if o.digest {
		l.SHA256 = hex.EncodeToString(r.GetBodySha256())
	}
	b := r.GetBody()
	if o.dir != "" && r.GetStatusCode() != 0 {
		// bodyFiles wrote it as it arrived.
		l.File = bodyPath(o.dir, r.GetIndex(), r)
		if o.body {
			var err error
			if b, err = os.ReadFile(l.File); err != nil {
				return fmt.Errorf("-body: %w", err)
			}
		}
	}
	if o.body {
		if utf8.Valid(b) {
			s := string(b)
			l.Body = &s
		} else {
			l.BodyBase64 = b
		}
	}
	o.buf.Reset()
	if err := o.enc.Encode(l); err != nil {
		return fmt.Errorf("encode result %d: %w", r.GetIndex(), err)
	}
	if _, err := o.w.Write(o.buf.Bytes()); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// newLine returns the line of r, without body or file.
func newLine(r *client.Result) *resultLine {
	l := &resultLine{
		Index:      r.GetIndex(),
		ID:         r.GetId(),
		URL:        r.GetUrl(),
		Status:     r.GetStatusCode(),
		Bytes:      bodyBytes(r),
		Truncated:  r.GetTruncated(),
		DurationMS: math.Round(float64(r.GetDuration().AsDuration())/1e3) / 1e3,
	}
	if f := r.GetFinalUrl(); f != r.GetUrl() {
		l.FinalURL = f
	}
	if e := r.GetError(); e != nil {
		l.Error = &lineError{Code: e.GetCode().String(), Message: e.GetMessage()}
	}
	return l
}

// bodyBytes returns how many body bytes fetchd read for r: body_length, or
// the length of the body from a fetchd that does not set body_length.
func bodyBytes(r *client.Result) int {
	if n := r.GetBodyLength(); n > 0 {
		return int(min(n, math.MaxInt))
	}
	return len(r.GetBody())
}
