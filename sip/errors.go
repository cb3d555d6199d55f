package sip

import (
	"context"
	"errors"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/dnsresolve"
)

// Sentinel errors of the B2BUA; statusFor maps them to SIP responses.
var (
	ErrUnreachable   = errors.New("target unreachable")
	ErrTLS           = errors.New("TLS handshake or certificate refused")
	ErrIdentity      = errors.New("peer identity mismatch")
	ErrNoAnswer      = errors.New("no response from target")
	ErrNoRoute       = errors.New("no route for request")
	ErrForbidden     = errors.New("peer is not a configured trunk")
	ErrNotOwnDomain  = errors.New("request-URI is not one of our domains")
	ErrResolve       = errors.New("destination did not resolve")
	ErrAllTargets    = errors.New("every target failed")
	ErrShuttingDown  = errors.New("SBC is draining")
	ErrMedia         = errors.New("media refused")
	ErrMediaCapacity = errors.New("media ports exhausted")
	ErrLoop          = errors.New("loop detected")
)

// statusFor maps an internal error to the SIP status and reason sent back
// to the caller. It is the one place that does so.
func statusFor(err error) (int, string) {
	switch {
	case err == nil:
		return sip.StatusOK, "OK"
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrNotOwnDomain):
		return sip.StatusForbidden, "Forbidden"
	case errors.Is(err, ErrNoRoute):
		return sip.StatusNotFound, "Not Found"
	case errors.Is(err, ErrLoop):
		return 482, "Loop Detected"
	case errors.Is(err, ErrMedia):
		return 488, "Not Acceptable Here"
	case errors.Is(err, ErrNoAnswer):
		return sip.StatusRequestTimeout, "Request Timeout"
	case errors.Is(err, ErrMediaCapacity), errors.Is(err, ErrShuttingDown),
		errors.Is(err, ErrAllTargets), errors.Is(err, ErrUnreachable),
		errors.Is(err, ErrTLS), errors.Is(err, ErrResolve), errors.Is(err, ErrIdentity),
		errors.Is(err, dnsresolve.ErrNoTargets):
		return sip.StatusServiceUnavailable, "Service Unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return sip.StatusRequestTimeout, "Request Timeout"
	default:
		return sip.StatusInternalServerError, "Server Internal Error"
	}
}
