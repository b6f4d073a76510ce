package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fetchd/fetchd/client"
	fetchv1 "github.com/fetchd/fetchd/gen/fetch/v1"
	"github.com/fetchd/fetchd/internal/testbuf"
	"github.com/fetchd/fetchd/internal/testctx"
	"github.com/fetchd/fetchd/internal/testupstream"
)

// TLS, mutual TLS, bearer tokens, the per-caller rate limit and the
// connection limit, over real TCP with certificates made by the test.

// The tokens of the token file the tests write, and one that is not in it.
const (
	tokenAlpha = "alpha-token"
	tokenBeta  = "beta-token"
	tokenWrong = "gamma-token"
)

func bearer(token string) []string { return []string{"authorization", "Bearer " + token} }

// testPKI is a certificate authority with a server certificate (for
// 127.0.0.1 and localhost) and a client certificate, and an unrelated CA
// with a client certificate of its own. The *File fields are PEM files in a
// temporary directory.
type testPKI struct {
	caFile, serverCertFile, serverKeyFile, clientKeyFile string

	roots, otherRoots   *x509.CertPool
	server              tls.Certificate // the server's certificate and key, for misuse as a client certificate
	client, otherClient tls.Certificate
}

func newTestPKI(tb testing.TB) *testPKI {
	tb.Helper()
	dir := tb.TempDir()
	ca, caKey := newCert(tb, &x509.Certificate{Subject: pkix.Name{CommonName: "fetchd test CA"}, IsCA: true}, nil, nil)
	other, otherKey := newCert(tb, &x509.Certificate{Subject: pkix.Name{CommonName: "unrelated CA"}, IsCA: true}, nil, nil)
	srv, srvKey := newCert(tb, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "fetchd"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey)
	cli, cliKey := newCert(tb, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "caller"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey)
	otherCli, otherCliKey := newCert(tb, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "stranger"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, other, otherKey)

	p := &testPKI{
		caFile:         writePEM(tb, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw),
		serverCertFile: writePEM(tb, filepath.Join(dir, "server.pem"), "CERTIFICATE", srv.Raw),
		serverKeyFile:  writePEM(tb, filepath.Join(dir, "server-key.pem"), "PRIVATE KEY", marshalKey(tb, srvKey)),
		clientKeyFile:  writePEM(tb, filepath.Join(dir, "client-key.pem"), "PRIVATE KEY", marshalKey(tb, cliKey)),
		roots:          x509.NewCertPool(),
		otherRoots:     x509.NewCertPool(),
		server:         tls.Certificate{Certificate: [][]byte{srv.Raw}, PrivateKey: srvKey},
		client:         tls.Certificate{Certificate: [][]byte{cli.Raw}, PrivateKey: cliKey},
		otherClient:    tls.Certificate{Certificate: [][]byte{otherCli.Raw}, PrivateKey: otherCliKey},
	}
	p.roots.AddCert(ca)
	p.otherRoots.AddCert(other)
	return p
}

// newCert makes a certificate from tmpl, signed by parent (self-signed when
// parent is nil), valid for an hour either side of now.
func newCert(tb testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if tmpl.IsCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		tb.Fatalf("create certificate %s: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return cert, key
}

func marshalKey(tb testing.TB, key *ecdsa.PrivateKey) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func writePEM(tb testing.TB, path, blockType string, der []byte) string {
	tb.Helper()
	return writeTestFile(tb, path, string(pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})))
}

