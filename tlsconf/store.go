package tlsconf

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultWatchInterval is used by Store.Watch when interval <= 0.
const DefaultWatchInterval = 10 * time.Second

// Store holds our certificate chain (leaf + intermediates; the full chain is
// sent to peers), its private key, and the roots trusted for peers.
//
// A Store is safe for concurrent use. The material is immutable once loaded
// and swapped atomically by Reload, so handshakes in flight keep the
// material they started with and the next handshake sees the new one.
type Store struct {
	certFile, keyFile, caFile string

	reloadMu sync.Mutex // serialises Reload; readers never block
	cur      atomic.Pointer[material]
	keyLog   atomic.Pointer[keyLogBox] // SetKeyLog (keylog.go); nil: off
}

// material is one immutable, consistent snapshot of the Store files.
type material struct {
	cert   *tls.Certificate
	roots  *x509.CertPool
	stamps [3]fileStamp // cert, key, CA as seen just before reading
}

// fileStamp identifies a file version for Watch.
type fileStamp struct {
	modTime time.Time
	size    int64
	ok      bool
}

func statStamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{modTime: fi.ModTime(), size: fi.Size(), ok: true}
}

// LoadStore reads our certificate chain (certFile: leaf first, then
// intermediates), the matching private key (keyFile: PKCS#8, SEC 1 EC or
// PKCS#1 RSA) and the PEM bundle of roots trusted for peers (caFile).
//
// Errors name the file and wrap ErrNoFile, ErrMissingFile, ErrNotPEM,
// ErrBadCertificate, ErrBadKey or ErrKeyMismatch. An expired or not yet
// valid leaf is NOT an error: it loads, and callers should check
// Leaf().NotBefore/NotAfter and warn.
func LoadStore(certFile, keyFile, caFile string) (*Store, error) {
	s := &Store{certFile: certFile, keyFile: keyFile, caFile: caFile}
	m, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	return s, nil
}

// Reload re-reads the three files. On success the new material is swapped
// in atomically and used by the next handshake; on error the previous
// material stays in use and the error (naming the file) is returned.
// Safe for concurrent use.
func (s *Store) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	m, err := s.load()
	if err != nil {
		return err
	}
	s.cur.Store(m)
	return nil
}

// Watch polls the size and modification time of the three files every
// interval (DefaultWatchInterval if interval <= 0) and calls Reload when any
// of them changed. onReload, if not nil, is called after each reload attempt
// with its result (nil on success); it runs on the Watch goroutine. A change
// that fails to load is reported once and retried on the next change.
// Watch blocks until ctx is done; the caller runs it in a goroutine it owns.
// Changes that keep both size and mtime identical are not detected.
func (s *Store) Watch(ctx context.Context, interval time.Duration, onReload func(error)) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	last := s.cur.Load().stamps
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.stamps()
		if now == last {
			continue
		}
		last = now
		err := s.Reload()
		if onReload != nil {
			onReload(err)
		}
	}
}

// Leaf returns the parsed leaf certificate currently in use. Callers must
// not modify it. Safe for concurrent use.
func (s *Store) Leaf() *x509.Certificate { return s.cur.Load().cert.Leaf }

// Roots returns the pool of roots currently trusted for peers. Callers must
// not modify it. Safe for concurrent use.
func (s *Store) Roots() *x509.CertPool { return s.cur.Load().roots }

// Certificate returns our current certificate chain and key for use in a
// tls.Config. Callers must not modify it. Safe for concurrent use.
func (s *Store) Certificate() *tls.Certificate { return s.cur.Load().cert }

func (s *Store) stamps() [3]fileStamp {
	return [3]fileStamp{statStamp(s.certFile), statStamp(s.keyFile), statStamp(s.caFile)}
}

func (s *Store) load() (*material, error) {
	stamps := s.stamps()
	chain, err := readCertificates("cert", s.certFile)
	if err != nil {
		return nil, err
	}
	key, err := readPrivateKey(s.keyFile)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("tlsconf: key file %q does not match the first certificate of cert file %q: %w", s.keyFile, s.certFile, ErrKeyMismatch)
	}
	cas, err := readCertificates("CA", s.caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return &material{cert: cert, roots: roots, stamps: stamps}, nil
}

// readCertificates returns all CERTIFICATE blocks of a PEM file, in order.
func readCertificates(kind, path string) ([]*x509.Certificate, error) {
	if path == "" {
		return nil, fmt.Errorf("tlsconf: %s file: %w", kind, ErrNoFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: %s file %q: %w: %w", kind, path, ErrMissingFile, err)
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: %s file %q: certificate #%d: %w: %w", kind, path, len(certs)+1, ErrBadCertificate, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("tlsconf: %s file %q: no CERTIFICATE block: %w", kind, path, ErrNotPEM)
	}
	return certs, nil
}

// readPrivateKey reads the first private key block of a PEM file. Errors
// never contain key material, only the file name and the parse failure.
func readPrivateKey(path string) (crypto.Signer, error) {
	if path == "" {
		return nil, fmt.Errorf("tlsconf: key file: %w", ErrNoFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: key file %q: %w: %w", path, ErrMissingFile, err)
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("tlsconf: key file %q: no PRIVATE KEY block: %w", path, ErrNotPEM)
		}
		var key any
		var perr error
		switch b.Type {
		case "PRIVATE KEY":
			key, perr = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, perr = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, perr = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if perr != nil {
			// The x509 parse errors describe the structure only.
			return nil, fmt.Errorf("tlsconf: key file %q: %w: %w", path, ErrBadKey, perr)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("tlsconf: key file %q: key type %T: %w", path, key, ErrBadKey)
		}
	}
}
