package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	srv := p.store(t, "sbc.example.net")
	cli := p.store(t, "client.example.org")

	r := handshake(t, NewServerConfig(srv, ClientAuthRequired, 0), NewClientConfig(cli, "sbc.example.net", "", 0))
	ok(t, r)
	if len(r.serverState.PeerCertificates) == 0 {
		t.Fatal("server saw no client certificate")
	}
	if got := Identities(r.serverState.PeerCertificates[0]); !slices.Equal(got, []string{"client.example.org"}) {
		t.Fatalf("server-side Identities = %q", got)
	}
	if got := Identities(r.clientState.PeerCertificates[0]); !slices.Equal(got, []string{"sbc.example.net"}) {
		t.Fatalf("client-side Identities = %q", got)
	}
	// Full chain is sent: leaf + CA.
	if n := len(r.clientState.PeerCertificates); n != 2 {
		t.Fatalf("server sent %d certificates, want 2 (leaf + CA)", n)
	}
}

func TestRequiredRefusesClientWithoutCert(t *testing.T) {
	p := newPKI(t)
	srv := p.store(t, "sbc.example.net")
	client := &tls.Config{RootCAs: srv.Roots(), ServerName: "sbc.example.net"}

	r := handshake(t, NewServerConfig(srv, ClientAuthRequired, 0), client)
	wantReason(t, "server", r.serverErr, ReasonNoCertificate)
	wantReason(t, "client", r.clientErr, ReasonNoCertificate)
}

func TestOptionalClientAuth(t *testing.T) {
	p := newPKI(t)
	srv := p.store(t, "sbc.example.net")

	t.Run("no cert accepted", func(t *testing.T) {
		client := &tls.Config{RootCAs: srv.Roots(), ServerName: "sbc.example.net"}
		r := handshake(t, NewServerConfig(srv, ClientAuthOptional, 0), client)
		ok(t, r)
		if len(r.serverState.PeerCertificates) != 0 {
			t.Fatal("unexpected peer certificate")
		}
	})
	t.Run("cert from other CA served but not verified", func(t *testing.T) {
		other := newPKI(t)
		cli := other.store(t, "client.example.org")
		client := &tls.Config{
			RootCAs:      srv.Roots(),
			ServerName:   "sbc.example.net",
			Certificates: []tls.Certificate{*cli.Certificate()},
		}
		r := handshake(t, NewServerConfig(srv, ClientAuthOptional, 0), client)
		ok(t, r)
		if len(r.serverState.VerifiedChains) != 0 {
			t.Fatal("an unknown CA's certificate counted as verified")
		}
		wantReason(t, "VerifyClient", VerifyClient(srv, r.serverState.PeerCertificates), ReasonUnknownCA)
	})
	t.Run("cert from our CA verifies", func(t *testing.T) {
		cli := p.store(t, "client.example.org")
		client := &tls.Config{
			RootCAs:      srv.Roots(),
			ServerName:   "sbc.example.net",
			Certificates: []tls.Certificate{*cli.Certificate()},
		}
		r := handshake(t, NewServerConfig(srv, ClientAuthOptional, 0), client)
		ok(t, r)
		if err := VerifyClient(srv, r.serverState.PeerCertificates); err != nil {
			t.Fatalf("VerifyClient: %v", err)
		}
	})
	t.Run("none mode ignores cert", func(t *testing.T) {
		cli := p.store(t, "client.example.org")
		r := handshake(t, NewServerConfig(srv, ClientAuthNone, 0), NewClientConfig(cli, "sbc.example.net", "", 0))
		ok(t, r)
		if len(r.serverState.PeerCertificates) != 0 {
			t.Fatal("none mode received a client certificate")
		}
	})
}

