package tlsconf

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// MinVersionDefault is the TLS floor of edge-sbc. It is the only place the
// floor is defined: ParseMinVersion and the config builders never go below it.
const MinVersionDefault = tls.VersionTLS12

// ParseMinVersion parses a configured minimum TLS version: "1.2" or "1.3"
// (a "TLS" / "tls" prefix is tolerated, e.g. "TLS1.3"). The empty string
// yields MinVersionDefault. Anything lower than MinVersionDefault, or
// unknown, is an error wrapping ErrMinVersion.
func ParseMinVersion(s string) (uint16, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	v = strings.TrimSpace(strings.TrimPrefix(v, "tls"))
	switch v {
	case "":
		return MinVersionDefault, nil
	case "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	case "1.0", "1.1", "1":
		return 0, fmt.Errorf("tlsconf: TLS %s is below the %s floor: %w", v, tls.VersionName(MinVersionDefault), ErrMinVersion)
	default:
		return 0, fmt.Errorf("tlsconf: TLS version %q: %w", s, ErrMinVersion)
	}
}

// cipherSuitesTLS12 are the only suites offered/accepted with TLS 1.2:
// ECDHE key exchange and AEAD ciphers. TLS 1.3 suites are not configurable
// in crypto/tls and are all AEAD.
func cipherSuitesTLS12() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// effectiveMinVersion applies the floor: 0 or anything below
// MinVersionDefault becomes MinVersionDefault; values above TLS 1.3 are
// clamped to TLS 1.3.
func effectiveMinVersion(v uint16) uint16 {
	switch {
	case v < MinVersionDefault:
		return MinVersionDefault
	case v > tls.VersionTLS13:
		return tls.VersionTLS13
	default:
		return v
	}
}

// baseConfig returns the settings shared by every config of this package.
func baseConfig(minVersion uint16) *tls.Config {
	return &tls.Config{
		MinVersion:   effectiveMinVersion(minVersion),
		MaxVersion:   tls.VersionTLS13,
		CipherSuites: cipherSuitesTLS12(),
	}
}