// writeTestFile writes content to path (a name alone is put in a new
// temporary directory) and returns the path.
func writeTestFile(tb testing.TB, path, content string) string {
	tb.Helper()
	if !filepath.IsAbs(path) {
		path = filepath.Join(tb.TempDir(), path)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// writeTokens writes a token file holding tokenAlpha and tokenBeta, with a
// comment, a blank line and surrounding spaces.
func writeTokens(tb testing.TB) string {
	tb.Helper()
	return writeTestFile(tb, "tokens", "# callers of fetchd\n"+tokenAlpha+"\n\n  "+tokenBeta+"  \n")
}

// dialWith returns a client connection to addr with creds (plaintext when
// nil), closed when tb ends.
func dialWith(tb testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	tb.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		tb.Fatalf("grpc.NewClient(%q): %v", addr, err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// fetchWithMD fetches u on a new Fetch stream of conn with md (name,
// value pairs) as metadata, and returns the one result or the call's
// error.
func fetchWithMD(ctx context.Context, conn grpc.ClientConnInterface, u string, md ...string) (*fetchv1.FetchResponse, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, md...)
	stream, err := fetchv1.NewFetchServiceClient(conn).Fetch(ctx)
	if err != nil {
		return nil, err
	}
	// Send fails with io.EOF when the server has ended the stream already;
	// Recv then returns its status.
	if err := stream.Send(&fetchv1.FetchRequest{Url: u}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	res, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		return res, fmt.Errorf("stream end after the result = %v, want io.EOF", err)
	}
	return res, nil
}

// newTestClient returns a client of the fetch client package for addr that
// gives up after one failed attempt, closed when tb ends.
func newTestClient(tb testing.TB, addr string, opts ...client.Option) *client.Client {
	tb.Helper()
	opts = append([]client.Option{client.WithRetryBudget(1), client.WithBackoff(10*time.Millisecond, 10*time.Millisecond)}, opts...)
	c, err := client.New(addr, opts...)
	if err != nil {
		tb.Fatalf("client.New(%q): %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// clientFetch fetches u through c and returns its result (nil if none) and
// the call's error.
func clientFetch(ctx context.Context, c *client.Client, u string) (*client.Result, error) {
	var res *client.Result
	for r, err := range c.Fetch(ctx, slices.Values([]*client.Job{client.Get(u)})) {
		if err != nil {
			return res, err
		}
		res = r
	}
	return res, nil
}

// checkFetch checks the outcome of a fetch of the upstream tagged tag:
// status 200 and one upstream request when want is codes.OK, else a call
// error with code want and no upstream request.
func checkFetch(tb testing.TB, up *testupstream.Upstream, what, tag string, res *fetchv1.FetchResponse, err error, want codes.Code) {
	tb.Helper()
	if want == codes.OK {
		if err != nil || res.GetStatusCode() != 200 {
			tb.Errorf("%s = %v, %v; want status 200", what, res, err)
		}
		if n := up.Tag(tag); n != 1 {
			tb.Errorf("%s: upstream saw %d requests, want 1", what, n)
		}
		return
	}
	if got := status.Code(err); got != want {
		tb.Errorf("%s = %v, %v; want code %v", what, res, err, want)
	}
	if n := up.Tag(tag); n != 0 {
		tb.Errorf("%s: upstream saw %d requests, want 0", what, n)
	}
}

// checkClientFetch is checkFetch for a fetch through the client package,
// which ends a call that no backend takes with an error wrapping
// [client.ErrUnavailable] and the last gRPC status, after an
// ERROR_CODE_UNAVAILABLE result for each job it had taken.
func checkClientFetch(tb testing.TB, up *testupstream.Upstream, what, tag string, res *client.Result, err error, want codes.Code) {
	tb.Helper()
	if want == codes.OK {
		checkFetch(tb, up, what, tag, res, err, want)
		return
	}
	if res != nil && res.GetError().GetCode() != fetchv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		tb.Errorf("%s result = %v, want none or ERROR_CODE_UNAVAILABLE", what, res)
	}
	if res != nil && !strings.Contains(res.GetError().GetMessage(), "code = "+want.String()) {
		tb.Errorf("%s result = %v, want its message to name code %v", what, res, want)
	}
	// The client's documented contract: "the jobs then unanswered are
	// first yielded as ERROR_CODE_UNAVAILABLE results", then the error.
	if !errors.Is(err, client.ErrUnavailable) || status.Code(err) != want {
		tb.Errorf("%s call error = %v, want client.ErrUnavailable with code %v, yielded last (result: %v)", what, err, want, res)
	}
	if n := up.Tag(tag); n != 0 {
		tb.Errorf("%s: upstream saw %d requests, want 0", what, n)
	}
}

// tlsCase is a client's TLS configuration (nil: plaintext) and the code
// its fetch through fetchd must end with.
type tlsCase struct {
	name string
	conf *tls.Config
	want codes.Code
}

// checkTLSCases fetches the upstream through the fetchd at addr once per
// case with a raw fetch.v1 stub and once with the client package (WithTLS,
// or WithTransportCredentials when viaCreds).
func checkTLSCases(t *testing.T, up *testupstream.Upstream, addr string, viaCreds bool, tests []tlsCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var creds credentials.TransportCredentials
			opt := client.WithInsecure()
			if tt.conf != nil {
				creds = credentials.NewTLS(tt.conf)
				opt = client.WithTLS(tt.conf)
				if viaCreds {
					opt = client.WithTransportCredentials(credentials.NewTLS(tt.conf))
				}
			}
			ctx := testctx.WithTimeout(t, 10*time.Second)
			tag := strings.ReplaceAll(t.Name(), "/", "-")

			u := up.URL + "/?tag=stub-" + tag
			res, err := fetchWithMD(ctx, dialWith(t, addr, creds), u)
			checkFetch(t, up, "stub Fetch("+u+")", "stub-"+tag, res, err, tt.want)

			u = up.URL + "/?tag=client-" + tag
			res, err = clientFetch(ctx, newTestClient(t, addr, opt), u)
			checkClientFetch(t, up, "client Fetch("+u+")", "client-"+tag, res, err, tt.want)
		})
	}
}

func TestTLS(t *testing.T) {
	up := testupstream.New(t)
	pki := newTestPKI(t)
	r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-tls-cert", pki.serverCertFile, "-tls-key", pki.serverKeyFile)
	if log := r.log.String(); !strings.Contains(log, "tls=true mtls=false auth=false") {
		t.Errorf("startup log = %q, want tls=true mtls=false auth=false", log)
	}
	checkTLSCases(t, up, r.addr, false, []tlsCase{
		{name: "trusted CA", conf: &tls.Config{RootCAs: pki.roots}, want: codes.OK},
		{name: "trusted CA as localhost", conf: &tls.Config{RootCAs: pki.roots, ServerName: "localhost"}, want: codes.OK},
		{name: "plaintext", want: codes.Unavailable},
		{name: "unrelated CA", conf: &tls.Config{RootCAs: pki.otherRoots}, want: codes.Unavailable},
		{name: "other server name", conf: &tls.Config{RootCAs: pki.roots, ServerName: "fetchd.example"}, want: codes.Unavailable},
	})

	t.Run("versions", func(t *testing.T) {
		tests := []struct {
			name     string
			min, max uint16
			wantErr  bool
		}{
			{"TLS 1.0 and 1.1", tls.VersionTLS10, tls.VersionTLS11, true},
			{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, false},
			{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				d := tls.Dialer{Config: &tls.Config{RootCAs: pki.roots, MinVersion: tt.min, MaxVersion: tt.max, NextProtos: []string{"h2"}}}
				conn, err := d.DialContext(testctx.WithTimeout(t, 5*time.Second), "tcp", r.addr)
				if err != nil {
					// A remote error: fetchd refused, not the test's client.
					if !tt.wantErr || !strings.Contains(err.Error(), "remote error") {
						t.Errorf("TLS handshake with versions %#x..%#x: %v", tt.min, tt.max, err)
					}
					return
				}
				defer conn.Close()
				if tt.wantErr {
					t.Errorf("TLS handshake with versions %#x..%#x succeeded, want an error (minimum TLS 1.2)", tt.min, tt.max)
				}
				if p := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
					t.Errorf("negotiated protocol %q, want h2", p)
				}
			})
		}
	})
}

