package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"

	"github.com/fetchd/fetchd/client"
	"github.com/fetchd/fetchd/server"
)

// ExampleNewEmbedded runs the fetchd engine inside this process: the same
// Client, with no server to deploy. Egress is default-deny, as in fetchd:
// the example's upstream is on loopback, so its config opens 127.0.0.0/8.
// Pointing the same code at a fleet later is client.New(target) instead.
func ExampleNewEmbedded() {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.URL.Path)
	}))
	defer up.Close()

	c, err := client.NewEmbedded(server.Config{
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:     slog.New(slog.DiscardHandler),
	}, client.WithConcurrency(8))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // stops the engine

	jobs := []*client.Job{client.Get(up.URL + "/a"), client.Get(up.URL + "/b"), client.Get("http://169.254.169.254/")}
	for r, err := range c.FetchOrdered(context.Background(), slices.Values(jobs)) {
		if err != nil {
			log.Fatal(err)
		}
		if r.GetError() != nil {
			fmt.Println(r.GetIndex(), r.GetError().GetCode())
			continue
		}
		fmt.Println(r.GetIndex(), r.GetStatusCode(), string(r.GetBody()))
	}
	// Output:
	// 0 200 /a
	// 1 200 /b
	// 2 ERROR_CODE_BLOCKED
}
