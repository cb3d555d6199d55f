package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPKI is a throw-away CA with one leaf certificate usable as server and
// client certificate.
type TestPKI struct {
	// Files: Cert = leaf + CA chain (PEM), Key = leaf key, CA = CA cert.
	Files TLSFiles
	// LeafOnly is the leaf certificate without the chain.
	LeafOnly string
	// CAKey is the CA private key (PEM), to sign more certificates.
	CAKey string
}

// DefaultLeafNames are the DNS SANs of the leaf made by NewTestPKI.
var DefaultLeafNames = []string{"sbc.test", "uas.test", "uac.test"}

// NewTestPKI writes a fresh ECDSA P-256 CA and leaf into a temp dir. The
// leaf has SANs DNS sbc.test, uas.test, uac.test (or dnsNames if given) and
// IP 127.0.0.1, EKU serverAuth+clientAuth, and is valid for one day.
func NewTestPKI(t testing.TB, dnsNames ...string) TestPKI {
	t.Helper()
	if len(dnsNames) == 0 {
		dnsNames = DefaultLeafNames
	}
	dir := t.TempDir()
	now := time.Now().Add(-time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("harness: CA key: %v", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "edge-sbc test CA", Organization: []string{"edge-sbc test"}},
		NotBefore:             now,
		NotAfter:              now.Add(25 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("harness: CA cert: %v", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("harness: CA cert: %v", err)
	}

	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("harness: leaf key: %v", err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: dnsNames[0], Organization: []string{"edge-sbc test"}},
		NotBefore:    now,
		NotAfter:     now.Add(25 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dnsNames,
		IPAddresses:  []net.IP{net.ParseIP(LoopbackIP)},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("harness: leaf cert: %v", err)
	}

	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	p := TestPKI{
		Files: TLSFiles{
			Cert: filepath.Join(dir, "leaf.pem"),
			Key:  filepath.Join(dir, "leaf.key"),
			CA:   filepath.Join(dir, "ca.pem"),
		},
		LeafOnly: filepath.Join(dir, "leaf-only.pem"),
		CAKey:    filepath.Join(dir, "ca.key"),
	}
	writePEM(t, p.Files.CA, caPEM)
	writePEM(t, p.Files.Cert, append(append([]byte{}, leafPEM...), caPEM...))
	writePEM(t, p.LeafOnly, leafPEM)
	writePEM(t, p.Files.Key, keyPEM(t, leafKey))
	writePEM(t, p.CAKey, keyPEM(t, caKey))
	return p
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatalf("harness: serial: %v", err)
	}
	return n
}

func keyPEM(t testing.TB, k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatalf("harness: key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writePEM(t testing.TB, path string, data []byte) {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("harness: write %s: %v", path, err)
	}
}
