package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
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