func TestMutualTLS(t *testing.T) {
	up := testupstream.New(t)
	pki := newTestPKI(t)
	r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8",
		"-tls-cert", pki.serverCertFile, "-tls-key", pki.serverKeyFile, "-tls-client-ca", pki.caFile)
	if log := r.log.String(); !strings.Contains(log, "tls=true mtls=true") {
		t.Errorf("startup log = %q, want tls=true mtls=true", log)
	}
	withCert := func(c tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: pki.roots, Certificates: []tls.Certificate{c}}
	}
	checkTLSCases(t, up, r.addr, true, []tlsCase{
		{name: "client certificate", conf: withCert(pki.client), want: codes.OK},
		{name: "no client certificate", conf: &tls.Config{RootCAs: pki.roots}, want: codes.Unavailable},
		{name: "certificate of the unrelated CA", conf: withCert(pki.otherClient), want: codes.Unavailable},
		{name: "server certificate as client certificate", conf: withCert(pki.server), want: codes.Unavailable},
		{name: "plaintext", want: codes.Unavailable},
	})
}

func TestBearerAuth(t *testing.T) {
	up := testupstream.New(t)
	pki := newTestPKI(t)
	tokens := writeTokens(t)
	tlsRun := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-auth-token-file", tokens,
		"-tls-cert", pki.serverCertFile, "-tls-key", pki.serverKeyFile)
	plainRun := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-auth-token-file", tokens)

	const plaintextWarning = "bearer tokens are required but travel in plaintext"
	if log := plainRun.log.String(); !strings.Contains(log, plaintextWarning) || !strings.Contains(log, "auth=true") {
		t.Errorf("log with tokens and no TLS = %q, want %q and auth=true", log, plaintextWarning)
	}
	if log := tlsRun.log.String(); strings.Contains(log, plaintextWarning) {
		t.Errorf("log with tokens and TLS = %q, want no %q", log, plaintextWarning)
	}

	t.Run("stub", func(t *testing.T) {
		conn := dial(t, plainRun.addr)
		tests := []struct {
			name string
			md   []string
			want codes.Code
		}{
			{"no token", nil, codes.Unauthenticated},
			{"wrong token", bearer(tokenWrong), codes.Unauthenticated},
			{"prefix of a token", bearer(tokenAlpha[:3]), codes.Unauthenticated},
			{"empty token", []string{"authorization", "Bearer "}, codes.Unauthenticated},
			{"basic scheme", []string{"authorization", "Basic " + tokenAlpha}, codes.Unauthenticated},
			{"token without scheme", []string{"authorization", tokenAlpha}, codes.Unauthenticated},
			{"token in another header", []string{"x-api-key", tokenAlpha}, codes.Unauthenticated},
			{"first token", bearer(tokenAlpha), codes.OK},
			{"second token", bearer(tokenBeta), codes.OK},
			{"lower-case scheme", []string{"authorization", "bearer " + tokenAlpha}, codes.OK},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := testctx.WithTimeout(t, 10*time.Second)
				tag := "stub-" + strings.ReplaceAll(tt.name, " ", "-")
				u := up.URL + "/?tag=" + tag
				res, err := fetchWithMD(ctx, conn, u, tt.md...)
				checkFetch(t, up, fmt.Sprintf("Fetch(%q) with metadata %q", u, tt.md), tag, res, err, tt.want)

				batch, err := fetchv1.NewFetchServiceClient(conn).FetchBatch(metadata.AppendToOutgoingContext(ctx, tt.md...),
					&fetchv1.FetchBatchRequest{Jobs: []*fetchv1.FetchRequest{{Url: u}}})
				if err == nil {
					var r *fetchv1.FetchBatchResponse
					if r, err = batch.Recv(); err == nil && r.GetResult().GetStatusCode() != 200 {
						t.Errorf("FetchBatch(%q) with metadata %q = %v, want status 200", u, tt.md, r)
					}
				}
				if got := status.Code(err); got != tt.want {
					t.Errorf("FetchBatch(%q) with metadata %q = %v, want code %v", u, tt.md, err, tt.want)
				}
			})
		}

		// Health stays open: load balancers and probes have no token.
		ctx := testctx.WithTimeout(t, 10*time.Second)
		health := healthpb.NewHealthClient(conn)
		for _, service := range []string{"", fetchv1.FetchService_ServiceDesc.ServiceName} {
			res, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
			if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Health.Check(%q) without a token = %v, %v; want SERVING", service, res, err)
			}
		}
		watch, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("Health.Watch without a token: %v", err)
		}
		if res, err := watch.Recv(); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Health.Watch without a token = %v, %v; want SERVING", res, err)
		}
	})

	t.Run("client", func(t *testing.T) {
		tlsOpt := client.WithTLS(&tls.Config{RootCAs: pki.roots})
		tests := []struct {
			name string
			addr string
			opts []client.Option
			want codes.Code
		}{
			{"TLS and token", tlsRun.addr, []client.Option{tlsOpt, client.WithBearerToken(tokenAlpha)}, codes.OK},
			{"token before TLS", tlsRun.addr, []client.Option{client.WithBearerToken(tokenBeta), tlsOpt}, codes.OK},
			{"TLS and wrong token", tlsRun.addr, []client.Option{tlsOpt, client.WithBearerToken(tokenWrong)}, codes.Unauthenticated},
			{"TLS without token", tlsRun.addr, []client.Option{tlsOpt}, codes.Unauthenticated},
			{"explicit plaintext and token", plainRun.addr, []client.Option{client.WithInsecure(), client.WithBearerToken(tokenBeta)}, codes.OK},
			{"plaintext without token", plainRun.addr, []client.Option{client.WithInsecure()}, codes.Unauthenticated},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ctx := testctx.WithTimeout(t, 10*time.Second)
				tag := "client-" + strings.ReplaceAll(tt.name, " ", "-")
				u := up.URL + "/?tag=" + tag
				res, err := clientFetch(ctx, newTestClient(t, tt.addr, tt.opts...), u)
				checkClientFetch(t, up, "client Fetch("+u+")", tag, res, err, tt.want)
			})
		}

		// A token must not go out in plaintext by accident.
		if c, err := client.New(plainRun.addr, client.WithBearerToken(tokenAlpha)); err == nil {
			c.Close()
			t.Errorf("client.New(%q, WithBearerToken) without a transport option = nil error, want one", plainRun.addr)
		}
	})

	t.Run("no token in the logs", func(t *testing.T) {
		for _, r := range []*runner{plainRun, tlsRun} {
			log := r.log.String()
			for _, tok := range []string{tokenAlpha, tokenBeta, tokenWrong} {
				if strings.Contains(log, tok) {
					t.Errorf("run log contains the token %q:\n%s", tok, log)
				}
			}
		}
	})

	t.Run("grpcurl", func(t *testing.T) {
		// The shell path, through the binary: reflection needs a token too.
		p := startFetchd(t, "-allow-cidr", "127.0.0.0/8", "-auth-token-file", tokens,
			"-tls-cert", pki.serverCertFile, "-tls-key", pki.serverKeyFile)
		tlsArgs := []string{"-cacert", pki.caFile}
		withToken := []string{"-H", "authorization: Bearer " + tokenAlpha}
		reflectToken := []string{"-reflect-header", "authorization: Bearer " + tokenAlpha}

		if _, err := grpcurl(t, append(tlsArgs, p.addr, "list")...); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
			t.Errorf("grpcurl list without a token = %v, want Unauthenticated", err)
		}
		wrong := []string{"-H", "authorization: Bearer " + tokenWrong}
		if _, err := grpcurl(t, slices.Concat(tlsArgs, wrong, []string{p.addr, "list"})...); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
			t.Errorf("grpcurl list with a wrong token = %v, want Unauthenticated", err)
		}
		if _, err := grpcurl(t, "-plaintext", withToken[0], withToken[1], p.addr, "list"); err == nil {
			t.Errorf("grpcurl -plaintext list against TLS = nil error, want one")
		}
		out, err := grpcurl(t, slices.Concat(tlsArgs, withToken, []string{p.addr, "list"})...)
		if err != nil {
			t.Fatalf("grpcurl list with a token: %v", err)
		}
		if !slices.Contains(strings.Fields(out), "fetch.v1.FetchService") {
			t.Errorf("grpcurl list with a token = %q, want fetch.v1.FetchService", out)
		}

		// With the token on reflection only, the call itself carries none:
		// health answers, the fetch service does not.
		out, err = grpcurl(t, slices.Concat(tlsArgs, reflectToken, []string{"-d", "{}", p.addr, "grpc.health.v1.Health/Check"})...)
		if err != nil || !strings.Contains(out, "SERVING") {
			t.Errorf("grpcurl Health/Check without a token = %q, %v; want SERVING", out, err)
		}
		u := up.URL + "/?tag=grpcurl-no-token"
		job := `{"url":"` + u + `"}`
		if _, err := grpcurl(t, slices.Concat(tlsArgs, reflectToken, []string{"-d", job, p.addr, "fetch.v1.FetchService/Fetch"})...); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
			t.Errorf("grpcurl Fetch without a token = %v, want Unauthenticated", err)
		}
		if n := up.Tag("grpcurl-no-token"); n != 0 {
			t.Errorf("upstream saw %d requests of an unauthenticated call, want 0", n)
		}
		u = up.URL + "/?tag=grpcurl-token"
		job = `{"url":"` + u + `"}`
		out, err = grpcurl(t, slices.Concat(tlsArgs, withToken, []string{"-d", job, p.addr, "fetch.v1.FetchService/Fetch"})...)
		if err != nil || !strings.Contains(out, `"statusCode": 200`) {
			t.Errorf("grpcurl Fetch with a token = %q, %v; want statusCode 200", out, err)
		}
		if n := up.Tag("grpcurl-token"); n != 1 {
			t.Errorf("upstream saw %d requests, want 1", n)
		}
		for _, tok := range []string{tokenAlpha, tokenWrong} {
			if strings.Contains(p.Log(), tok) {
				t.Errorf("fetchd log contains the token %q", tok)
			}
		}
	})
}

