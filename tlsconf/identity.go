package tlsconf

import (
	"crypto/x509"
	"net/netip"
	"net/url"
	"strings"
)

// Identities returns the SIP identities a peer certificate asserts, for log
// lines and metrics, per RFC 5922 §7.1: the subjectAltName DNS names (a
// wildcard name is listed as it is, e.g. "*.example.com"), then the hosts of
// the sip:/sips: URI SANs that are SIP domain identities (no user part),
// and, only when the certificate has neither a DNS SAN nor a URI SAN, the
// subject Common Name. Names are lower-cased with any trailing dot removed;
// duplicates and empty names are dropped. IP SANs are not included. It
// returns nil for a nil certificate.
//
// Do not compare these strings to decide who a peer is: use MatchIdentity
// or MatchTrunk, which understand wildcards.
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
	for _, u := range cert.URIs {
		if h, ok := sipURIHost(u); ok {
			add(h)
		}
	}
	if cnApplies(cert) {
		add(cert.Subject.CommonName)
	}
	return out
}

// MatchIdentity reports whether cert is valid for the SIP identity name.
// It is the one identity check of edge-sbc, used for the server certificate
// of an outbound connection (NewClientConfig) and for the client
// certificate of an inbound connection (MatchTrunk). The rules are those of
// RFC 5922 §7.1 with the RFC 6125 §6.4 wildcard rule:
//
//   - If name is an IP literal (brackets and zone allowed), it must equal
//     one of the certificate's IP SANs, or the host of a sip:/sips: URI SAN.
//   - Otherwise it is compared case-insensitively (trailing dot ignored)
//     with each DNS SAN and with the host of each URI SAN whose scheme is
//     sip or sips and which has no user part ("sips:example.com" asserts
//     the SIP domain example.com; "sip:alice@example.com" asserts a user,
//     not a domain, and is ignored). URI SAN ports and parameters are not
//     part of the identity. RFC 5922 names only the sip scheme; sips is
//     accepted too because it names the same domain.
//   - The subject CN is used only when the certificate has no DNS SAN and
//     no URI SAN, and then only as an exact match.
//   - Wildcards: a DNS SAN of the form "*.example.com" matches exactly one
//     extra leftmost label ("a.example.com", not "example.com" nor
//     "a.b.example.com"). Partial-label wildcards ("a*.example.com"),
//     wildcards directly over a single label ("*.com") and wildcards in URI
//     SANs or the CN never match. RFC 5922 §7.2 discourages wildcard
//     certificates for SIP domains; we accept this restricted form because
//     hosted SIP services commonly use such certificates, and because it is
//     what HTTPS clients accept.
//
// It returns false for a nil certificate, an empty name or a name that
// itself contains '*'.
func MatchIdentity(cert *x509.Certificate, name string) bool {
	return matchKind(cert, name) != matchNone
}

// MatchTrunk returns the index in identities of the trunk identity that
// cert is valid for (MatchIdentity), and false when there is none; empty
// identities are skipped. identities is typically the trunks' configured
// identities in configuration order (config.Config.TrunkIdentities).
//
// When several identities match, one the certificate names exactly (a DNS
// SAN or SIP URI SAN equal to it, an IP SAN, or the CN of a certificate
// without SANs) wins over one it only covers with a wildcard, so a peer
// whose certificate carries both "*.example.com" and "b.example.com" is
// the "b.example.com" trunk; among matches of the same kind the first in
// identities wins.
func MatchTrunk(cert *x509.Certificate, identities []string) (int, bool) {
	best, bestKind := -1, matchNone
	for i, id := range identities {
		if k := matchKind(cert, id); k > bestKind {
			best, bestKind = i, k
			if k == matchExact {
				break
			}
		}
	}
	return best, best >= 0
}

type match int

const (
	matchNone match = iota
	matchWildcard
	matchExact
)

