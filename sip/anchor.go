package sip

import (
	"net/netip"

	"github.com/edge-sbc/edge-sbc/media"
)

// Side names a leg of a call: A is the caller's, B the callee's.
type Side int

// The two legs.
const (
	SideA Side = iota
	SideB
)

func (s Side) String() string {
	if s == SideA {
		return "a"
	}
	return "b"
}

// MediaAnchor gives each call a media session that rewrites SDP so media
// flows through the SBC's relay.
type MediaAnchor interface {
	NewSession(p SessionParams) (MediaSession, error)
}

// roomAnchor is a MediaAnchor that can say whether a new call's streams
// would find descriptors for their sockets now (media.Engine.HasRoom);
// the setup gate holds new calls back while they would not.
type roomAnchor interface {
	HasRoom(streams int) bool
}

// SessionParams describe a call to the media layer.
type SessionParams struct {
	CallID        string
	TrunkA        string
	TrunkB        string
	AllowPlainRTP bool
	// AdvertiseA and AdvertiseB are the SBC's media addresses put in SDP
	// toward each side.
	AdvertiseA, AdvertiseB netip.Addr
	// SRTPA and SRTPB are the trunks' srtp modes (passthrough, terminate,
	// rtp); empty means passthrough.
	SRTPA, SRTPB string
	// OnTimeout is called once when media stops while not on hold.
	OnTimeout func()
}

// MediaSession rewrites the offers and answers of one call (RFC 3264). It
// keeps the agreed state apart from the one being negotiated: an offer is
// staged until an answer commits it, and Reject returns to the last
// agreed state. The call's owner is its only user.
type MediaSession interface {
	// Offer stages an SDP offer that arrived on side from and returns it
	// rewritten for the other side.
	Offer(from Side, sdp []byte) ([]byte, error)
	// ProvisionalAnswer applies an answer carried by an unreliable 18x
	// (early media) from side from; the offer stays pending, so another
	// provisional answer or the final one may follow.
	ProvisionalAnswer(from Side, sdp []byte) ([]byte, error)
	// Answer commits the answer that arrived on side from.
	Answer(from Side, sdp []byte) ([]byte, error)
	// Reject drops the offer pending from side from and returns to the
	// last agreed state (no-op when none is pending).
	Reject(from Side)
	// Stats returns the statistics of the open streams so far (safe to call
	// from any goroutine).
	Stats() []media.StreamStats
	// Close releases the ports and returns a summary for the CDR.
	Close() map[string]any
}

// passthrough leaves SDP untouched.
type passthrough struct{}

func (passthrough) NewSession(SessionParams) (MediaSession, error) { return passSession{}, nil }

type passSession struct{}

func (passSession) Offer(_ Side, sdp []byte) ([]byte, error)             { return sdp, nil }
func (passSession) ProvisionalAnswer(_ Side, sdp []byte) ([]byte, error) { return sdp, nil }
func (passSession) Answer(_ Side, sdp []byte) ([]byte, error)            { return sdp, nil }
func (passSession) Reject(Side)                                          {}
func (passSession) Stats() []media.StreamStats                           { return nil }
func (passSession) Close() map[string]any                                { return nil }
