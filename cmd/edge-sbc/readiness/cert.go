package readiness

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// warnDays is how close to expiry our certificate gets a warning.
const warnDays = 30

// mutualTLSPort is the Webex port for SIP over mutual TLS.
const mutualTLSPort = 5062

var (
	checkCertLoad = check{
		id:          "cert.load",
		requirement: "tls.cert, tls.key and tls.ca load (leaf first, key matching the leaf)",
		level:       LevelMust,
	}
	checkCertExpiry = check{
		id:          "cert.expiry",
		requirement: "the SBC presents a server certificate that has not expired",
		level:       LevelMust,
	}
	checkCertName = check{
		id:          "cert.name",
		requirement: "the certificate carries node.fqdn in a SAN DNS entry (or the CN)",
		level:       LevelMust,
	}
	checkCertServerAuth = check{
		id:          "cert.eku.server",
		requirement: "the certificate allows server use (EKU serverAuth)",
		level:       LevelMust,
	}
	checkCertClientAuth = check{
		id:          "cert.eku.client",
		requirement: "the certificate allows client use (EKU clientAuth); Webex requires both for mutual TLS",
		level:       LevelShould,
	}
	checkCertChain = check{
		id:          "cert.chain",
		requirement: "tls.cert holds the full chain (leaf + intermediates) and it verifies to a trusted root",
		level:       LevelShould,
	}
	checkMinVersion = check{
		id:          "tls.min_version",
		requirement: "SIP over TLS 1.2 or later (offer 1.2 and 1.3; never below 1.2)",
		level:       LevelMust,
	}
)

// loadStore loads our certificate material. On failure the store is nil
// and the result says why (the error names the file, never key material).
func loadStore(cfg *config.Config) (*tlsconf.Store, []Result) {
	s, err := tlsconf.LoadStore(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA)
	if err != nil {
		return nil, []Result{checkCertLoad.miss("%v", err)}
	}
	return s, []Result{checkCertLoad.ok("%s (%d certificates), key matches the leaf, roots from %s",
		cfg.TLS.Cert, len(s.Certificate().Certificate), cfg.TLS.CA)}
}

// checkCert checks our own certificate: validity, name, key usages and
// chain. It returns nothing when the store did not load (cert.load failed).
func checkCert(e *env) []Result {
	if e.store == nil {
		return nil
	}
	leaf := e.store.Leaf()
	chain, err := parseChain(e.store.Certificate().Certificate)
	if leaf == nil || err != nil {
		return []Result{checkCertLoad.miss("cannot parse our certificate chain: %v", err)}
	}
	now := e.opts.Now()
	return []Result{
		certExpiry(leaf, now),
		certName(leaf, e.cfg.Node.FQDN),
		certServerAuth(leaf),
		certClientAuth(leaf, e.cfg),
		certChain(chain, e.store.Roots(), now, e.cfg.TLS.CA),
	}
}

func parseChain(ders [][]byte) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(ders))
	for i, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("certificate #%d: %w", i+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no certificate")
	}
	return out, nil
}

func certExpiry(leaf *x509.Certificate, now time.Time) Result {
	c := checkCertExpiry
	na := leaf.NotAfter.UTC().Format(time.DateOnly)
	switch {
	case now.Before(leaf.NotBefore):
		return c.miss("not valid before %s (clock skew, or issued for later?)", leaf.NotBefore.UTC().Format(time.RFC3339))
	case !now.Before(leaf.NotAfter):
		return c.miss("expired on %s (%d days ago)", na, int(now.Sub(leaf.NotAfter).Hours()/24))
	}
	days := int(leaf.NotAfter.Sub(now).Hours() / 24)
	if days < warnDays {
		return c.warn("expires on %s: %d days left (renew now; under %d)", na, days, warnDays)
	}
	return c.ok("valid until %s: %d days left", na, days)
}

func certName(leaf *x509.Certificate, fqdn string) Result {
	c := checkCertName
	ids := tlsconf.Identities(leaf)
	where := "SAN DNS"
	if len(leaf.DNSNames) == 0 {
		where = "CN (no SAN DNS)"
	}
	if tlsconf.MatchIdentity(leaf, fqdn) {
		return c.ok("%s %s matches %s", where, quoted(ids), fqdn)
	}
	return c.miss("%s %s does not match node.fqdn %s", where, quoted(ids), fqdn)
}

// ekuState describes whether a certificate's EKU allows usage u.
func ekuState(leaf *x509.Certificate, u x509.ExtKeyUsage) (allowed, explicit bool) {
	if len(leaf.ExtKeyUsage) == 0 && len(leaf.UnknownExtKeyUsage) == 0 {
		return true, false // no EKU extension: any usage
	}
	return slices.Contains(leaf.ExtKeyUsage, u) || slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny), true
}

