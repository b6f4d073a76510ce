package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
)

// readme returns the repository's README.
func readme(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// TestReadmeFlags: every flag fetchd -h lists is documented in the README.
func TestReadmeFlags(t *testing.T) {
	var stderr bytes.Buffer
	run(context.Background(), []string{"-h"}, func(string) string { return "" }, &bytes.Buffer{}, &stderr)
	doc := readme(t)
	flags := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(stderr.String(), -1)
	if len(flags) < 10 {
		t.Fatalf("fetchd -h listed %d flags:\n%s", len(flags), stderr.String())
	}
	for _, f := range flags {
		if !regexp.MustCompile("`-" + f[1] + "[` =]").MatchString(doc) {
			t.Errorf("README does not document -%s", f[1])
		}
	}
}

// TestReadmeContract: the README's error table lists every error code, its
// result paragraph every result field, and it asks for the Go version
// go.mod needs.
func TestReadmeContract(t *testing.T) {
	doc := readme(t)
	for n, name := range fetchv1.ErrorCode_name {
		if n != 0 && !strings.Contains(doc, "| `"+name+"` |") {
			t.Errorf("README error table lacks %s", name)
		}
	}
	fields := (&fetchv1.FetchResponse{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		if name := string(fields.Get(i).Name()); !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("README does not describe the result field %s", name)
		}
	}
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\S+)`).FindSubmatch(mod)
	if goLine == nil || !strings.Contains(doc, "Go "+string(goLine[1])) {
		t.Errorf("README does not ask for Go %s, as go.mod does", goLine[1])
	}
}