func TestClientRefusesBadServerCerts(t *testing.T) {
	p := newPKI(t)
	cli := p.store(t, "client.example.org")
	now := time.Now()
	other := newPKI(t)

	cases := []struct {
		name     string
		leaf     func() LeafFiles
		storeCA  string
		identity string
		want     Reason
	}{
		{
			name: "expired",
			leaf: func() LeafFiles {
				return p.issue(t, LeafOptions{Names: []string{"sbc.example.net"}, IPs: loopback, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour), ServerAuth: true, FileBase: "expired"})
			},
			want: ReasonExpired,
		},
		{
			name: "not yet valid",
			leaf: func() LeafFiles {
				return p.issue(t, LeafOptions{Names: []string{"sbc.example.net"}, NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour), ServerAuth: true, FileBase: "future"})
			},
			want: ReasonNotYetValid,
		},
		{
			name:    "unknown ca",
			leaf:    func() LeafFiles { return other.files.Leaves["sbc.example.net"] },
			storeCA: other.files.CA,
			want:    ReasonUnknownCA,
		},
		{
			name:     "wrong name",
			leaf:     func() LeafFiles { return p.files.Leaves["sbc.example.net"] },
			identity: "callservice.ciscospark.com",
			want:     ReasonWrongName,
		},
		{
			name: "no serverAuth EKU",
			leaf: func() LeafFiles {
				return p.issue(t, LeafOptions{Names: []string{"sbc.example.net"}, ClientAuth: true, FileBase: "clientonly"})
			},
			want: ReasonBadUsage,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lf := tc.leaf()
			ca := p.files.CA
			if tc.storeCA != "" {
				ca = tc.storeCA
			}
			srv, err := LoadStore(lf.Cert, lf.Key, ca)
			if err != nil {
				t.Fatalf("LoadStore: %v", err)
			}
			r := handshake(t, NewServerConfig(srv, ClientAuthOptional, 0), NewClientConfig(cli, "sbc.example.net", tc.identity, 0))
			if !r.sawHello {
				t.Fatal("server never saw a ClientHello")
			}
			wantReason(t, "client", r.clientErr, tc.want)
			var ve *VerifyError
			if !errors.As(r.clientErr, &ve) || ve.Reason != tc.want {
				t.Fatalf("client error %T %v is not a *VerifyError with reason %q", r.clientErr, r.clientErr, tc.want)
			}
			if r.serverErr == nil {
				t.Fatal("server handshake succeeded although the client refused")
			}
		})
	}
}

func TestExpiredLeafStillLoads(t *testing.T) {
	p := newPKI(t)
	lf := p.issue(t, LeafOptions{Names: []string{"old.example.net"}, NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour), ServerAuth: true})
	s := p.storeFor(t, lf)
	if !s.Leaf().NotAfter.Before(time.Now()) {
		t.Fatal("Leaf() does not expose the expired NotAfter")
	}
}

func TestIdentityDiffersFromSNI(t *testing.T) {
	p := newPKI(t)
	cli := p.store(t, "client.example.org")
	lf := p.issue(t, LeafOptions{Names: []string{"callservice.ciscospark.com"}, ServerAuth: true, ClientAuth: true})
	srv := p.storeFor(t, lf)

	r := handshake(t, NewServerConfig(srv, ClientAuthOptional, 0), NewClientConfig(cli, "sip.example.com", "callservice.ciscospark.com", 0))
	ok(t, r)
	if r.sni != "sip.example.com" {
		t.Fatalf("SNI = %q, want sip.example.com", r.sni)
	}
	// Same server without an explicit identity: the SNI host does not match.
	r = handshake(t, NewServerConfig(srv, ClientAuthOptional, 0), NewClientConfig(cli, "sip.example.com", "", 0))
	wantReason(t, "client", r.clientErr, ReasonWrongName)
}

func TestSNI(t *testing.T) {
	p := newPKI(t)
	srv := p.store(t, "sbc.example.net")
	cli := p.store(t, "client.example.org")

	for _, tc := range []struct{ target, wantSNI string }{
		{"sbc.example.net", "sbc.example.net"},
		{"SBC.Example.NET", "SBC.Example.NET"}, // sent as given; names match case-insensitively
		{"127.0.0.1", ""},
		{"[127.0.0.1]", ""},
	} {
		t.Run(tc.target, func(t *testing.T) {
			cfg := NewClientConfig(cli, tc.target, "", 0)
			if _, isIP := ParseIPLiteral(tc.target); isIP && cfg.ServerName != "" {
				t.Fatalf("ServerName = %q for IP literal", cfg.ServerName)
			}
			r := handshake(t, NewServerConfig(srv, ClientAuthRequired, 0), cfg)
			ok(t, r)
			if !r.sawHello || r.sni != tc.wantSNI {
				t.Fatalf("server saw SNI %q (hello=%v), want %q", r.sni, r.sawHello, tc.wantSNI)
			}
		})
	}
}