func certServerAuth(leaf *x509.Certificate) Result {
	c := checkCertServerAuth
	ok, explicit := ekuState(leaf, x509.ExtKeyUsageServerAuth)
	switch {
	case !explicit:
		return c.warn("no EKU extension (any usage); Webex asks for serverAuth and clientAuth explicitly")
	case ok:
		return c.ok("EKU %s", ekuNames(leaf))
	default:
		return c.miss("EKU %s lacks serverAuth: peers refuse the certificate", ekuNames(leaf))
	}
}

func certClientAuth(leaf *x509.Certificate, cfg *config.Config) Result {
	c := checkCertClientAuth
	mtls, why := mutualTLS(cfg)
	if mtls {
		c = c.withLevel(LevelMust)
	}
	ok, explicit := ekuState(leaf, x509.ExtKeyUsageClientAuth)
	switch {
	case !explicit:
		return c.warn("no EKU extension (any usage); Webex asks for serverAuth and clientAuth explicitly")
	case ok:
		return c.ok("EKU %s", ekuNames(leaf))
	case mtls:
		return c.miss("EKU %s lacks clientAuth, and mutual TLS is in use (%s): Webex requires both for mutual TLS; calls will fail", ekuNames(leaf), why)
	default:
		return c.miss("EKU %s lacks clientAuth: Webex requires both for mutual TLS (not configured now)", ekuNames(leaf))
	}
}

// mutualTLS reports whether the configuration uses mutual TLS: a listener
// requiring client certificates, or a trunk on the mutual TLS port 5062.
func mutualTLS(cfg *config.Config) (bool, string) {
	for _, l := range cfg.Listen {
		if l.ClientAuth == "required" {
			return true, "listener " + l.Addr + " has client_auth: required"
		}
	}
	for _, t := range cfg.Trunks {
		if t.URI == "" {
			continue
		}
		if u, err := config.ParseTrunkURI(t.URI); err == nil && u.Port == mutualTLSPort {
			return true, fmt.Sprintf("trunk %s calls port %d", t.Name, mutualTLSPort)
		}
	}
	return false, ""
}

func certChain(chain []*x509.Certificate, roots *x509.CertPool, now time.Time, caFile string) Result {
	c := checkCertChain
	leaf := chain[0]
	selfIssued := bytes.Equal(leaf.RawIssuer, leaf.RawSubject)
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	const offline = "trust by Webex (a public root CA) cannot be checked offline"
	var sent string
	switch {
	case len(chain) > 1:
		sent = fmt.Sprintf("leaf + %d CA certificate(s) configured", len(chain)-1)
	case selfIssued:
		sent = "a self-issued leaf alone"
	default:
		return c.miss("tls.cert holds only the leaf (issuer %q): append the intermediates so the full chain is sent; %s",
			leaf.Issuer.String(), offline)
	}
	verified, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		reason, detail := tlsconf.Classify(err)
		return c.miss("%s; does not verify to the roots in %s (reason %s: %s); %s", sent, caFile, reason, detail, offline)
	}
	top := verified[0][len(verified[0])-1]
	return c.ok("%s; verifies to root %q from %s; %s", sent, top.Subject.String(), caFile, offline)
}

func ekuNames(leaf *x509.Certificate) string {
	var n []string
	for _, u := range leaf.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			n = append(n, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			n = append(n, "clientAuth")
		case x509.ExtKeyUsageAny:
			n = append(n, "any")
		default:
			n = append(n, fmt.Sprintf("eku(%d)", int(u)))
		}
	}
	for _, o := range leaf.UnknownExtKeyUsage {
		n = append(n, o.String())
	}
	return "[" + strings.Join(n, ", ") + "]"
}

// checkTLSFloor reports the configured TLS floor.
func checkTLSFloor(cfg *config.Config) Result {
	c := checkMinVersion
	v, err := tlsconf.ParseMinVersion(cfg.TLS.MinVersion)
	if err != nil {
		return c.miss("tls.min_version %q: %v", cfg.TLS.MinVersion, err)
	}
	if cfg.TLS.MinVersion == "" {
		return c.ok("tls.min_version not set: floor %s, 1.3 preferred", tls.VersionName(v))
	}
	if v >= tls.VersionTLS13 {
		return c.ok("tls.min_version %s: floor %s (Webex documents TLS 1.2; the trunk checks show what a peer negotiates)", cfg.TLS.MinVersion, tls.VersionName(v))
	}
	return c.ok("tls.min_version %s: floor %s, 1.3 preferred", cfg.TLS.MinVersion, tls.VersionName(v))
}

func quoted(xs []string) string {
	if len(xs) == 0 {
		return "(no name)"
	}
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