func TestBadSecurityConfig(t *testing.T) {
	pki := newTestPKI(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	notPEM := writeTestFile(t, "not.pem", "this is not a certificate\n")
	noTokens := writeTestFile(t, "tokens", "# nobody may call\n\n   \n")
	cert, key, ca := pki.serverCertFile, pki.serverKeyFile, pki.caFile

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // in the error
	}{
		{name: "cert without key", args: []string{"-tls-cert", cert}, want: "-tls-cert and -tls-key go together"},
		{name: "key without cert", args: []string{"-tls-key", key}, want: "-tls-cert and -tls-key go together"},
		{name: "client CA without cert", args: []string{"-tls-client-ca", ca}, want: "-tls-client-ca needs -tls-cert and -tls-key"},
		{name: "missing cert file", args: []string{"-tls-cert", missing, "-tls-key", key}, want: "load -tls-cert/-tls-key"},
		{name: "missing key file", args: []string{"-tls-cert", cert, "-tls-key", missing}, want: "load -tls-cert/-tls-key"},
		{name: "cert file not PEM", args: []string{"-tls-cert", notPEM, "-tls-key", key}, want: "load -tls-cert/-tls-key"},
		{name: "key of another cert", args: []string{"-tls-cert", cert, "-tls-key", pki.clientKeyFile}, want: "load -tls-cert/-tls-key"},
		{name: "client CA not PEM", args: []string{"-tls-cert", cert, "-tls-key", key, "-tls-client-ca", notPEM}, want: "no PEM certificate found"},
		{name: "client CA missing", args: []string{"-tls-cert", cert, "-tls-key", key, "-tls-client-ca", missing}, want: "read -tls-client-ca"},
		{name: "empty token file", args: []string{"-auth-token-file", noTokens}, want: "holds no token"},
		{name: "env empty token file", env: map[string]string{"FETCHD_AUTH_TOKEN_FILE": noTokens}, want: "holds no token"},
		{name: "missing token file", args: []string{"-auth-token-file", missing}, want: "missing.pem"},
		{name: "zero rate burst", args: []string{"-rate-limit", "1", "-rate-burst", "0"}, want: "-rate-burst must be at least 1"},
		{name: "negative rate", args: []string{"-rate-limit", "-1"}, want: "-rate-limit must not be negative"},
		{name: "negative connection limit", args: []string{"-max-connections", "-1"}, want: "-max-connections -1: must not be negative"},
		{name: "negative per-IP connection limit", args: []string{"-max-connections-per-ip", "-1"}, want: "-max-connections-per-ip -1: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testctx.WithTimeout(t, 5*time.Second)
			var stderr testbuf.Buffer
			err := run(ctx, append([]string{"-listen", "127.0.0.1:0"}, tt.args...), env(tt.env), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run(%q) with env %v = %v, want an error containing %q", tt.args, tt.env, err, tt.want)
			}
			if strings.Contains(stderr.String(), "fetchd listening") {
				t.Errorf("run(%q) started serving", tt.args)
			}
		})
	}

	t.Run("binary", func(t *testing.T) {
		for _, args := range [][]string{
			{"-auth-token-file", noTokens},
			{"-tls-cert", cert, "-tls-key", key, "-tls-client-ca", notPEM},
		} {
			code, out := runFetchd(t, 10*time.Second, nil, args...)
			if code != 1 || !strings.HasPrefix(out, "fetchd: ") {
				t.Errorf("fetchd %s = exit code %d, %q; want 1 and a fetchd: error", strings.Join(args, " "), code, out)
			}
			if strings.Contains(out, "fetchd listening") {
				t.Errorf("fetchd %s started serving", strings.Join(args, " "))
			}
		}
	})
}

