package media

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
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

// RestoreOptions are what Engine.Restore needs besides the snapshot.
type RestoreOptions struct {
	// Since is when the session's SRTP keys came into use at the latest
	// (the call's start): the SRTCP indexes of the restored local contexts
	// start above what the lost node can have used since, at
	// srtcpRatePerSec packets per second.
	Since time.Time
	// Now is the time of the restore (zero: time.Now).
	Now time.Time
}

// srtcpRatePerSec bounds the SRTCP packets per second a local context of
// the lost node is assumed to have sent: a restored context starts its
// SRTCP index at this rate times the seconds since RestoreOptions.Since,
// so that it never sends an index the lost node used with the same key
// (RTCP is a few packets per second; AVPF feedback a few tens at most).
const srtcpRatePerSec = 200

// ErrBadSnapshot is wrapped by Restore's errors about the snapshot itself.
var ErrBadSnapshot = errors.New("media: snapshot cannot be restored")

// Restore rebuilds, on this engine, a session another node had: the same
// relay ports on the bind address (each pair taken exactly; a pair in use
// fails the restore), the signalled and learned addresses (media flows as
// soon as packets arrive, learning starts anew as after a new SDP), the
// directions, and in terminate mode the SRTP keys in use: the receiving
// contexts try the snapshot's rollover counter and the next one, the
// sending contexts take theirs from what they relay, and the SRTCP
// indexes start above what the lost node used (RestoreOptions.Since).
// Later offers and answers work as on any session; the o= versions
// toward each side continue the snapshot's (the next SDP sent gets a new
// version).
//
// sc gives the call id, the timeout callback and AllowPlainRTP; the SRTP
// modes and advertised addresses are the snapshot's. Errors wrap
// ErrBadSnapshot (version, pending offer, modes, keys), ErrPortsExhausted
// (a pair in use or not bindable) or ErrClosed. On error nothing stays
// open.
func (e *Engine) Restore(snap SessionSnapshot, sc SessionConfig, o RestoreOptions) (*Session, error) {
	if snap.Version != SnapshotVersion {
		return nil, fmt.Errorf("%w: version %d (this node reads %d)", ErrBadSnapshot, snap.Version, SnapshotVersion)
	}
	if snap.Pending {
		return nil, fmt.Errorf("%w: taken with an offer pending", ErrBadSnapshot)
	}
	var err error
	if sc.ModeA, err = ParseSRTPMode(snap.ModeA); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	if sc.ModeB, err = ParseSRTPMode(snap.ModeB); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	sc.AdvertiseA, sc.AdvertiseB = snap.AdvertiseA, snap.AdvertiseB
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	s := newSession(e, sc)
	if s.modeErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, s.modeErr)
	}
	for side, og := range [2]Origin{snap.OriginA, snap.OriginB} {
		if og.ID == 0 && og.Version == 0 {
			continue // nothing was sent toward the side
		}
		// last is unknown: any digest differs, so the next SDP toward the
		// side gets the next version (RFC 3264 §8 wants a new one only for
		// a changed SDP; one too many is harmless).
		s.origins[side] = origin{init: true, id: og.ID, version: og.Version, last: [sha256.Size]byte{1}}
	}
	var streams []*stream
	fail := func(err error) (*Session, error) {
		for _, st := range streams {
			if st != nil {
				st.close()
			}
		}
		return nil, err
	}
	for _, ss := range snap.Streams {
		if ss.Index < 0 || ss.Index >= maxStreams {
			return fail(fmt.Errorf("%w: m-line index %d", ErrBadSnapshot, ss.Index))
		}
		for len(streams) <= ss.Index {
			streams = append(streams, nil)
		}
		if streams[ss.Index] != nil {
			return fail(fmt.Errorf("%w: m-line %d twice", ErrBadSnapshot, ss.Index))
		}
		st, err := e.openStreamAt(s.log, ss.Index, ss.Media, ss.Content, ss.RTP, ss.RTP && ss.RTCP, s.modes,
			[2]int{ss.A.Port, ss.B.Port})
		if err != nil {
			return fail(fmt.Errorf("media: restore m-line %d (ports %d/%d): %w", ss.Index, ss.A.Port, ss.B.Port, err))
		}
		streams[ss.Index] = st
		if err := st.restore(ss, o); err != nil {
			return fail(err)
		}
	}
	s.setStreams(streams)
	e.mu.Lock()
	closed := e.closed
	if !closed {
		e.sessions[s] = struct{}{}
	}
	e.mu.Unlock()
	if closed {
		return fail(ErrClosed)
	}
	s.log.Info().Int("streams", len(snap.Streams)).Str("mode_a", snap.ModeA).Str("mode_b", snap.ModeB).
		Msg("media: session restored from a snapshot")
	return s, nil
}

