package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"google.golang.org/grpc"

	"github.com/fetchd/fetchd/client"
	"github.com/fetchd/fetchd/server"
)

// exampleFetchd starts a fetchd allowed to reach loopback, and an upstream
// that answers /missing with 404, /large with 5 MiB of zeros and everything
// else with the path. It
// returns their addresses and a function that stops both.
func exampleFetchd() (addr, upstream string, stop func()) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
			return
		case "/large": // 5 MiB, over fetchd's inline cap
			io.Copy(w, io.LimitReader(zeros{}, 5<<20))
			return
		}
		fmt.Fprint(w, r.URL.Path)
	}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := server.New(server.WithAllowCIDRs(netip.MustParsePrefix("127.0.0.0/8")),
		server.WithLogger(slog.New(slog.DiscardHandler)))
	gs := grpc.NewServer()
	srv.Register(gs)
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(lis) }()
	return lis.Addr().String(), up.URL, func() {
		gs.Stop()
		<-done
		srv.Close()
		up.Close()
	}
}

func ExampleClient_FetchOrdered() {
	addr, upstream, stop := exampleFetchd()
	defer stop()

	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	jobs := []*client.Job{
		client.Get(upstream + "/a"),
		client.Get(upstream + "/missing"),
		{Url: "http://169.254.169.254/latest/meta-data/", Id: "metadata"},
		{Url: upstream + "/c", Method: "HEAD", Id: "head-c"},
	}
	for r, err := range c.FetchOrdered(context.Background(), slices.Values(jobs)) {
		if err != nil {
			log.Fatal(err) // the call failed; every result so far was yielded
		}
		if r.GetError() != nil {
			fmt.Printf("%d %s: %s\n", r.GetIndex(), r.GetId(), r.GetError().GetCode())
			continue
		}
		fmt.Printf("%d %s: %d %q\n", r.GetIndex(), r.GetId(), r.GetStatusCode(), r.GetBody())
	}
	// Output:
	// 0 : 200 "/a"
	// 1 : 404 "404 page not found\n"
	// 2 metadata: ERROR_CODE_BLOCKED
	// 3 head-c: 200 ""
}

func ExampleClient_Fetch() {
	addr, upstream, stop := exampleFetchd()
	defer stop()

	c, err := client.New(addr, client.WithConcurrency(8))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Jobs are taken lazily: this input could be endless.
	jobs := func(yield func(*client.Job) bool) {
		for i := range 100 {
			if !yield(client.Get(fmt.Sprintf("%s/page/%d", upstream, i))) {
				return
			}
		}
	}
	ok := 0
	for r, err := range c.Fetch(context.Background(), jobs) {
		if err != nil {
			log.Fatal(err)
		}
		if r.GetStatusCode() == http.StatusOK {
			ok++
		}
	}
	fmt.Println(ok, "pages fetched")
	// Output: 100 pages fetched
}

func ExampleChan() {
	addr, upstream, stop := exampleFetchd()
	defer stop()

	c, err := client.New(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ch := make(chan *client.Job)
	go func() {
		defer close(ch)
		for _, p := range []string{"/x", "/y"} {
			ch <- client.Get(upstream + p)
		}
	}()
	for r, err := range c.FetchOrdered(context.Background(), client.Chan(ch)) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(r.GetIndex(), string(r.GetBody()))
	}
	// Output:
	// 0 /x
	// 1 /y
}

func ExampleWithDiscardBody() {
	addr, upstream, stop := exampleFetchd()
	defer stop()

	// A link checker: fetchd reads every body and counts and digests it,
	// but returns none of it.
	c, err := client.New(addr, client.WithDiscardBody(true), client.WithDigest(true))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	jobs := slices.Values([]*client.Job{client.Get(upstream + "/hello"), client.Get(upstream + "/missing")})
	for r, err := range c.FetchOrdered(context.Background(), jobs) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d: %d, %d bytes, %d returned, sha256 %x...\n",
			r.GetIndex(), r.GetStatusCode(), r.GetBodyLength(), len(r.GetBody()), r.GetBodySha256()[:4])
	}
	// Output:
	// 0: 200, 6 bytes, 0 returned, sha256 13a7bc88...
	// 1: 404, 19 bytes, 0 returned, sha256 b16e1576...
}

func ExampleNew_replicas() {
	// One stream per replica; a replica that dies hands its unanswered
	// jobs to the others. "dns:///fetchd-headless.default.svc:50051" works
	// the same way, with the replicas looked up on every call.
	c, err := client.New("10.0.0.1:50051,10.0.0.2:50051,10.0.0.3:50051",
		client.WithWindow(4096), client.WithMaxAttempts(5))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// tempFile writes one body to a temporary file and renames it into place
// when the result comes.
type tempFile struct {
	f     *os.File
	final string
}

func (w *tempFile) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *tempFile) Finish(r *client.Result) error {
	if err := w.f.Close(); err != nil {
		os.Remove(w.f.Name())
		return err
	}
	return os.Rename(w.f.Name(), w.final)
}

func (w *tempFile) Abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

func ExampleWithBodyWriter() {
	addr, upstream, stop := exampleFetchd()
	defer stop()
	dir, err := os.MkdirTemp("", "bodies")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// Every body goes to its own file as it arrives, in chunks of 256 KiB
	// (client.DefaultChunkBytes): none is held in memory, whatever its size.
	open := func(index uint64) (client.BodyWriter, error) {
		f, err := os.CreateTemp(dir, "body-*.tmp")
		if err != nil {
			return nil, err
		}
		return &tempFile{f: f, final: filepath.Join(dir, fmt.Sprintf("%d.body", index))}, nil
	}
	c, err := client.New(addr, client.WithBodyWriter(open))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	jobs := slices.Values([]*client.Job{client.Get(upstream + "/large"), client.Get(upstream + "/a")})
	for r, err := range c.FetchOrdered(context.Background(), jobs) {
		if err != nil {
			log.Fatal(err) // a writer failed, or the call did
		}
		fi, err := os.Stat(filepath.Join(dir, fmt.Sprintf("%d.body", r.GetIndex())))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d: %d, streamed %v, %d bytes, %d in the result, file of %d bytes\n",
			r.GetIndex(), r.GetStatusCode(), r.GetStreamed(), r.GetBodyLength(), len(r.GetBody()), fi.Size())
	}
	// Output:
	// 0: 200, streamed true, 5242880 bytes, 0 in the result, file of 5242880 bytes
	// 1: 200, streamed false, 2 bytes, 0 in the result, file of 2 bytes
}
