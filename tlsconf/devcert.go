package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Development PKI file names and lifetimes.
const (
	DevCAFile     = "ca.pem"
	DevCAKeyFile  = "ca.key"
	DevLeafLife   = 825 * 24 * time.Hour
	devCALife     = 10 * 365 * 24 * time.Hour
	devBackdate   = time.Hour
	devCACommonNm = "edge-sbc development CA"
)

// DevFiles lists the files written by WriteDevPKI. Leaves is keyed by the
// names passed to WriteDevPKI.
type DevFiles struct {
	CA, CAKey string
	Leaves    map[string]LeafFiles
}

// LeafFiles are the paths of one leaf: Cert holds the leaf followed by the
// CA certificate (full chain), Key the PKCS#8 private key (mode 0600).
type LeafFiles struct{ Cert, Key string }

// LeafOptions describes a leaf for IssueDevLeaf.
type LeafOptions struct {
	// Names are DNS names or IP literals; IP literals become IP SANs.
	// The first name is also the subject CN.
	Names []string
	// IPs are additional IP SANs.
	IPs []netip.Addr
	// URIs are URI SANs, e.g. "sips:example.com" (an RFC 5922 SIP domain
	// identity). Each must parse as a URL.
	URIs []string
	// CommonName overrides the subject CN (default: the first name). With
	// no Names, IPs or URIs it makes a certificate without any SAN, whose
	// identity is its CN only.
	CommonName string
	// NotBefore/NotAfter default to now-1h and NotBefore+825 days.
	NotBefore, NotAfter time.Time
	// ServerAuth/ClientAuth select the extended key usages. If both are
	// false the certificate has no EKU extension at all, which crypto/x509
	// treats as valid for any usage.
	ServerAuth, ClientAuth bool
	// FileBase is the file name without extension (<FileBase>.pem/.key);
	// default derived from the first name or IP. It must not contain a
	// path separator.
	FileBase string
}

// WriteDevPKI writes a development PKI into dir (created with mode 0700):
// a CA (ca.pem, ca.key; reused when already present, parseable, matching and
// valid for at least another day, otherwise replaced) and, for each name, a
// leaf <name>.pem (leaf + CA) and <name>.key (0600): ECDSA P-256, EKU
// serverAuth+clientAuth, KeyUsage digitalSignature, SAN DNS = name (SAN IP
// if name is an IP literal) plus the SAN IPs ips, valid 825 days from
// now-1h. Characters other than letters, digits, '.', '-' and '_' in name
// are replaced by '_' in file names; a name whose file base would be "ca"
// is rejected. Files are written atomically (temp
// file + rename). Not safe for concurrent use on the same dir.
func WriteDevPKI(dir string, names []string, ips []netip.Addr) (DevFiles, error) {
	if len(names) == 0 {
		return DevFiles{}, fmt.Errorf("tlsconf: dev PKI: no leaf names: %w", ErrDevPKI)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return DevFiles{}, fmt.Errorf("tlsconf: dev PKI dir %q: %w", dir, err)
	}
	if _, _, err := loadOrCreateCA(dir); err != nil {
		return DevFiles{}, err
	}
	out := DevFiles{
		CA:     filepath.Join(dir, DevCAFile),
		CAKey:  filepath.Join(dir, DevCAKeyFile),
		Leaves: make(map[string]LeafFiles, len(names)),
	}
	for _, n := range names {
		lf, err := IssueDevLeaf(dir, LeafOptions{
			Names:      []string{n},
			IPs:        ips,
			ServerAuth: true,
			ClientAuth: true,
			FileBase:   safeBase(n),
		})
		if err != nil {
			return DevFiles{}, err
		}
		out.Leaves[n] = lf
	}
	return out, nil
}

