package dnsresolve

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these with
// %w and name the DNS name concerned, so callers test them with errors.Is.
var (
	// ErrNoTargets means resolution finished without a single usable
	// address, for example because every SRV target had no A records or
	// the host exists but has no A (or, with IPv6 enabled, AAAA) records.
	ErrNoTargets = errors.New("dnsresolve: no targets")

	// ErrServFail means every configured server failed to answer a query
	// usefully: SERVFAIL, REFUSED or another error rcode, a network error,
	// or a malformed/mismatched response. It is used when at least one
	// attempt failed for a reason other than a timeout.
	ErrServFail = errors.New("dnsresolve: dns server failure")

	// ErrTimeout means every attempt against every configured server
	// timed out.
	ErrTimeout = errors.New("dnsresolve: dns timeout")

	// ErrNXDomain means the name does not exist (RCODE 3, RFC 1035
	// §4.1.1), possibly served from the negative cache (RFC 2308).
	ErrNXDomain = errors.New("dnsresolve: no such domain")

	// ErrServiceUnavailable means the _sips._tcp SRV RRset consists of a
	// single record whose target is "." (RFC 2782): the service is
	// decidedly not available at this domain.
	ErrServiceUnavailable = errors.New("dnsresolve: service not available")

	// ErrInvalidHost means the host given to Resolve is neither an IP
	// literal nor a valid domain name, or is an IPv6 literal while IPv6
	// is disabled.
	ErrInvalidHost = errors.New("dnsresolve: invalid host")

	// ErrInvalidConfig is returned by New for an unusable Config.
	ErrInvalidConfig = errors.New("dnsresolve: invalid config")
)
