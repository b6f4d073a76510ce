package fetcher

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// LoadRootCAs returns a pool for [Config.RootCAs] holding the system roots
// plus every certificate of the PEM file pemFile, so that an operator can
// trust an internal CA without distrusting the public ones. Blocks other
// than CERTIFICATE (a key, say) are ignored. It fails if the file cannot be
// read, if a certificate does not parse, or if the file holds none. Where
// the system roots are unavailable, the pool holds the file's certificates
// only.
func LoadRootCAs(pemFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(pemFile)
	if err != nil {
		return nil, fmt.Errorf("load root CAs: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("load root CAs from %s: certificate %d: %w", pemFile, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("load root CAs: no PEM certificate in %s", pemFile)
	}
	return pool, nil
}