func TestVersions(t *testing.T) {
	p := newPKI(t)
	srv := p.store(t, "sbc.example.net")
	cli := p.store(t, "client.example.org")

	t.Run("TLS 1.3 by default", func(t *testing.T) {
		r := handshake(t, NewServerConfig(srv, ClientAuthRequired, 0), NewClientConfig(cli, "sbc.example.net", "", 0))
		ok(t, r)
		if r.clientState.Version != tls.VersionTLS13 || r.serverState.Version != tls.VersionTLS13 {
			t.Fatalf("negotiated %s", tls.VersionName(r.clientState.Version))
		}
	})
	t.Run("TLS 1.1 client refused", func(t *testing.T) {
		old := &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true}
		r := handshake(t, NewServerConfig(srv, ClientAuthNone, 0), old)
		if r.serverErr == nil || r.clientErr == nil {
			t.Fatalf("TLS 1.1 accepted: server=%v client=%v", r.serverErr, r.clientErr)
		}
		wantReason(t, "server", r.serverErr, ReasonHandshake)
		if _, d := Classify(r.serverErr); !strings.Contains(d, "TLS version") {
			t.Fatalf("server detail %q does not mention the version", d)
		}
	})
	t.Run("TLS 1.2 client gets AEAD ECDHE suite", func(t *testing.T) {
		c12 := NewClientConfig(cli, "sbc.example.net", "", 0)
		c12.MaxVersion = tls.VersionTLS12
		r := handshake(t, NewServerConfig(srv, ClientAuthRequired, 0), c12)
		ok(t, r)
		if r.serverState.Version != tls.VersionTLS12 || !slices.Contains(cipherSuitesTLS12(), r.serverState.CipherSuite) {
			t.Fatalf("negotiated %s %s", tls.VersionName(r.serverState.Version), tls.CipherSuiteName(r.serverState.CipherSuite))
		}
	})
	t.Run("min 1.3 refuses TLS 1.2 client", func(t *testing.T) {
		c12 := NewClientConfig(cli, "sbc.example.net", "", 0)
		c12.MaxVersion = tls.VersionTLS12
		r := handshake(t, NewServerConfig(srv, ClientAuthRequired, tls.VersionTLS13), c12)
		if r.serverErr == nil {
			t.Fatal("TLS 1.2 accepted by a 1.3-only server")
		}
	})
	t.Run("floor cannot be lowered", func(t *testing.T) {
		if v := NewServerConfig(srv, ClientAuthNone, tls.VersionTLS10).MinVersion; v != MinVersionDefault {
			t.Fatalf("MinVersion = %x", v)
		}
		if v := NewClientConfig(cli, "x.example", "", tls.VersionTLS11).MinVersion; v != MinVersionDefault {
			t.Fatalf("MinVersion = %x", v)
		}
	})
}

func TestReload(t *testing.T) {
	p := newPKI(t)
	cli := p.store(t, "client.example.org")
	lf := p.issue(t, LeafOptions{Names: []string{"a.example.net"}, ServerAuth: true, FileBase: "srv"})
	srv := p.storeFor(t, lf)
	scfg := NewServerConfig(srv, ClientAuthOptional, 0)
	served := func(identity string) []string {
		t.Helper()
		r := handshake(t, scfg, NewClientConfig(cli, identity, "", 0))
		ok(t, r)
		return Identities(r.clientState.PeerCertificates[0])
	}
	if got := served("a.example.net"); !slices.Equal(got, []string{"a.example.net"}) {
		t.Fatalf("served %q", got)
	}

	// New pair written under the same names: next handshake serves it.
	p.issue(t, LeafOptions{Names: []string{"b.example.net"}, ServerAuth: true, FileBase: "srv"})
	if err := srv.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := served("b.example.net"); !slices.Equal(got, []string{"b.example.net"}) {
		t.Fatalf("after reload served %q", got)
	}

	good, err := os.ReadFile(lf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	// Garbage cert file: error, old material kept.
	if err := os.WriteFile(lf.Cert, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = srv.Reload()
	if !errors.Is(err, ErrNotPEM) || !strings.Contains(err.Error(), lf.Cert) {
		t.Fatalf("Reload with garbage = %v, want ErrNotPEM naming the file", err)
	}
	if got := served("b.example.net"); !slices.Equal(got, []string{"b.example.net"}) {
		t.Fatalf("after failed reload served %q", got)
	}

	// Cert from another pair: key mismatch, old material kept, no key in error.
	other := p.issue(t, LeafOptions{Names: []string{"c.example.net"}, ServerAuth: true, FileBase: "other"})
	otherCert, _ := os.ReadFile(other.Cert)
	if err := os.WriteFile(lf.Cert, otherCert, 0o644); err != nil {
		t.Fatal(err)
	}
	err = srv.Reload()
	if !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("Reload with mismatched key = %v, want ErrKeyMismatch", err)
	}
	keyPEM, _ := os.ReadFile(lf.Key)
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) > 20 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
			t.Fatal("error contains private key material")
		}
	}
	if srv.Leaf().DNSNames[0] != "b.example.net" {
		t.Fatalf("Leaf after failed reload = %q", srv.Leaf().DNSNames)
	}

	// Missing key file.
	if err := os.WriteFile(lf.Cert, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(lf.Key, lf.Key+".gone"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); !errors.Is(err, ErrMissingFile) || !strings.Contains(err.Error(), lf.Key) {
		t.Fatalf("Reload with missing key = %v", err)
	}
}