// openStream opens a Fetch stream on conn with md and fetches u on it,
// leaving the stream open; it returns the stream, or the error of the call.
func openStream(ctx context.Context, conn grpc.ClientConnInterface, u string, md ...string) (grpc.BidiStreamingClient[fetchv1.FetchRequest, fetchv1.FetchResponse], error) {
	stream, err := fetchv1.NewFetchServiceClient(conn).Fetch(metadata.AppendToOutgoingContext(ctx, md...))
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&fetchv1.FetchRequest{Url: u}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	res, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if res.GetStatusCode() != 200 {
		return nil, fmt.Errorf("Fetch(%q) = %v, want status 200", u, res)
	}
	return stream, nil
}

// closeStream half-closes stream and checks that it ends OK.
func closeStream(tb testing.TB, stream grpc.BidiStreamingClient[fetchv1.FetchRequest, fetchv1.FetchResponse]) {
	tb.Helper()
	if err := stream.CloseSend(); err != nil {
		tb.Errorf("CloseSend: %v", err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		tb.Errorf("stream end = %v, want io.EOF", err)
	}
}

func TestRateLimit(t *testing.T) {
	up := testupstream.New(t)
	u := up.URL + "/?size=1"

	t.Run("per token", func(t *testing.T) {
		r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-rate-limit", "1", "-rate-burst", "3", "-auth-token-file", writeTokens(t))
		ctx := testctx.WithTimeout(t, 20*time.Second)
		conn := dial(t, r.addr) // every call on one connection: the token tells callers apart
		var streams []grpc.BidiStreamingClient[fetchv1.FetchRequest, fetchv1.FetchResponse]
		burstStart := time.Now()
		for i := range 3 {
			st, err := openStream(ctx, conn, u, bearer(tokenAlpha)...)
			if err != nil {
				t.Fatalf("call %d of a burst of 3: %v", i+1, err)
			}
			streams = append(streams, st)
		}
		// The three are still open; the rate limits calls, not streams open.
		_, err := fetchWithMD(ctx, conn, u, bearer(tokenAlpha)...)
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("4th call at once = %v, want code ResourceExhausted", err)
		}
		if res, err := fetchWithMD(ctx, conn, u, bearer(tokenBeta)...); err != nil || res.GetStatusCode() != 200 {
			t.Errorf("call of another caller = %v, %v; want status 200", res, err)
		}
		// Health needs no token and is not rate limited.
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("Health.Check from the same connection: %v", err)
		}
		for _, st := range streams {
			closeStream(t, st)
		}

		// A token a second: the caller is back within about a second.
		for {
			_, err := fetchWithMD(ctx, conn, u, bearer(tokenAlpha)...)
			if err == nil {
				break
			}
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("call while over the rate = %v, want code ResourceExhausted", err)
			}
			if time.Since(burstStart) > 5*time.Second {
				t.Fatalf("still over the rate %v after the burst began: %v", time.Since(burstStart), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The bucket was full (3) when the burst began and refills at 1/s:
		// a 4th call cannot pass before a second has gone by.
		if d := time.Since(burstStart); d < time.Second {
			t.Errorf("caller back %v after the burst began, want at least 1s (rate 1/s, burst 3)", d)
		}
	})

	t.Run("per IP", func(t *testing.T) {
		r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-rate-limit", "0.5", "-rate-burst", "2")
		ctx := testctx.WithTimeout(t, 20*time.Second)
		first, second := dial(t, r.addr), dial(t, r.addr)
		for i, conn := range []*grpc.ClientConn{first, second} {
			if _, err := fetchWithMD(ctx, conn, u); err != nil {
				t.Fatalf("call %d of a burst of 2: %v", i+1, err)
			}
		}
		// A new connection from the same address is the same caller.
		_, err := fetchWithMD(ctx, dial(t, r.addr), u)
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("3rd call from the same IP = %v, want code ResourceExhausted", err)
		}
		batch, err := fetchv1.NewFetchServiceClient(first).FetchBatch(ctx, &fetchv1.FetchBatchRequest{})
		if err == nil {
			_, err = batch.Recv()
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("FetchBatch over the rate = %v, want code ResourceExhausted", err)
		}
		// Probes from the same address (behind the same NAT) still pass.
		for i := range 5 {
			if _, err := healthpb.NewHealthClient(first).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Errorf("Health.Check %d with the IP's bucket spent: %v, want SERVING", i+1, err)
			}
		}
	})
}