// IssueDevLeaf issues one leaf from the CA in dir (creating the CA as
// WriteDevPKI does if needed) with explicit options; tests use it to make
// expired, not yet valid or wrongly-used certificates. An existing
// <FileBase>.pem/.key pair is replaced atomically (file by file).
func IssueDevLeaf(dir string, opt LeafOptions) (LeafFiles, error) {
	if len(opt.Names) == 0 && len(opt.IPs) == 0 && len(opt.URIs) == 0 && strings.TrimSpace(opt.CommonName) == "" {
		return LeafFiles{}, fmt.Errorf("tlsconf: dev leaf: no names, IPs, URIs or common name: %w", ErrDevPKI)
	}
	base := opt.FileBase
	if base == "" {
		switch {
		case len(opt.Names) > 0:
			base = safeBase(opt.Names[0])
		case len(opt.IPs) > 0:
			base = safeBase(opt.IPs[0].String())
		case opt.CommonName != "":
			base = safeBase(opt.CommonName)
		default:
			base = safeBase(opt.URIs[0])
		}
	}
	if base == "." || base == ".." || strings.ContainsAny(base, `/\`) || base == strings.TrimSuffix(DevCAFile, ".pem") {
		return LeafFiles{}, fmt.Errorf("tlsconf: dev leaf: file base %q: %w", base, ErrDevPKI)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return LeafFiles{}, fmt.Errorf("tlsconf: dev PKI dir %q: %w", dir, err)
	}
	ca, caKey, err := loadOrCreateCA(dir)
	if err != nil {
		return LeafFiles{}, err
	}

	nb := opt.NotBefore
	if nb.IsZero() {
		nb = time.Now().Add(-devBackdate)
	}
	na := opt.NotAfter
	if na.IsZero() {
		na = nb.Add(DevLeafLife)
	}
	if !na.After(nb) {
		return LeafFiles{}, fmt.Errorf("tlsconf: dev leaf: NotAfter %s not after NotBefore %s: %w", na, nb, ErrDevPKI)
	}

	tmpl := &x509.Certificate{
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	seenIP := map[netip.Addr]bool{}
	addIP := func(a netip.Addr) {
		a = a.WithZone("").Unmap()
		if !seenIP[a] {
			seenIP[a] = true
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(a.AsSlice()))
		}
	}
	for _, n := range opt.Names {
		if ip, ok := ParseIPLiteral(strings.TrimSpace(n)); ok {
			addIP(ip)
		} else if n = strings.TrimSpace(n); n != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	for _, ip := range opt.IPs {
		if ip.IsValid() {
			addIP(ip)
		}
	}
	for _, s := range opt.URIs {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			return LeafFiles{}, fmt.Errorf("tlsconf: dev leaf: URI SAN %q: %w: %w", s, err, ErrDevPKI)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	switch {
	case strings.TrimSpace(opt.CommonName) != "":
		tmpl.Subject = pkix.Name{CommonName: strings.TrimSpace(opt.CommonName)}
	case len(opt.Names) > 0:
		tmpl.Subject = pkix.Name{CommonName: strings.TrimSpace(opt.Names[0])}
	}
	if opt.ServerAuth {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if opt.ClientAuth {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return LeafFiles{}, fmt.Errorf("tlsconf: dev leaf: generate key: %w", err)
	}
	der, err := signCert(tmpl, ca, key.Public(), caKey)
	if err != nil {
		return LeafFiles{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return LeafFiles{}, fmt.Errorf("tlsconf: dev leaf: encode key: %w", err)
	}
	lf := LeafFiles{
		Cert: filepath.Join(dir, base+".pem"),
		Key:  filepath.Join(dir, base+".key"),
	}
	chain := append(pemCert(der), pemCert(ca.Raw)...)
	if err := writeFileAtomic(lf.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return LeafFiles{}, err
	}
	if err := writeFileAtomic(lf.Cert, chain, 0o644); err != nil {
		return LeafFiles{}, err
	}
	return lf, nil
}

// loadOrCreateCA returns the CA in dir, creating (or replacing) it when it
// is missing, broken, or valid for less than a day.
func loadOrCreateCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	certPath := filepath.Join(dir, DevCAFile)
	keyPath := filepath.Join(dir, DevCAKeyFile)
	if ca, key, ok := loadDevCA(certPath, keyPath); ok {
		return ca, key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: dev CA: generate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: devCACommonNm, Organization: []string{"edge-sbc"}},
		NotBefore:             now.Add(-devBackdate),
		NotAfter:              now.Add(devCALife),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := signCert(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: dev CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: dev CA: encode key: %w", err)
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(certPath, pemCert(der), 0o644); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func loadDevCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, bool) {
	certs, err := readCertificates("CA", certPath)
	if err != nil {
		return nil, nil, false
	}
	key, err := readPrivateKey(keyPath)
	if err != nil {
		return nil, nil, false
	}
	ca := certs[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(ca.PublicKey) || !ca.IsCA || time.Now().Add(24*time.Hour).After(ca.NotAfter) {
		return nil, nil, false
	}
	return ca, key, true
}

func signCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsconf: dev PKI: serial: %w", err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: dev PKI: sign certificate: %w", err)
	}
	return der, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeFileAtomic writes data to a temporary file in the same directory
// and renames it over path, so readers (and Store.Watch) never see a
// partially written file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("tlsconf: write %q: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("tlsconf: write %q: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("tlsconf: write %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("tlsconf: write %q: %w", path, err)
	}
	return nil
}

// safeBase turns a name into a file base name.
func safeBase(name string) string {
	var b strings.Builder
	for _, r := range strings.TrimSpace(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if s == "" || s == "." || s == ".." {
		s = "_" + s
	}
	return s
}
