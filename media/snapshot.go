package media

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
)

// This file is the session snapshot: what another node needs to carry a
// session's media on when the node that had it is lost (sip/cluster): the
// relay ports of each stream, the addresses the relay sends to (signalled
// and learned), the directions, the SRTP modes and, when the session
// terminates SRTP, the keys in use and the rollover counters they reached.
// A snapshot is taken by the signalling after a completed negotiation (one
// per call event, none per packet); the readers' only part is to publish a
// context's rollover counter when it may have changed (noteROC), which
// costs a comparison per packet of a terminating stream and nothing
// otherwise.

// SnapshotVersion is the version of SessionSnapshot's layout.
const SnapshotVersion = 1

// SessionSnapshot is one session's media as another node needs it. It
// holds key material: keep it encrypted at rest and out of logs (String
// prints none of it).
type SessionSnapshot struct {
	Version int `json:"v"`
	// ModeA and ModeB are the legs' effective SRTP modes (SRTPMode names).
	ModeA string `json:"mode_a"`
	ModeB string `json:"mode_b"`
	// AdvertiseA and AdvertiseB are the SBC's addresses in the SDP sent to
	// each side.
	AdvertiseA netip.Addr `json:"adv_a"`
	AdvertiseB netip.Addr `json:"adv_b"`
	// OriginA and OriginB are the o= session id and version last sent
	// toward each side (a later SDP toward it continues them).
	OriginA Origin `json:"o_a"`
	OriginB Origin `json:"o_b"`
	// Pending: an offer was outstanding when the snapshot was taken (the
	// streams are then the staged ones).
	Pending bool             `json:"pending,omitempty"`
	Streams []StreamSnapshot `json:"streams"`
}

// Origin is an o= line's session id and version.
type Origin struct {
	ID      uint64 `json:"id"`
	Version uint64 `json:"ver"`
}

// StreamSnapshot is one relayed m-line.
type StreamSnapshot struct {
	Index   int    `json:"i"`
	Media   string `json:"media"`
	Content string `json:"content,omitempty"`
	// RTP: the stream carries RTP; RTCP: RTCP has its own ports (Port+1 on
	// each leg: no rtcp-mux).
	RTP  bool `json:"rtp,omitempty"`
	RTCP bool `json:"rtcp,omitempty"`
	// A and B are the stream's legs toward side A and side B.
	A LegSnapshot `json:"a"`
	B LegSnapshot `json:"b"`
}

// LegSnapshot is the part of a stream facing one side.
type LegSnapshot struct {
	// Port is the SBC's (even) RTP port facing the side.
	Port int `json:"port"`
	// Dir is the side's direction attribute (sendrecv, sendonly,
	// recvonly, inactive).
	Dir string `json:"dir"`
	// Signalled and SignalledRTCP are the addresses in the side's SDP;
	// Remote and RemoteRTCP where the relay sends to the side (the
	// signalled ones, or the sources learned from its packets). Invalid:
	// not known.
	Signalled     netip.AddrPort `json:"sig"`
	SignalledRTCP netip.AddrPort `json:"sig_rtcp"`
	Remote        netip.AddrPort `json:"rem"`
	RemoteRTCP    netip.AddrPort `json:"rem_rtcp"`
	// RecvKey decrypts what the side sends, SendKey encrypts what the relay
	// sends to it (terminate mode only; nil until negotiated).
	RecvKey *KeySnapshot `json:"recv_key,omitempty"`
	SendKey *KeySnapshot `json:"send_key,omitempty"`
}

// KeySnapshot is an SRTP key in use: its suite (RFC 4568 name), master key
// and salt, MKI, and the rollover counter its context reached for the SSRC
// it last saw cross a sequence number wrap (or first).
type KeySnapshot struct {
	Suite    string `json:"suite"`
	Material []byte `json:"key"`
	MKI      []byte `json:"mki,omitempty"`
	SSRC     uint32 `json:"ssrc,omitempty"`
	ROC      uint32 `json:"roc,omitempty"`
	HasROC   bool   `json:"has_roc,omitempty"`
}

// String and GoString keep the key material out of formatted output.
func (k KeySnapshot) String() string   { return k.Suite + " key <redacted>" }
func (k KeySnapshot) GoString() string { return k.String() }