func matchKind(cert *x509.Certificate, name string) match {
	if cert == nil {
		return matchNone
	}
	if ip, ok := ParseIPLiteral(strings.TrimSpace(name)); ok {
		ip = ip.WithZone("") // a certificate's IP SANs have no zone
		for _, c := range cert.IPAddresses {
			if a, ok := netip.AddrFromSlice(c); ok && a.Unmap() == ip {
				return matchExact
			}
		}
		for _, u := range cert.URIs {
			if h, ok := sipURIHost(u); ok {
				if a, ok := ParseIPLiteral(h); ok && a.WithZone("") == ip {
					return matchExact
				}
			}
		}
		return matchNone
	}
	n := normalizeName(name)
	if n == "" || strings.Contains(n, "*") {
		return matchNone
	}
	if cnApplies(cert) {
		if normalizeName(cert.Subject.CommonName) == n {
			return matchExact
		}
		return matchNone
	}
	kind := matchNone
	for _, p := range cert.DNSNames {
		p = normalizeName(p)
		if p == n {
			return matchExact
		}
		if kind == matchNone && matchWildcardDNS(p, n) {
			kind = matchWildcard
		}
	}
	for _, u := range cert.URIs {
		if h, ok := sipURIHost(u); ok && h == n {
			return matchExact
		}
	}
	return kind
}

// cnApplies reports whether the subject CN is the certificate's identity:
// only when it has no DNS SAN and no URI SAN (RFC 5922 §7.1 step 2).
func cnApplies(cert *x509.Certificate) bool {
	return len(cert.DNSNames) == 0 && len(cert.URIs) == 0
}

// matchWildcardDNS reports whether pattern "*.suffix" covers name with
// exactly one extra leftmost label; suffix must have at least two labels.
func matchWildcardDNS(pattern, name string) bool {
	suffix, ok := strings.CutPrefix(pattern, "*.")
	if !ok || !strings.Contains(suffix, ".") || strings.Contains(suffix, "*") {
		return false
	}
	label, rest, ok := strings.Cut(name, ".")
	return ok && label != "" && rest == suffix
}

// sipURIHost returns the SIP domain a URI SAN asserts (RFC 5922 §7.1): the
// lower-cased host of a sip: or sips: URI without a user part, headers or
// fragment; its port and parameters are dropped. Other URIs (another
// scheme, a user part, a wildcard host) assert no SIP domain.
func sipURIHost(u *url.URL) (string, bool) {
	if u == nil {
		return "", false
	}
	switch strings.ToLower(u.Scheme) {
	case "sip", "sips":
	default:
		return "", false
	}
	// "sips:example.com" parses with the host in Opaque; the hierarchical
	// form "sips://example.com" is not a SIP URI.
	rest := u.Opaque
	if rest == "" || u.RawQuery != "" || u.Fragment != "" || strings.Contains(rest, "@") {
		return "", false
	}
	rest, _, _ = strings.Cut(rest, ";")
	var host string
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", false
		}
		host = rest[:end+1]
	} else {
		host, _, _ = strings.Cut(rest, ":")
	}
	host = normalizeName(host)
	if host == "" || strings.Contains(host, "*") {
		return "", false
	}
	return host, true
}

func normalizeName(n string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
}

// ParseIPLiteral reports whether host is an IP literal, and returns the
// address: an IPv4 dotted quad or an IPv6 address, optionally in brackets
// as in a SIP URI host (RFC 3261 §25.1: "[2001:db8::1]"), optionally with
// a zone. An IPv4-mapped IPv6 address is returned as IPv4; a zone is kept
// (drop it with WithZone("") before comparing with a certificate). White
// space is not trimmed. This is the one test of "is this host an IP
// address" in edge-sbc: the resolver uses it to skip DNS for a literal
// URI host, and NewClientConfig (so Dial) to never send an IP literal as
// SNI (RFC 6066 §3).
func ParseIPLiteral(host string) (netip.Addr, bool) {
	h := host
	if len(h) > 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	// Cheap pre-check so that domain names do not pay for ParseAddr's
	// error: an IPv6 literal has a colon, an IPv4 literal only digits and
	// dots (a domain name's last label is never all-numeric).
	if !strings.Contains(h, ":") && strings.Trim(h, "0123456789.") != "" {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}
