package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"time"
)

// NewServerConfig builds the tls.Config of a SIP TLS listener, for use with
// tls.Server. Our certificate, the client roots and the protocol settings
// are taken from the Store at each handshake (via GetConfigForClient), so a
// Store.Reload applies to the next handshake without rebuilding the config.
//
// mode selects the client certificate policy: ClientAuthNone does not ask
// for one; ClientAuthOptional asks but lets the handshake succeed whatever
// is sent — the caller checks a sent certificate with VerifyClient and
// treats a peer whose certificate does not verify as unauthenticated (a B2B
// party calling a public SIPS URI may present a certificate from a CA we do
// not trust); ClientAuthRequired fails the handshake without a certificate
// that verifies against s.Roots() (ExtKeyUsageClientAuth). Peer identities are left to the caller
// (see Identities on ConnectionState().PeerCertificates[0]).
//
// minVersion is the TLS floor for this listener: 0 means MinVersionDefault,
// and values below MinVersionDefault are raised to it (use ParseMinVersion
// for configuration input).
//
// s must not be nil. The returned config may be shared by all connections
// of the listener and must not be modified after first use.
func NewServerConfig(s *Store, mode ClientAuth, minVersion uint16) *tls.Config {
	outer := baseConfig(minVersion)
	outer.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := baseConfig(minVersion)
		c.Certificates = []tls.Certificate{*s.Certificate()}
		c.KeyLogWriter = s.keyLogWriter() // SetKeyLog; nil: off
		c.ClientAuth = mode.tlsClientAuth()
		if mode != ClientAuthNone {
			c.ClientCAs = s.Roots()
		}
		return c, nil
	}
	return outer
}

// VerifyClient verifies a client chain (leaf first, as in
// ConnectionState.PeerCertificates) against the Store roots with
// ExtKeyUsageClientAuth. Failures are *VerifyError.
func VerifyClient(s *Store, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return &VerifyError{Reason: ReasonNoCertificate, Detail: "no client certificate"}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: s.Roots(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		r, why := Classify(err)
		return &VerifyError{Reason: r, Detail: why, Err: err}
	}
	return nil
}

// NewClientConfig builds the tls.Config for one outbound connection to a
// peer, for use with tls.Client.
//
//   - SNI is serverName, except when serverName is an IP literal: then no SNI
//     is sent (ServerName stays empty).
//   - Our current Store certificate is offered as client certificate
//     (GetClientCertificate) whenever the server asks for one.
//   - The server chain is verified in VerifyConnection against the Store
//     roots current at handshake time, with ExtKeyUsageServerAuth, and the
//     leaf must match identity (serverName if identity is empty) according
//     to MatchIdentity. InsecureSkipVerify is set only so that this custom
//     verification replaces the built-in one, which would insist that the
//     certificate matches the SNI host; the verification itself is not
//     skipped. Failures are returned as *VerifyError.
//
// This allows e.g. dialling "sip.example.net" (SNI) while requiring the
// Webex identity "callservice.ciscospark.com". minVersion works as for
// NewServerConfig. s must not be nil. Build one config per target; it must
// not be modified after first use.
func NewClientConfig(s *Store, serverName, identity string, minVersion uint16) *tls.Config {
	c := baseConfig(minVersion)
	if _, isIP := ParseIPLiteral(strings.TrimSpace(serverName)); !isIP {
		c.ServerName = serverName
	}
	want := identity
	if want == "" {
		want = serverName
	}
	c.InsecureSkipVerify = true
	c.KeyLogWriter = s.keyLogWriter() // SetKeyLog; nil: off
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return s.Certificate(), nil
	}
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		return verifyServer(s.Roots(), cs.PeerCertificates, want, time.Now())
	}
	return c
}

// verifyServer checks a server chain for an outbound connection.
func verifyServer(roots *x509.CertPool, chain []*x509.Certificate, want string, now time.Time) error {
	if len(chain) == 0 {
		return &VerifyError{Reason: ReasonNoCertificate, Detail: "server sent no certificate"}
	}
	if want == "" {
		return &VerifyError{Reason: ReasonWrongName, Detail: "no expected server identity configured"}
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		r, d := Classify(err)
		return &VerifyError{Reason: r, Detail: d, Err: err}
	}
	if !MatchIdentity(leaf, want) {
		ids := Identities(leaf)
		for _, ip := range leaf.IPAddresses {
			ids = append(ids, ip.String())
		}
		return &VerifyError{Reason: ReasonWrongName, Detail: "server certificate is for " + quoteList(ids) + ", expected " + `"` + want + `"`}
	}
	return nil
}

func quoteList(xs []string) string {
	if len(xs) == 0 {
		return "no name"
	}
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ", "
		}
		out += `"` + x + `"`
	}
	return out
}
