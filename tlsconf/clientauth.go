package tlsconf

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// ClientAuth is the client certificate policy of a listener.
type ClientAuth int

const (
	// ClientAuthNone does not request a client certificate.
	ClientAuthNone ClientAuth = iota
	// ClientAuthOptional requests a client certificate; if one is sent it
	// must verify against the Store roots, otherwise the handshake fails.
	ClientAuthOptional
	// ClientAuthRequired requires a client certificate that verifies
	// against the Store roots.
	ClientAuthRequired
)

// String returns "none", "optional" or "required".
func (c ClientAuth) String() string {
	switch c {
	case ClientAuthNone:
		return "none"
	case ClientAuthOptional:
		return "optional"
	case ClientAuthRequired:
		return "required"
	default:
		return fmt.Sprintf("ClientAuth(%d)", int(c))
	}
}

// ParseClientAuth parses "none", "optional" or "required" (case-insensitive,
// surrounding spaces ignored). Other values return an error wrapping
// ErrClientAuth.
func ParseClientAuth(s string) (ClientAuth, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "none":
		return ClientAuthNone, nil
	case "optional":
		return ClientAuthOptional, nil
	case "required":
		return ClientAuthRequired, nil
	default:
		return ClientAuthNone, fmt.Errorf("tlsconf: client auth %q: %w", s, ErrClientAuth)
	}
}

// tlsClientAuth maps to crypto/tls. Unknown values fail closed (required).
func (c ClientAuth) tlsClientAuth() tls.ClientAuthType {
	switch c {
	case ClientAuthNone:
		return tls.NoClientCert
	case ClientAuthOptional:
		// Asked for, not enforced by the handshake: a B2B peer whose
		// certificate we cannot verify is still served, as unauthenticated
		// (see VerifyClient).
		return tls.RequestClientCert
	default:
		return tls.RequireAndVerifyClientCert
	}
}