// openPairAt takes pair base exactly (a restored stream's) with its
// sockets: a warm pair's open ones, else newly bound ones.
func (e *Engine) openPairAt(base int, withRTCP bool) (pairSocks, error) {
	socks, warm, ok := e.pool.take(base)
	if !ok {
		return pairSocks{}, fmt.Errorf("%w: pair %d-%d is in use or outside media.port_range", ErrPortsExhausted, base, base+1)
	}
	if warm {
		if ps, ok := e.reuse(base, socks, withRTCP); ok {
			return ps, nil
		}
		if _, _, ok = e.pool.take(base); !ok { // reuse released it and closed the sockets
			return pairSocks{}, fmt.Errorf("%w: pair %d-%d taken meanwhile", ErrPortsExhausted, base, base+1)
		}
	}
	rtp, rtcp, err := e.bindPair(base, withRTCP)
	if err != nil {
		e.pool.unget(base)
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return pairSocks{}, fmt.Errorf("%w (%w): %w", ErrAddressNotLocal, ErrPortsExhausted, err)
		}
		return pairSocks{}, fmt.Errorf("%w: %w", ErrPortsExhausted, err)
	}
	return pairSocks{rtp: rtp, rtcp: rtcp, tos: -1}, nil
}

// restore puts the snapshot's addresses, directions and keys on a stream
// just opened on its ports. Its readers run already: each endpoint and
// context is published whole.
func (st *stream) restore(ss StreamSnapshot, o RestoreOptions) error {
	for side, ls := range [2]LegSnapshot{ss.A, ss.B} {
		l := &st.legs[side]
		set := func(p *atomic.Pointer[endpoint], ap netip.AddrPort) {
			if ap.IsValid() {
				p.Store(newEndpoint(ap, st.v6))
			}
		}
		set(&l.sigRTP, ls.Signalled)
		set(&l.sigRTCP, ls.SignalledRTCP)
		set(&l.remRTP, ls.Remote)
		set(&l.remRTCP, ls.RemoteRTCP)
		st.dir[side] = parseDir(ls.Dir)
	}
	st.held.Store(st.dir[SideA] != dirSendRecv || st.dir[SideB] != dirSendRecv)
	st.sigGen.Add(1) // the readers learn anew, keeping the destinations
	st.answered.Store(true)
	if !st.terminates() {
		return nil
	}
	// The contexts of both legs first, then the links between them.
	var remote, local [2]*cryptoCtx
	for side, ls := range [2]LegSnapshot{ss.A, ss.B} {
		if st.modes[side] != SRTPTerminate {
			continue
		}
		var err error
		if remote[side], err = restoredCtx(ls.RecvKey, true); err != nil {
			return fmt.Errorf("m-line %d leg %v receive key: %w", ss.Index, Side(side), err)
		}
		if local[side], err = restoredCtx(ls.SendKey, false); err != nil {
			return fmt.Errorf("m-line %d leg %v send key: %w", ss.Index, Side(side), err)
		}
		if local[side] != nil {
			k := local[side].key
			st.sec.ours[side][k.suite] = k // offers toward the side repeat it
			st.sec.neg.agreed[side] = secAgreed{suite: k.suite, ok: true}
		}
	}
	elapsed := max(o.Now.Sub(o.Since), 0)
	floor := uint64(elapsed/time.Second+1) * srtcpRatePerSec
	for side := range st.legs {
		c := local[side]
		if c == nil {
			continue
		}
		c.rtcpFloor = uint32(min(floor, maxSRTCPIndex/2))
		other := Side(side).Other()
		if src := remote[other]; src != nil {
			c.rocSrc = src
			send, recv := legOf(ss, Side(side)).SendKey, legOf(ss, other).RecvKey
			if send != nil && recv != nil && send.HasROC && recv.HasROC && send.SSRC == recv.SSRC {
				c.rocOff = send.ROC - recv.ROC
			}
		}
	}
	for side := range st.legs {
		if c := remote[side]; c != nil {
			st.legs[side].remote.Store(c)
		}
		if c := local[side]; c != nil {
			st.legs[side].local.Store(c)
		}
	}
	return nil
}

// maxSRTCPIndex is the largest SRTCP index (31 bits).
const maxSRTCPIndex = 1<<31 - 1

// legOf is the part of ss facing side.
func legOf(ss StreamSnapshot, side Side) LegSnapshot {
	if side == SideB {
		return ss.B
	}
	return ss.A
}

// restoredCtx builds the context of key k (nil for nil). A context with a
// rollover counter gets a predecessor holding it (rocFrom): its first
// packet of that SSRC tries the counter, the next one and 0 (see
// rocCandidates), so a sequence wrap since the snapshot is found.
func restoredCtx(k *KeySnapshot, inbound bool) (*cryptoCtx, error) {
	if k == nil {
		return nil, nil
	}
	suite, ok := suiteByName(k.Suite)
	if !ok || len(k.Material) != suite.materialLen() {
		return nil, fmt.Errorf("%w: SRTP suite %q or key length", ErrBadSnapshot, k.Suite)
	}
	key := srtpKey{suite: suite, material: append([]byte(nil), k.Material...)}
	if len(k.MKI) > 0 {
		key.mki = append([]byte(nil), k.MKI...)
	}
	c, err := newCryptoCtx(key, inbound)
	if err != nil {
		return nil, err
	}
	if k.HasROC {
		from, err := newCryptoCtx(key, false)
		if err != nil {
			return nil, err
		}
		from.rtp.SetROC(k.SSRC, k.ROC)
		c.rocFrom.Store(from)
	}
	return c, nil
}

// parseDir is the direction named by an SDP attribute (sendrecv when
// unknown).
func parseDir(s string) direction {
	switch s {
	case "sendonly":
		return dirSendOnly
	case "recvonly":
		return dirRecvOnly
	case "inactive":
		return dirInactive
	}
	return dirSendRecv
}
