package recvlimit

import (
	"net"

	"google.golang.org/grpc/credentials"
)

// Credentials returns tc whose server handshakes return connections watched
// by l. The handshake itself, its AuthInfo (mTLS identities), and the client
// side are tc's own.
func (l *Limiter) Credentials(tc credentials.TransportCredentials) credentials.TransportCredentials {
	return &creds{TransportCredentials: tc, l: l}
}

// creds wraps transport credentials for a [Limiter].
type creds struct {
	credentials.TransportCredentials
	l *Limiter
}

// ServerHandshake runs the wrapped handshake and watches the connection it
// returns.
func (c *creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	return c.l.Wrap(conn), info, nil
}

// Clone clones the wrapped credentials, watched by the same Limiter.
func (c *creds) Clone() credentials.TransportCredentials {
	return &creds{TransportCredentials: c.TransportCredentials.Clone(), l: c.l}
}
