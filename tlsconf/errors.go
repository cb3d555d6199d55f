package tlsconf

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (test
// with errors.Is) and name the file or value concerned.
var (
	// ErrMissingFile: a certificate, key or CA file does not exist or cannot be read.
	ErrMissingFile = errors.New("file missing or unreadable")
	// ErrNotPEM: the file contains no PEM block of the expected type.
	ErrNotPEM = errors.New("no PEM data of the expected type")
	// ErrBadCertificate: a PEM CERTIFICATE block does not parse as X.509.
	ErrBadCertificate = errors.New("certificate does not parse")
	// ErrBadKey: the private key does not parse or has an unsupported type.
	ErrBadKey = errors.New("private key does not parse or is unsupported")
	// ErrKeyMismatch: the private key does not match the leaf certificate.
	ErrKeyMismatch = errors.New("private key does not match certificate")
	// ErrNoFile: a required file path is empty.
	ErrNoFile = errors.New("no file path configured")

	// ErrClientAuth: unknown client authentication mode.
	ErrClientAuth = errors.New(`client auth mode must be "none", "optional" or "required"`)
	// ErrMinVersion: unknown or too low TLS version.
	ErrMinVersion = errors.New(`TLS minimum version must be "1.2" or "1.3"`)

	// ErrDevPKI: invalid input to WriteDevPKI / IssueDevLeaf.
	ErrDevPKI = errors.New("invalid development PKI request")
)
