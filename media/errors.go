package media

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (with
// %w), so callers test them with errors.Is.
var (
	// ErrNotAcceptable means the SDP was refused: plain RTP/AVP(F) audio or
	// video without a=crypto while plain RTP is not allowed, or an SDP that
	// cannot be parsed. The SIP layer answers 488 Not Acceptable Here.
	ErrNotAcceptable = errors.New("media: SDP not acceptable")

	// ErrPortsExhausted means no relay port pair could be allocated. The SIP
	// layer answers 503 Service Unavailable.
	ErrPortsExhausted = errors.New("media: relay ports exhausted")

	// ErrAddressNotLocal means the relay bind address (Config.BindAddr) is
	// not an address of this host, e.g. a keepalived address currently on
	// another node: no relay port can be bound until it is added. Errors
	// wrapping it also wrap ErrPortsExhausted, so the SIP layer answers 503
	// Service Unavailable. See CheckBindAddress.
	ErrAddressNotLocal = errors.New("media: relay bind address is not an address of this host")

	// ErrBadSDP means the SDP is malformed or does not fit the offer/answer
	// state (answer without offer, m-line count mismatch, ...). Unparsable
	// SDP wraps both ErrBadSDP and ErrNotAcceptable.
	ErrBadSDP = errors.New("media: bad SDP")

	// ErrClosed is returned by operations on a closed Session or Engine.
	ErrClosed = errors.New("media: closed")

	// ErrOfferPending means an offer arrived while an offer from the other
	// side is still pending (neither answered with Answer nor withdrawn with
	// Reject): the glare of RFC 3264 section 4 / RFC 6337 section 3.1. The
	// SIP layer answers 491 Request Pending. Nothing changed.
	ErrOfferPending = errors.New("media: offer pending from the other side")

	// ErrBadLearningMode means an endpoint learning mode name
	// (ParseLearningMode) or value (Config.Learning) is not known.
	ErrBadLearningMode = errors.New("media: unknown learning mode")

	// ErrBadSRTPMode means an SRTP mode name (ParseSRTPMode) or value
	// (SessionConfig.ModeA/ModeB) is not known.
	ErrBadSRTPMode = errors.New("media: unknown SRTP mode")

	// ErrBadFastpathMode means a fast path mode name (ParseFastpathMode)
	// or value (Config.Fastpath) is not known.
	ErrBadFastpathMode = errors.New("media: unknown fast path mode")
)

// Errors of the SDES (RFC 4568) a=crypto parser. They never leave the
// package: a line that fails to parse is skipped, and only a missing
// usable line surfaces, as ErrNotAcceptable.
var (
	// errBadCrypto: the a=crypto line is malformed (syntax, base64, key
	// length).
	errBadCrypto = errors.New("media: malformed a=crypto")
	// errUnsupportedCrypto: the line is well formed but uses a suite, key
	// method or session parameter this package does not implement.
	errUnsupportedCrypto = errors.New("media: unsupported a=crypto")
)
