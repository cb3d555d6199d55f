package tlsconf

import (
	"crypto/x509"
	"net/netip"
	"strings"
)

// Identities returns the SIP identities a peer certificate asserts, per
// RFC 5922 §7.1: the subjectAltName DNS names, or, only when there is no
// DNS SAN, the subject Common Name. Names are lower-cased with any trailing
// dot removed; duplicates and empty names are dropped. IP SANs and URI SANs
// are not included. It returns nil for a nil certificate.
func Identities(cert *x509.Certificate) []string {
	if cert == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		n = normalizeName(n)
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, n := range cert.DNSNames {
		add(n)
	}
	if len(out) == 0 && len(cert.DNSNames) == 0 {
		add(cert.Subject.CommonName)
	}
	return out
}

// MatchIdentity reports whether cert is valid for name.
//
//   - If name is an IP literal (brackets and zone allowed), it must equal
//     one of the certificate's IP SANs.
//   - Otherwise it is compared case-insensitively (trailing dot ignored)
//     with each DNS SAN; the subject CN is used only when the certificate
//     has no DNS SAN, and then only as an exact match.
//   - Wildcards: a DNS SAN of the form "*.example.com" matches exactly one
//     extra leftmost label ("a.example.com", not "example.com" nor
//     "a.b.example.com"). Partial-label wildcards ("a*.example.com") and
//     wildcards directly over a single label ("*.com") never match.
//     RFC 5922 §7.2 discourages wildcard certificates for SIP domains; we
//     accept this restricted form because hosted SIP services commonly use
//     such certificates, and because it is what HTTPS clients accept.
//
// It returns false for a nil certificate or an empty name.
func MatchIdentity(cert *x509.Certificate, name string) bool {
	if cert == nil {
		return false
	}
	if ip, ok := parseIPLiteral(name); ok {
		for _, c := range cert.IPAddresses {
			if a, ok := netip.AddrFromSlice(c); ok && a.Unmap() == ip.Unmap() {
				return true
			}
		}
		return false
	}
	n := normalizeName(name)
	if n == "" || strings.Contains(n, "*") {
		return false
	}
	if len(cert.DNSNames) == 0 {
		return normalizeName(cert.Subject.CommonName) == n
	}
	for _, p := range cert.DNSNames {
		if matchDNS(normalizeName(p), n) {
			return true
		}
	}
	return false
}

func matchDNS(pattern, name string) bool {
	if pattern == "" {
		return false
	}
	if pattern == name {
		return true
	}
	suffix, ok := strings.CutPrefix(pattern, "*.")
	if !ok || !strings.Contains(suffix, ".") || strings.Contains(suffix, "*") {
		return false
	}
	label, rest, ok := strings.Cut(name, ".")
	return ok && label != "" && rest == suffix
}

func normalizeName(n string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
}

// parseIPLiteral accepts "192.0.2.1", "2001:db8::1", "[2001:db8::1]" and
// zoned forms; the zone is dropped.
func parseIPLiteral(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone(""), true
}
