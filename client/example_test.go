package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"

	"google.golang.org/grpc"

	"github.com/fetchd/fetchd/client"
	"github.com/fetchd/fetchd/server"
)

// exampleFetchd starts a fetchd allowed to reach loopback, and an upstream
// that answers /missing with 404 and everything else with the path. It
// returns their addresses and a function that stops both.
func exampleFetchd() (addr, upstream string, stop func()) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
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
