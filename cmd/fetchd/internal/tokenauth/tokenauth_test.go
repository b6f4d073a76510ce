package tokenauth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func writeFile(tb testing.TB, content string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    int
		wantErr string
	}{
		{"two tokens", "alpha\nbeta\n", 2, ""},
		{"comments and blanks", "# ops\n\n  alpha  \n#beta\n", 1, ""},
		{"empty", "# nothing\n\n", 0, "holds no token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Load(writeFile(t, tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || tok.Len() != tt.want {
				t.Fatalf("Load = %v tokens, %v; want %d, nil", tok.Len(), err, tt.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Load(missing file) = nil error")
	}
}

func TestAuthFunc(t *testing.T) {
	tok, err := Load(writeFile(t, "alpha\n  beta \n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		md       metadata.MD
		wantCode codes.Code
	}{
		{"valid", metadata.Pairs("authorization", "Bearer alpha"), codes.OK},
		{"valid trimmed in file", metadata.Pairs("authorization", "bearer beta"), codes.OK},
		{"unknown", metadata.Pairs("authorization", "Bearer gamma"), codes.Unauthenticated},
		{"prefix of a token", metadata.Pairs("authorization", "Bearer alph"), codes.Unauthenticated},
		{"wrong scheme", metadata.Pairs("authorization", "Basic alpha"), codes.Unauthenticated},
		{"missing", metadata.MD{}, codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.NewIncomingContext(context.Background(), tt.md)
			got, err := tok.AuthFunc()(ctx)
			if c := status.Code(err); c != tt.wantCode {
				t.Fatalf("AuthFunc(%v) = %v, want %v", tt.md, err, tt.wantCode)
			}
			if err == nil && !strings.HasPrefix(Caller(got), "token:") {
				t.Errorf("Caller = %q, want a token identity", Caller(got))
			}
		})
	}
	a, _ := tok.Check("alpha")
	b, _ := tok.Check("beta")
	if a == b || a == "" {
		t.Errorf("identities %q and %q: want distinct and non-empty", a, b)
	}
	if strings.Contains(a, "alpha") {
		t.Errorf("identity %q reveals the token", a)
	}
}
