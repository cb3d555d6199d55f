package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
)

func TestIdentitiesAndMatch(t *testing.T) {
	san := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "ignored.example.com"},
		DNSNames:    []string{"SIP.Example.com", "*.Hosted.Example.com", "sip.example.com."},
		IPAddresses: []net.IP{net.ParseIP("192.0.2.7"), net.ParseIP("2001:db8::1")},
	}
	cnOnly := &x509.Certificate{Subject: pkix.Name{CommonName: "Legacy.Example.org"}}

	if got := Identities(san); !slices.Equal(got, []string{"sip.example.com", "*.hosted.example.com"}) {
		t.Fatalf("Identities(san) = %q", got)
	}
	if got := Identities(cnOnly); !slices.Equal(got, []string{"legacy.example.org"}) {
		t.Fatalf("Identities(cnOnly) = %q", got)
	}
	if Identities(nil) != nil {
		t.Fatal("Identities(nil) != nil")
	}

	for _, tc := range []struct {
		cert *x509.Certificate
		name string
		want bool
	}{
		{san, "sip.example.com", true},
		{san, "SIP.EXAMPLE.COM.", true},
		{san, "ignored.example.com", false}, // CN ignored when SAN DNS present
		{san, "a.hosted.example.com", true},
		{san, "hosted.example.com", false},
		{san, "a.b.hosted.example.com", false},
		{san, "*.hosted.example.com", false},
		{san, "192.0.2.7", true},
		{san, "[2001:db8::1]", true},
		{san, "192.0.2.8", false},
		{san, "", false},
		{cnOnly, "legacy.example.org", true},
		{cnOnly, "x.legacy.example.org", false},
		{&x509.Certificate{DNSNames: []string{"*.com"}}, "example.com", false},
		{&x509.Certificate{DNSNames: []string{"a*.example.com"}}, "ab.example.com", false},
		{nil, "sip.example.com", false},
	} {
		if got := MatchIdentity(tc.cert, tc.name); got != tc.want {
			t.Errorf("MatchIdentity(%v, %q) = %v, want %v", Identities(tc.cert), tc.name, got, tc.want)
		}
	}
}

func TestClassifyTable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Reason
	}{
		{nil, ""},
		{&VerifyError{Reason: ReasonWrongName, Detail: "x"}, ReasonWrongName},
		{fmt.Errorf("wrapped: %w", &VerifyError{Reason: ReasonBadUsage}), ReasonBadUsage},
		{x509.CertificateInvalidError{Reason: x509.Expired, Detail: "current time X is after Y"}, ReasonExpired},
		{x509.CertificateInvalidError{Reason: x509.Expired, Detail: "current time X is before Y"}, ReasonNotYetValid},
		{x509.CertificateInvalidError{Reason: x509.IncompatibleUsage}, ReasonBadUsage},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, ReasonUnknownCA},
		{x509.HostnameError{Certificate: &x509.Certificate{}, Host: "h"}, ReasonWrongName},
		{&net.OpError{Op: "remote error", Err: tls.AlertError(116)}, ReasonNoCertificate},
		{&net.OpError{Op: "remote error", Err: tls.AlertError(45)}, ReasonExpired},
		{&net.OpError{Op: "remote error", Err: tls.AlertError(48)}, ReasonUnknownCA},
		{tls.AlertError(42), ReasonHandshake},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ReasonHandshake},
		{io.EOF, ReasonHandshake},
		{errors.New("tls: client didn't provide a certificate"), ReasonNoCertificate},
	} {
		got, detail := Classify(tc.err)
		if got != tc.want {
			t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
		}
		if tc.err != nil && detail == "" {
			t.Errorf("Classify(%v): empty detail", tc.err)
		}
	}
}