// String keeps the keys out of formatted output.
func (s SessionSnapshot) String() string {
	return fmt.Sprintf("media snapshot v%d (%s/%s, %d streams)", s.Version, s.ModeA, s.ModeB, len(s.Streams))
}

// GoString is String.
func (s SessionSnapshot) GoString() string { return s.String() }

// Snapshot returns what another node needs to carry the session's media
// on. Take it once a negotiation completed: with an offer pending, the
// streams are the staged ones and Pending is set. Safe for concurrent use
// (it is serialized with the signalling methods); a closed session
// returns a snapshot without streams.
func (s *Session) Snapshot() SessionSnapshot {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	out := SessionSnapshot{
		Version: SnapshotVersion,
		ModeA:   s.modes[SideA].String(), ModeB: s.modes[SideB].String(),
		AdvertiseA: s.adv[SideA], AdvertiseB: s.adv[SideB],
		OriginA: Origin{s.origins[SideA].id, s.origins[SideA].version},
		OriginB: Origin{s.origins[SideB].id, s.origins[SideB].version},
		Pending: s.pending != nil,
	}
	if s.closed {
		return out
	}
	for _, st := range s.streams {
		if st == nil {
			continue
		}
		ss := StreamSnapshot{Index: st.index, Media: st.media, Content: st.content, RTP: st.isRTP,
			RTCP: st.legs[SideA].rtcp.Load() != nil}
		ss.A, ss.B = st.legSnapshot(SideA), st.legSnapshot(SideB)
		out.Streams = append(out.Streams, ss)
	}
	return out
}

// legSnapshot is the part of st facing side. Caller holds the session's
// opMu (dir).
func (st *stream) legSnapshot(side Side) LegSnapshot {
	l := &st.legs[side]
	ls := LegSnapshot{Port: l.base, Dir: st.dir[side].String()}
	ap := func(p *atomic.Pointer[endpoint]) netip.AddrPort {
		if e := p.Load(); e != nil {
			return e.ap
		}
		return netip.AddrPort{}
	}
	ls.Signalled, ls.SignalledRTCP = ap(&l.sigRTP), ap(&l.sigRTCP)
	ls.Remote, ls.RemoteRTCP = ap(&l.remRTP), ap(&l.remRTCP)
	if st.terminates() {
		ls.RecvKey = l.remote.Load().snapshot()
		ls.SendKey = l.local.Load().snapshot()
	}
	return ls
}

// snapshot is c's key and published rollover counter (nil for nil).
func (c *cryptoCtx) snapshot() *KeySnapshot {
	if c == nil {
		return nil
	}
	k := &KeySnapshot{Suite: c.key.suite.String(), Material: append([]byte(nil), c.key.material...),
		MKI: append([]byte(nil), c.key.mki...)}
	if r := c.roc.v.Load(); r != nil {
		k.SSRC, k.ROC, k.HasROC = r[0], r[1], true
	}
	return k
}

// rocNote is a context's rollover counter for one SSRC, published by the
// reader that owns the context for Snapshot.
type rocNote struct {
	v atomic.Pointer[[2]uint32] // SSRC, ROC
}

// rocWindow: a packet whose sequence number is below it may be the first
// after a wrap, so the counter is published again (a few times per 65536
// packets).
const rocWindow = 32

// noteROC publishes the rollover counter of p's SSRC the first time the
// context handles a packet and after each sequence number wrap. Called by
// the reader that owns c.rtp, with p's RTP header in clear.
func (c *cryptoCtx) noteROC(p []byte) {
	if len(p) < 12 || c.rocSeen && binary.BigEndian.Uint16(p[2:4]) >= rocWindow {
		return
	}
	ssrc := binary.BigEndian.Uint32(p[8:12])
	roc, ok := c.rtp.ROC(ssrc)
	if !ok {
		return
	}
	c.rocSeen = true
	if r := c.roc.v.Load(); r != nil && r[0] == ssrc && r[1] == roc {
		return
	}
	c.roc.v.Store(&[2]uint32{ssrc, roc})
}

// String is the SDP attribute of the direction.
func (d direction) String() string {
	switch d {
	case dirSendOnly:
		return "sendonly"
	case dirRecvOnly:
		return "recvonly"
	case dirInactive:
		return "inactive"
	}
	return "sendrecv"
}
