package fetcher

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testctx"
)

// writePEM writes blocks to a file in a temporary directory and returns its
// path.
func writePEM(tb testing.TB, blocks ...*pem.Block) string {
	tb.Helper()
	var b strings.Builder
	for _, blk := range blocks {
		if err := pem.Encode(&b, blk); err != nil {
			tb.Fatal(err)
		}
	}
	path := filepath.Join(tb.TempDir(), "roots.pem")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func certBlock(c *x509.Certificate) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw} }

// keyBlock returns a PEM block holding a fresh private key.
func keyBlock(tb testing.TB) *pem.Block {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

func TestLoadRootCAs(t *testing.T) {
	t.Parallel()
	srv, _ := startTLS(t, func(w http.ResponseWriter, r *http.Request) {})
	cert := srv.Certificate()
	tests := []struct {
		name    string
		path    func(testing.TB) string
		wantErr string // substring; "" for success
	}{
		{"one certificate", func(tb testing.TB) string { return writePEM(tb, certBlock(cert)) }, ""},
		{"certificate among other blocks", func(tb testing.TB) string { return writePEM(tb, keyBlock(tb), certBlock(cert)) }, ""},
		{"missing file", func(tb testing.TB) string { return filepath.Join(tb.TempDir(), "missing.pem") }, "no such file"},
		{"empty file", func(tb testing.TB) string { return writePEM(tb) }, "no PEM certificate"},
		{"key only", func(tb testing.TB) string { return writePEM(tb, keyBlock(tb)) }, "no PEM certificate"},
		{"not PEM", func(tb testing.TB) string {
			path := filepath.Join(tb.TempDir(), "der.crt")
			os.WriteFile(path, cert.Raw, 0o600)
			return path
		}, "no PEM certificate"},
		{"corrupt certificate", func(tb testing.TB) string {
			return writePEM(tb, certBlock(cert), &pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")})
		}, "certificate 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path(t)
			pool, err := LoadRootCAs(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || pool != nil {
					t.Fatalf("LoadRootCAs(%q) = %v, %v; want nil and an error containing %q", path, pool, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadRootCAs(%q) = %v, want a pool", path, err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
				t.Errorf("the certificate of LoadRootCAs(%q) does not verify against the pool: %v", path, err)
			}
			// The pool is the system roots plus the file's certificate.
			want, err := x509.SystemCertPool()
			if err != nil {
				want = x509.NewCertPool()
			}
			want.AddCert(cert)
			if !pool.Equal(want) {
				t.Errorf("LoadRootCAs(%q) is not the system roots plus the file's certificate", path)
			}
		})
	}
}

// TestFetchTLSLoadRootCAs: an upstream with a self-signed certificate fails
// TLS with the system roots, and succeeds with LoadRootCAs of a PEM file
// holding its certificate.
func TestFetchTLSLoadRootCAs(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, engine Engine) {
		srv, _ := startTLS(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "internal CA") })
		pool, err := LoadRootCAs(writePEM(t, certBlock(srv.Certificate())))
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			name     string
			cfg      Config
			wantCode fetchv1.ErrorCode
			wantBody string
		}{
			{"system roots", Config{Policy: loopbackPolicy()}, fetchv1.ErrorCode_ERROR_CODE_TLS_FAILURE, ""},
			{"LoadRootCAs", Config{Policy: loopbackPolicy(), RootCAs: pool}, fetchv1.ErrorCode_ERROR_CODE_UNSPECIFIED, "internal CA"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				f := newFetcher(t, engine, tt.cfg)
				resp := doFetch(testctx.New(t), t, f, &fetchv1.FetchRequest{Url: srv.URL}, testLimits)
				wantCode(t, srv.URL, resp, tt.wantCode)
				if string(resp.GetBody()) != tt.wantBody {
					t.Errorf("Fetch(%q) body = %q, want %q", srv.URL, resp.GetBody(), tt.wantBody)
				}
			})
		}
	})
}