// leafOf parses the leaf (first PEM block) of lf.Cert.
func leafOf(t *testing.T, lf LeafFiles) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(lf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", lf.Cert)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMatchIdentityRealCertificates issues real certificates with the
// development CA and checks the RFC 5922 / RFC 6125 rules on them.
func TestMatchIdentityRealCertificates(t *testing.T) {
	p := newPKI(t)
	wild := leafOf(t, p.issue(t, LeafOptions{Names: []string{"*.Example.com"}, ServerAuth: true, ClientAuth: true, FileBase: "wild"}))
	uriSAN := leafOf(t, p.issue(t, LeafOptions{URIs: []string{"sips:Example.com"}, CommonName: "other.example.org", ServerAuth: true, FileBase: "uri"}))
	uriPort := leafOf(t, p.issue(t, LeafOptions{URIs: []string{"sip:pbx.example.net:5061;transport=tls"}, FileBase: "uriport"}))
	uriUser := leafOf(t, p.issue(t, LeafOptions{URIs: []string{"sip:alice@example.org"}, CommonName: "example.org", FileBase: "uriuser"}))
	uriHTTPS := leafOf(t, p.issue(t, LeafOptions{URIs: []string{"https://example.org/"}, FileBase: "urihttps"}))
	cnOnly := leafOf(t, p.issue(t, LeafOptions{CommonName: "Legacy.Example.org", ServerAuth: true, FileBase: "cn"}))
	cnWild := leafOf(t, p.issue(t, LeafOptions{CommonName: "*.example.org", FileBase: "cnwild"}))
	exact := leafOf(t, p.issue(t, LeafOptions{Names: []string{"Sip.Partner.Example"}, FileBase: "exact"}))
	if len(cnOnly.DNSNames)+len(cnOnly.URIs)+len(cnOnly.IPAddresses) != 0 || cnOnly.Subject.CommonName == "" {
		t.Fatalf("CN-only certificate has SANs: %+v", cnOnly)
	}

	for _, tc := range []struct {
		what string
		cert *x509.Certificate
		name string
		want bool
	}{
		{"wildcard covers one label", wild, "sip.example.com", true},
		{"wildcard, other case", wild, "SIP.EXAMPLE.COM.", true},
		{"wildcard never covers two labels", wild, "a.b.example.com", false},
		{"wildcard never covers the bare domain", wild, "example.com", false},
		{"wildcard never covers another domain", wild, "sip.example.org", false},
		{"a wildcard identity is refused", wild, "*.example.com", false},
		{"URI SAN sips:example.com", uriSAN, "example.com", true},
		{"URI SAN, other case", uriSAN, "EXAMPLE.COM", true},
		{"URI SAN is no wildcard", uriSAN, "sip.example.com", false},
		{"CN ignored beside a URI SAN", uriSAN, "other.example.org", false},
		{"URI SAN port and parameters dropped", uriPort, "pbx.example.net", true},
		{"URI SAN with a user part is no domain", uriUser, "example.org", false},
		{"URI SAN of another scheme is no domain", uriHTTPS, "example.org", false},
		{"CN-only", cnOnly, "legacy.example.org", true},
		{"CN-only, other case and trailing dot", cnOnly, "LEGACY.example.ORG.", true},
		{"CN-only is exact", cnOnly, "x.legacy.example.org", false},
		{"no wildcard in the CN", cnWild, "a.example.org", false},
		{"exact DNS SAN, case-insensitive", exact, "sip.partner.example", true},
		{"exact DNS SAN, other name", exact, "partner.example", false},
	} {
		if got := MatchIdentity(tc.cert, tc.name); got != tc.want {
			t.Errorf("%s: MatchIdentity(%v, %q) = %v, want %v", tc.what, Identities(tc.cert), tc.name, got, tc.want)
		}
	}
	if got := Identities(uriSAN); !slices.Equal(got, []string{"example.com"}) {
		t.Errorf("Identities(URI SAN) = %q, want [example.com]", got)
	}
	if got := Identities(uriUser); len(got) != 0 {
		t.Errorf("Identities(user URI SAN) = %q, want none (and no CN beside a URI SAN)", got)
	}
}

func TestMatchTrunk(t *testing.T) {
	p := newPKI(t)
	wild := leafOf(t, p.issue(t, LeafOptions{Names: []string{"*.example.com"}, FileBase: "wild"}))
	both := leafOf(t, p.issue(t, LeafOptions{Names: []string{"*.example.com", "b.example.com"}, FileBase: "both"}))
	uri := leafOf(t, p.issue(t, LeafOptions{URIs: []string{"sips:partner.example"}, FileBase: "uri"}))
	ip := leafOf(t, p.issue(t, LeafOptions{IPs: []netip.Addr{netip.MustParseAddr("10.0.0.5")}, FileBase: "ip"}))
	ids := []string{"", "pbx.corp.example", "a.example.com", "b.example.com", "partner.example", "10.0.0.5"}

	for _, tc := range []struct {
		what string
		cert *x509.Certificate
		want int
		ok   bool
	}{
		{"wildcard: the first trunk it covers", wild, 2, true},
		{"an exact SAN wins over a wildcard", both, 3, true},
		{"URI SAN", uri, 4, true},
		{"IP SAN for an IP identity", ip, 5, true},
		{"nil certificate", nil, -1, false},
	} {
		i, ok := MatchTrunk(tc.cert, ids)
		if i != tc.want || ok != tc.ok {
			t.Errorf("%s: MatchTrunk = %d, %v; want %d, %v", tc.what, i, ok, tc.want, tc.ok)
		}
	}
	if i, ok := MatchTrunk(wild, []string{"example.com", "a.b.example.com", ""}); ok {
		t.Errorf("wildcard matched %d of identities it does not cover", i)
	}
}

// TestWildcardBothWays: the same peer certificate (*.example.com, a real
// dev-CA certificate in a real handshake) is accepted when we dial it and
// maps to its trunk when it dials us; a URI SAN works the same way.
func TestWildcardBothWays(t *testing.T) {
	p := newPKI(t)
	us := p.store(t, "sbc.example.net")
	wildFiles := p.issue(t, LeafOptions{Names: []string{"*.example.com"}, ServerAuth: true, ClientAuth: true, FileBase: "wild"})
	uriFiles := p.issue(t, LeafOptions{URIs: []string{"sips:example.com"}, ServerAuth: true, ClientAuth: true, FileBase: "uri"})
	trunks := []string{"pbx.corp.example", "sip.example.com", "example.com"}

	for _, tc := range []struct {
		name     string
		files    LeafFiles
		identity string
		trunk    int
	}{
		{"wildcard", wildFiles, "sip.example.com", 1},
		{"uri san", uriFiles, "example.com", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peer := p.storeFor(t, tc.files)
			// Outbound: we verify the peer's server certificate.
			r := handshake(t, NewServerConfig(peer, ClientAuthNone, 0), NewClientConfig(us, "127.0.0.1", tc.identity, 0))
			ok(t, r)
			r = handshake(t, NewServerConfig(peer, ClientAuthNone, 0), NewClientConfig(us, "127.0.0.1", "other.example.org", 0))
			wantReason(t, "client", r.clientErr, ReasonWrongName)

			// Inbound: the peer dials us with the same certificate.
			r = handshake(t, NewServerConfig(us, ClientAuthRequired, 0), NewClientConfig(peer, "sbc.example.net", "", 0))
			ok(t, r)
			got, found := MatchTrunk(r.serverState.PeerCertificates[0], trunks)
			if !found || got != tc.trunk {
				t.Fatalf("inbound MatchTrunk = %d, %v; want trunk %d (%s)", got, found, tc.trunk, trunks[tc.trunk])
			}
		})
	}
}