func TestWatch(t *testing.T) {
	p := newPKI(t)
	lf := p.issue(t, LeafOptions{Names: []string{"a.example.net"}, ServerAuth: true, FileBase: "srv"})
	srv := p.storeFor(t, lf)

	ctx, cancel := context.WithCancel(context.Background())
	results := make(chan error, 16)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		srv.Watch(ctx, 10*time.Millisecond, func(err error) { results <- err })
	}()
	defer func() { cancel(); <-stopped }()

	time.Sleep(30 * time.Millisecond) // no change: no callback
	select {
	case err := <-results:
		t.Fatalf("reload without change: %v", err)
	default:
	}

	p.issue(t, LeafOptions{Names: []string{"watched.example.net"}, ServerAuth: true, FileBase: "srv"})
	deadline := time.After(5 * time.Second)
	for srv.Leaf().DNSNames[0] != "watched.example.net" {
		select {
		case err := <-results:
			// A poll may catch the key renamed before the cert; a later poll
			// must then succeed.
			t.Logf("reload: %v", err)
		case <-deadline:
			t.Fatal("Watch did not reload the new certificate")
		}
	}

	if err := os.WriteFile(lf.Cert, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case err := <-results:
			if err == nil {
				continue
			}
			if !errors.Is(err, ErrNotPEM) {
				t.Fatalf("reload error = %v", err)
			}
			if srv.Leaf().DNSNames[0] != "watched.example.net" {
				t.Fatal("bad file replaced the material")
			}
			return
		case <-deadline:
			t.Fatal("Watch did not report the bad file")
		}
	}
}

func TestLoadStoreErrors(t *testing.T) {
	p := newPKI(t)
	lf := p.files.Leaves["sbc.example.net"]
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := p.files.Leaves["client.example.org"]
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name           string
		cert, key, ca  string
		want           error
		mustNameInText string
	}{
		{"missing cert", missing, lf.Key, p.files.CA, ErrMissingFile, missing},
		{"cert not PEM", garbage, lf.Key, p.files.CA, ErrNotPEM, garbage},
		{"key not PEM", lf.Cert, garbage, p.files.CA, ErrNotPEM, garbage},
		{"key is a cert", lf.Cert, lf.Cert, p.files.CA, ErrNotPEM, lf.Cert},
		{"key mismatch", lf.Cert, other.Key, p.files.CA, ErrKeyMismatch, other.Key},
		{"CA missing", lf.Cert, lf.Key, missing, ErrMissingFile, missing},
		{"CA not PEM", lf.Cert, lf.Key, garbage, ErrNotPEM, garbage},
		{"empty path", "", lf.Key, p.files.CA, ErrNoFile, "cert file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadStore(tc.cert, tc.key, tc.ca)
			if s != nil || !errors.Is(err, tc.want) {
				t.Fatalf("LoadStore = %v, %v; want %v", s, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mustNameInText) {
				t.Fatalf("error %q does not name %q", err, tc.mustNameInText)
			}
		})
	}
}

func TestWriteDevPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	f1, err := WriteDevPKI(dir, []string{"sbc.example.net", "192.0.2.10"}, loopback)
	if err != nil {
		t.Fatal(err)
	}
	ca1, _ := os.ReadFile(f1.CA)
	f2, err := WriteDevPKI(dir, []string{"sbc.example.net"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ca2, _ := os.ReadFile(f2.CA)
	if !bytes.Equal(ca1, ca2) {
		t.Fatal("second WriteDevPKI replaced a valid CA")
	}

	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode: %v %v", fi.Mode(), err)
	}
	for _, path := range []string{f1.CAKey, f1.Leaves["sbc.example.net"].Key, f1.Leaves["192.0.2.10"].Key} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode: %v %v", path, fi.Mode(), err)
		}
	}

	s, err := LoadStore(f2.Leaves["sbc.example.net"].Cert, f2.Leaves["sbc.example.net"].Key, f1.CA)
	if err != nil {
		t.Fatal(err)
	}
	leaf := s.Leaf()
	if len(s.Certificate().Certificate) != 2 {
		t.Fatal("leaf file is not a full chain")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.Roots(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("leaf does not verify against reused CA: %v", err)
	}
	if !MatchIdentity(leaf, "sbc.example.net") || len(leaf.IPAddresses) != 0 {
		t.Fatalf("leaf names: %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("leaf key usage %v alg %v", leaf.KeyUsage, leaf.PublicKeyAlgorithm)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life != DevLeafLife {
		t.Fatalf("lifetime %v", life)
	}

	ipLeaf, err := LoadStore(f1.Leaves["192.0.2.10"].Cert, f1.Leaves["192.0.2.10"].Key, f1.CA)
	if err != nil {
		t.Fatal(err)
	}
	if len(ipLeaf.Leaf().DNSNames) != 0 || !MatchIdentity(ipLeaf.Leaf(), "192.0.2.10") || !MatchIdentity(ipLeaf.Leaf(), "127.0.0.1") {
		t.Fatalf("IP leaf: %v %v", ipLeaf.Leaf().DNSNames, ipLeaf.Leaf().IPAddresses)
	}

	// A broken CA is replaced.
	if err := os.WriteFile(f1.CA, []byte("broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	f3, err := WriteDevPKI(dir, []string{"sbc.example.net"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ca3, _ := os.ReadFile(f3.CA); bytes.Equal(ca3, ca1) || !bytes.Contains(ca3, []byte("CERTIFICATE")) {
		t.Fatal("broken CA not regenerated")
	}

	if _, err := IssueDevLeaf(dir, LeafOptions{Names: []string{"x"}, FileBase: "../x"}); !errors.Is(err, ErrDevPKI) {
		t.Fatalf("path traversal FileBase: %v", err)
	}
	if _, err := WriteDevPKI(dir, nil, nil); !errors.Is(err, ErrDevPKI) {
		t.Fatalf("no names: %v", err)
	}
}

func TestParseClientAuth(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    ClientAuth
		wantErr bool
	}{
		{"none", ClientAuthNone, false},
		{"optional", ClientAuthOptional, false},
		{"required", ClientAuthRequired, false},
		{" Required ", ClientAuthRequired, false},
		{"", ClientAuthNone, true},
		{"yes", ClientAuthNone, true},
		{"require", ClientAuthNone, true},
	} {
		got, err := ParseClientAuth(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseClientAuth(%q) = %v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrClientAuth) {
			t.Errorf("ParseClientAuth(%q) error %v does not wrap ErrClientAuth", tc.in, err)
		}
		if err == nil && got.String() != strings.ToLower(strings.TrimSpace(tc.in)) {
			t.Errorf("String() = %q", got.String())
		}
	}
}

func TestParseMinVersion(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    uint16
		wantErr bool
	}{
		{"1.2", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS13, false},
		{"TLS1.3", tls.VersionTLS13, false},
		{"", MinVersionDefault, false},
		{"1.1", 0, true},
		{"1.0", 0, true},
		{"ssl3", 0, true},
		{"1.4", 0, true},
		{"12", 0, true},
	} {
		got, err := ParseMinVersion(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseMinVersion(%q) = %x, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrMinVersion) {
			t.Errorf("ParseMinVersion(%q) error does not wrap ErrMinVersion", tc.in)
		}
	}
}