// TestConnectionLimit: when -max-connections is full, a new connection
// takes the slot of one without a fetch in progress, and is refused at once
// (not kept waiting) while every slot has one.
func TestConnectionLimit(t *testing.T) {
	up := testupstream.New(t)
	u := up.URL + "/?size=1"
	r := startRun(t, env(nil), "-allow-cidr", "127.0.0.0/8", "-max-connections", "2", "-max-connections-per-ip", "2")
	ctx := testctx.WithTimeout(t, 20*time.Second)

	// Two connections, each holding a stream open.
	var streams []grpc.BidiStreamingClient[fetchv1.FetchRequest, fetchv1.FetchResponse]
	for i := range 2 {
		conn := dial(t, r.addr)
		st, err := openStream(ctx, conn, u)
		if err != nil {
			t.Fatalf("connection %d of 2: %v", i+1, err)
		}
		streams = append(streams, st)
	}

	// The third connection is refused at once: both have work.
	third := dial(t, r.addr)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := healthpb.NewHealthClient(third).Check(short, &healthpb.HealthCheckRequest{})
	cancel()
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Health.Check on a 3rd connection = %v, want code Unavailable while 2 have work", err)
	}

	// Once the first has no stream, the third takes its slot.
	closeStream(t, streams[0])
	if _, err := healthpb.NewHealthClient(third).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("Health.Check on the 3rd connection after the 1st went idle: %v", err)
	}
	if res, err := fetchWithMD(ctx, third, u); err != nil || res.GetStatusCode() != 200 {
		t.Errorf("Fetch(%q) on the 3rd connection = %v, %v; want status 200", u, res, err)
	}
	testctx.WaitFor(t, 5*time.Second, "the idle connection to be evicted", func() bool {
		return strings.Contains(r.log.String(), "connection evicted")
	})
	// The second stream was served all along.
	if err := streams[1].Send(&fetchv1.FetchRequest{Url: u}); err != nil {
		t.Fatalf("Send on the 2nd connection: %v", err)
	}
	if res, err := streams[1].Recv(); err != nil || res.GetStatusCode() != 200 {
		t.Errorf("Fetch(%q) on the 2nd connection = %v, %v; want status 200", u, res, err)
	}
	closeStream(t, streams[1])
}
