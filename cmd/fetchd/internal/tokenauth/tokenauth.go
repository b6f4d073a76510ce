package tokenauth

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Tokens is a set of accepted bearer tokens. The zero value accepts none.
type Tokens struct {
	digests [][sha256.Size]byte
}

// Load reads tokens from the file at path, one per line. A file with no
// token is an error: it would lock every caller out.
func Load(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenauth: %w", err)
	}
	defer f.Close()
	t := &Tokens{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		t.digests = append(t.digests, sha256.Sum256([]byte(line)))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenauth: read %s: %w", path, err)
	}
	if len(t.digests) == 0 {
		return nil, fmt.Errorf("tokenauth: %s holds no token", path)
	}
	return t, nil
}

// New returns a set of the given tokens.
func New(tokens ...string) *Tokens {
	t := &Tokens{}
	for _, tok := range tokens {
		t.digests = append(t.digests, sha256.Sum256([]byte(tok)))
	}
	return t
}

// Len returns the number of tokens.
func (t *Tokens) Len() int { return len(t.digests) }

// ErrUnknownToken is the cause of a refusal for a token not in the set.
var ErrUnknownToken = errors.New("unknown bearer token")

// Check returns the caller identity for token, or ErrUnknownToken. It
// compares against every token in constant time.
func (t *Tokens) Check(token string) (string, error) {
	d := sha256.Sum256([]byte(token))
	found := 0
	for i := range t.digests {
		found |= subtle.ConstantTimeCompare(d[:], t.digests[i][:])
	}
	if found == 0 {
		return "", ErrUnknownToken
	}
	return "token:" + hex.EncodeToString(d[:4]), nil
}

type callerKey struct{}

// Caller returns the identity recorded by [Tokens.AuthFunc], or "".
func Caller(ctx context.Context) string {
	c, _ := ctx.Value(callerKey{}).(string)
	return c
}

// AuthFunc returns the function for auth.UnaryServerInterceptor and
// auth.StreamServerInterceptor: calls without a known bearer token fail
// with codes.Unauthenticated.
func (t *Tokens) AuthFunc() auth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
		tok, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, err // already codes.Unauthenticated
		}
		caller, err := t.Check(tok)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, err.Error())
		}
		return context.WithValue(ctx, callerKey{}, caller), nil
	}
}
