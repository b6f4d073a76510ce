package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/fetchd/fetchd/internal/testupstream"
)

// testCA is a certificate authority for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(tb testing.TB) *testCA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fetchctl test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate for dnsName signed by the CA, and its key,
// in PEM.
func (ca *testCA) issue(tb testing.TB, serial int64, dnsName string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: dnsName},
		DNSNames:     []string{dnsName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// tokens records the authorization metadata of the streams a server got.
type tokens struct {
	mu  sync.Mutex // guards got
	got []string
}

func (k *tokens) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	k.mu.Lock()
	k.got = append(k.got, strings.Join(md.Get("authorization"), ","))
	k.mu.Unlock()
	return handler(srv, ss)
}

func (k *tokens) all() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.got...)
}

// TestRunTLS checks -tls-ca, -tls-cert/-tls-key (mTLS), -tls-server-name
// and -token-file against a fetchd that requires a client certificate.
func TestRunTLS(t *testing.T) {
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue(t, 2, "fetchd.test", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.issue(t, 3, "fetchctl", x509.ExtKeyUsageClientAuth)
	dir := t.TempDir()
	files := map[string][]byte{"ca.pem": ca.pem, "client.pem": cliCert, "client.key": cliKey, "token": []byte("  s3cret\n")}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	var toks tokens
	addr := startBackend(t,
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert})),
		grpc.StreamInterceptor(toks.intercept))
	up := testupstream.New(t)

	f := func(name string) string { return filepath.Join(dir, name) }
	mtls := []string{"-tls-ca", f("ca.pem"), "-tls-cert", f("client.pem"), "-tls-key", f("client.key")}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantCode  int
		wantToken string
	}{
		{name: "mTLS with token", args: append(append([]string{"-tls-server-name", "fetchd.test"}, mtls...), "-token-file", f("token")),
			wantToken: "Bearer s3cret"},
		{name: "mTLS from env", env: map[string]string{"FETCHCTL_TLS_CA": f("ca.pem"), "FETCHCTL_TLS_CERT": f("client.pem"),
			"FETCHCTL_TLS_KEY": f("client.key"), "FETCHCTL_TLS_SERVER_NAME": "fetchd.test"}},
		{name: "wrong server name", args: mtls, wantCode: 1},
		{name: "no client certificate", args: []string{"-tls-ca", f("ca.pem"), "-tls-server-name", "fetchd.test"}, wantCode: 1},
		{name: "system roots", args: []string{"-tls", "-tls-server-name", "fetchd.test"}, wantCode: 1},
		{name: "plaintext", wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(toks.all())
			args := append([]string{"-addr", addr, "-retry-budget", "1"}, tt.args...)
			r := runCtl(t, nil, tt.env, append(args, up.URL+"/")...)
			r.wantCode(t, tt.wantCode)
			if tt.wantCode != 0 {
				if !strings.Contains(r.stderr, "fetchctl: cannot reach fetchd at "+addr) {
					t.Errorf("stderr lacks the reason:\n%s", r.stderr)
				}
				return
			}
			if l := r.lines(t); len(l) != 1 || l[0].Status != 200 {
				t.Errorf("fetchctl %q = %+v, want one result with status 200", r.args, l)
			}
			if got := toks.all()[before:]; len(got) != 1 || got[0] != tt.wantToken {
				t.Errorf("fetchd saw authorization %q, want [%q]", got, tt.wantToken)
			}
		})
	}
}
