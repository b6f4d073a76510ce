package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/url"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

const (
	// maxLine is the longest input line: a JSON job and its body must fit
	// in one, as in fetchd's largest request message by default.
	maxLine = 16 << 20
	// readAhead is how many parsed jobs may wait between the reader and
	// the client, which takes them as its window allows.
	readAhead = 64
)

// input is the source of jobs: the URL arguments, or the lines of a reader
// (stdin or -i FILE), read and parsed only as the client takes jobs, so that
// an endless input costs bounded memory.
type input struct {
	parser jobParser
	args   []*client.Job // the jobs given as arguments; nil when reading r
	name   string        // r's name in error messages: "stdin" or the file
	r      io.Reader
	closer io.Closer // the file, if any

	// Set by the iteration; read them only once it has ended.
	count uint64 // jobs yielded
	line  int    // r's line of the last job yielded
	ended bool   // the input was read to its end
	err   error  // why the input ended early
}

// input returns the job source of the configuration: the arguments, parsed
// now (a bad one is a usage error), or else -i FILE or stdin.
func (c *config) input(stdin io.Reader) (*input, error) {
	in := &input{parser: jobParser{method: c.method, headers: c.headers}}
	if len(c.urls) > 0 {
		in.args = make([]*client.Job, 0, len(c.urls))
		for i, a := range c.urls {
			j, err := in.parser.parse(a)
			if err != nil {
				return nil, usagef("argument %d: %w", i+1, err)
			}
			if j != nil {
				in.args = append(in.args, j)
			}
		}
		return in, nil
	}
	in.name, in.r = "stdin", stdin
	if c.inputFile != "" && c.inputFile != "-" {
		f, err := os.Open(c.inputFile)
		if err != nil {
			return nil, err
		}
		in.name, in.r, in.closer = c.inputFile, f, f
	}
	return in, nil
}

// Close closes the input file, if any.
func (in *input) Close() error {
	if in.closer == nil {
		return nil
	}
	return in.closer.Close()
}

// Total returns the number of jobs when it is known in advance (they came
// as arguments), else -1.
func (in *input) Total() int {
	if in.r != nil {
		return -1
	}
	return len(in.args)
}

// Count returns the number of jobs yielded. Call it after the iteration.
func (in *input) Count() uint64 { return in.count }

// Err returns the input error that ended the iteration early, as
// "NAME:LINE: what", or nil. Call it after the iteration.
func (in *input) Err() error { return in.err }

// Unread returns how many jobs given as arguments were not yielded, and
// for a reader whether it was left unread after the last job yielded
// (at line Line) without an input error. Call it after the iteration.
func (in *input) Unread() (args uint64, rest bool) {
	if in.r == nil {
		return uint64(len(in.args)) - in.count, false
	}
	return 0, !in.ended && in.err == nil
}

// Line returns the line of the last job yielded from a reader, or 0.
func (in *input) Line() int { return in.line }

// Name returns the name of the reader, such as "stdin".
func (in *input) Name() string { return in.name }

// Jobs returns the jobs, for one iteration. Reading stops at the first
// malformed line or read error, which [input.Err] then reports, and when
// ctx ends.
//
// Lines are read by a goroutine, so that the iteration can stop on ctx even
// while a read blocks (a terminal, a pipe whose writer waits). That
// goroutine ends when the input ends or when it is next able to hand over a
// line after the iteration stopped; one blocked in a read that never returns
// outlives the iteration, and ends with the process.
func (in *input) Jobs(ctx context.Context) iter.Seq[*client.Job] {
	return func(yield func(*client.Job) bool) {
		if in.r == nil {
			for _, j := range in.args {
				if ctx.Err() != nil {
					return
				}
				in.count++
				if !yield(j) {
					return
				}
			}
			in.ended = true
			return
		}
		items := make(chan item, readAhead)
		done := make(chan struct{})
		defer close(done)
		go in.read(items, done)
		for {
			var it item
			var ok bool
			select {
			case it, ok = <-items:
			case <-ctx.Done():
				return
			}
			switch {
			case !ok:
				in.ended = true
				return
			case it.err != nil:
				in.err = it.err
				return
			}
			in.count++
			in.line = it.line
			if !yield(it.job) {
				return
			}
		}
	}
}

// item is a job and its line, or the error that ends the input.
type item struct {
	job  *client.Job
	line int
	err  error
}

// read parses the lines of in.r and sends them on items, which it closes at
// the end of the input or after an error; it stops early when done closes.
func (in *input) read(items chan<- item, done <-chan struct{}) {
	defer close(items)
	send := func(it item) bool {
		select {
		case items <- it:
			return true
		case <-done:
			return false
		}
	}
	sc := bufio.NewScanner(in.r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	n := 0
	for sc.Scan() {
		n++
		j, err := in.parser.parse(sc.Text())
		switch {
		case err != nil:
			send(item{err: fmt.Errorf("%s:%d: %w", in.name, n, err)})
			return
		case j != nil:
			if !send(item{job: j, line: n}) {
				return
			}
		}
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		send(item{err: fmt.Errorf("%s:%d: line longer than %d bytes", in.name, n+1, maxLine)})
	case err != nil:
		send(item{err: fmt.Errorf("%s:%d: read: %w", in.name, n+1, err)})
	}
}

// jobParser turns an input line into a job.
type jobParser struct {
	method  string            // for URL lines
	headers []*fetchv1.Header // for URL lines
}

// parse returns the job of line: nil for a blank or comment line, an error
// when the line is neither a URL nor a JSON job.
func (p *jobParser) parse(line string) (*client.Job, error) {
	s := strings.TrimSpace(line)
	switch {
	case s == "" || strings.HasPrefix(s, "#"):
		return nil, nil
	case strings.HasPrefix(s, "{"):
		j := &client.Job{}
		if err := protojson.Unmarshal([]byte(s), j); err != nil {
			return nil, fmt.Errorf("bad JSON job: %v", err)
		}
		if j.StreamOptions != nil {
			return nil, errors.New("bad JSON job: stream_options is not a job field (use -c, -timeout, -digest and -discard)")
		}
		return j, nil
	}
	if u, err := url.Parse(s); err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("not a URL or a JSON job: %q", abbrev(s, 80))
	}
	j := &client.Job{Url: s, Method: p.method}
	if len(p.headers) > 0 {
		j.Headers = make([]*fetchv1.Header, len(p.headers))
		for i, h := range p.headers {
			j.Headers[i] = &fetchv1.Header{Name: h.GetName(), Value: h.GetValue()}
		}
	}
	return j, nil
}

// abbrev cuts s to at most n bytes, marking the cut.
func abbrev(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
