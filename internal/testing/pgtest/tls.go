package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// StartTLS is Start with TLS on, as production databases run (CloudNativePG's among them): the
// server presents a certificate made for the run, and a client whose URL asks for TLS (TLSURL)
// talks to it encrypted. Stop removes the certificate with the data.
func StartTLS() (*Server, error) {
	dir, err := os.MkdirTemp("", "pgtest-tls-")
	if err != nil {
		return nil, err
	}
	cert, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := writeCertificate(dir, cert, key); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("making the server's certificate: %w", err)
	}
	s, err := start("", 200, "ssl=on", "ssl_cert_file="+cert, "ssl_key_file="+key)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.tlsDir = dir
	return s, nil
}

// TLSURL is the URL of database db, asking for TLS (and, the certificate being made for the run,
// not verifying it).
func (s *Server) TLSURL(db string) string {
	return strings.Replace(s.URL(db), "sslmode=disable", "sslmode=require", 1)
}

// writeCertificate writes a self-signed certificate for 127.0.0.1 and its key, owned by the user
// the server runs as: PostgreSQL refuses a key file that others can read.
func writeCertificate(dir, certPath, keyPath string) error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	attr, err := credential(dir)
	if err != nil {
		return err
	}
	if c := attr.Credential; c != nil {
		for _, f := range []string{certPath, keyPath} {
			if err := os.Chown(f, int(c.Uid), int(c.Gid)); err != nil {
				return err
			}
		}
	}
	return nil
}
