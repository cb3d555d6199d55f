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

	// ErrBadSDP means the SDP is malformed or does not fit the offer/answer
	// state (answer without offer, m-line count mismatch, ...). Unparsable
	// SDP wraps both ErrBadSDP and ErrNotAcceptable.
	ErrBadSDP = errors.New("media: bad SDP")

	// ErrClosed is returned by operations on a closed Session or Engine.
	ErrClosed = errors.New("media: closed")
)
