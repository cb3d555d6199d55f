package media

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/rs/zerolog"
)

// Side names a call leg: A is the caller side, B the callee side.
type Side uint8

const (
	SideA Side = iota // caller side
	SideB             // callee side
)

// Other returns the opposite side.
func (s Side) Other() Side { return 1 - s }

func (s Side) String() string {
	switch s {
	case SideA:
		return "A"
	case SideB:
		return "B"
	}
	return fmt.Sprintf("Side(%d)", uint8(s))
}

// maxStreams bounds the m-lines of one SDP, so that a hostile SDP cannot
// take hundreds of ports.
const maxStreams = 16

// SessionConfig configures one call's media.
type SessionConfig struct {
	// CallID identifies the call in logs.
	CallID string
	// AdvertiseA and AdvertiseB are the SBC addresses written in SDP sent
	// to side A and side B (c= and o=). The zero value falls back to
	// Config.BindAddr, which then must not be unspecified.
	AdvertiseA, AdvertiseB netip.Addr
	// AllowPlainRTP accepts audio/video over RTP/AVP(F) without a=crypto
	// when both legs pass SRTP through. Otherwise the modes decide: an
	// SRTPPlainRTP leg speaks plain RTP, an SRTPTerminate leg must offer
	// or accept an SDES suite.
	AllowPlainRTP bool
	// ModeA and ModeB are the SRTP modes of the legs facing side A and
	// side B. The zero values pass SRTP through on both legs. When either
	// is not SRTPPassthrough, the session terminates SRTP: a pass-through
	// leg is then treated as SRTPTerminate.
	ModeA, ModeB SRTPMode
	// OnTimeout is called once, from the engine's watchdog goroutine, when
	// media is dead (see Config.Timeout). It must not block for long; it
	// may call Session.Close.
	OnTimeout func()
}

// Session anchors the media of one call: it rewrites the SDP exchanged
// between side A and side B and relays every stream through SBC ports.
//
// All methods are safe for concurrent use; the signalling methods (Offer,
// ProvisionalAnswer, Answer, Reject, Pending), Stats and Close are
// serialized.
type Session struct {
	eng *Engine
	cfg SessionConfig
	log zerolog.Logger
	adv [2]netip.Addr // advertised address toward each side

	modes   [2]SRTPMode // effective SRTP modes (effectiveModes), immutable
	term    bool        // the session terminates SRTP
	modeErr error       // invalid SessionConfig modes: Offer and Answer fail

	// opMu serializes the signalling operations (Offer, ProvisionalAnswer,
	// Answer, Reject, Pending, Stats, Close) and guards pending, origins,
	// retired, final and closed, and the signalling fields of the streams. It may be held while sockets
	// are bound and configured (non-blocking system calls), never across
	// network I/O or a wait for packets.
	opMu    sync.Mutex
	pending *pendingOffer
	origins [2]origin
	retired []StreamStats // streams closed before the session (port 0)
	final   []StreamStats // result of Close
	closed  bool

	// mu guards streams, which the watchdog reads. Writers hold opMu too.
	// It is never held across a system call.
	mu      sync.Mutex
	streams []*stream // by m-line index; nil: rejected or not allocated

	// Dead-media state, touched only by the engine's watchdog goroutine.
	wdActivity uint64
	wdSince    time.Time
	wdFired    bool
}

// origin is the o= line the SBC sends toward one side.
type origin struct {
	init    bool
	id      uint64
	version uint64
	last    [sha256.Size]byte // digest of the last SDP sent, o= excluded
}

func newSession(e *Engine, sc SessionConfig) *Session {
	s := &Session{eng: e, cfg: sc}
	s.log = e.log.With().Str("call_id", sc.CallID).Logger()
	s.adv = [2]netip.Addr{sc.AdvertiseA.Unmap(), sc.AdvertiseB.Unmap()}
	for i, a := range s.adv {
		if !a.IsValid() {
			s.adv[i] = e.cfg.BindAddr
		}
	}
	s.modes, s.modeErr = effectiveModes(sc.ModeA, sc.ModeB)
	s.term = s.modeErr == nil && s.modes != [2]SRTPMode{}
	return s
}

// Offer stages an SDP offer received from side from and returns the SDP to
// send to the other side, anchored on the SBC's ports facing that side.
// The first offer allocates a port pair per stream and leg; a re-offer
// (re-INVITE, UPDATE, from either side) keeps the ports of existing
// streams (matched by m-line index), updates the relay in place and
// allocates only added streams.
//
// The offer stays pending until Answer commits it or Reject withdraws it
// (see "Offer/answer state" in doc.go). The offerer's addresses,
// directions and first SRTP keys are applied at once, so that media
// toward the offerer flows (early media), but the agreed state is kept for
// a rollback: streams the offer removes (port 0, or another media type at
// their index) keep relaying until the answer commits. An offer from the
// other side while one is pending fails with ErrOfferPending; an offer
// from the same side replaces the pending one (which is rolled back first;
// streams both offers have keep their ports).
//
// When the session terminates SRTP, the a=crypto lines sent to a
// terminate-mode leg are the SBC's own (see doc.go); a terminate-mode
// offerer must offer a supported SDES suite.
//
// Errors wrap ErrNotAcceptable (plain RTP refused, no supported SRTP
// suite, unparsable SDP), ErrPortsExhausted, ErrBadSDP, ErrOfferPending,
// ErrBadSRTPMode or ErrClosed. On error nothing changed.
func (s *Session) Offer(from Side, offer []byte) ([]byte, error) {
	if from != SideA && from != SideB {
		return nil, fmt.Errorf("%w: invalid side %v", ErrBadSDP, from)
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.modeErr != nil {
		return nil, s.modeErr
	}
	if p := s.pending; p != nil && p.from != from {
		return nil, fmt.Errorf("%w: offer from side %v while the offer from side %v is not answered",
			ErrOfferPending, from, p.from)
	}
	to := from.Other()
	if err := s.checkAdvertise(to); err != nil {
		return nil, err
	}
	sd, err := parseSDP(offer)
	if err != nil {
		return nil, err
	}
	rejectTCP(sd)
	if err := s.check(sd); err != nil {
		return nil, err
	}
	// A re-offer (a hold, a new address, a re-key) is dealt with in
	// userspace: streams in the kernel come back first, losing nothing.
	s.leaveKernel(leaveOffer)
	replaced := s.pending
	if replaced == nil {
		return s.stageOffer(from, sd, nil)
	}
	// The same side offers again: stage the new offer against the agreed
	// state, reusing the streams the replaced offer created. If it fails,
	// the replaced offer is reinstated as it was.
	layout := s.streams
	current := make([]streamSnap, len(replaced.snaps))
	for i := range replaced.snaps {
		current[i] = snapshot(replaced.snaps[i].st)
	}
	reuse := slices.Clone(s.rollback())
	out, err := s.stageOffer(from, sd, reuse)
	if err != nil {
		for i := range current {
			current[i].restore()
		}
		s.setStreams(layout)
		s.pending = replaced
		return nil, err
	}
	s.retire(slices.DeleteFunc(reuse, func(st *stream) bool { return st == nil }))
	return out, nil
}

// stageOffer anchors offer sd from side from on the agreed state and makes
// it the pending offer. Streams it needs are taken from reuse (which it
// clears) before new ones are opened. On error nothing changed. Caller
// holds opMu; no offer is pending.
func (s *Session) stageOffer(from Side, sd *sdp.SessionDescription, reuse []*stream) ([]byte, error) {
	to := from.Other()
	if err := s.checkSec(from, sd, false); err != nil {
		return nil, err
	}
	if len(sd.MediaDescriptions) < len(s.streams) {
		return nil, fmt.Errorf("%w: re-offer has %d m-lines, previous had %d",
			ErrBadSDP, len(sd.MediaDescriptions), len(s.streams))
	}

	// Phase 1: allocate what is new; on failure undo and change nothing.
	next := make([]*stream, len(sd.MediaDescriptions))
	copy(next, s.streams)
	var opened, created, removed []*stream
	undo := func() {
		for _, c := range opened {
			c.close()
		}
	}
	for i, md := range sd.MediaDescriptions {
		old := next[i]
		if md.MediaName.Port.Value == 0 || (old != nil && old.media != md.MediaName.Media) {
			if old != nil {
				removed = append(removed, old)
				next[i] = nil
			}
			if md.MediaName.Port.Value == 0 {
				continue
			}
		}
		if next[i] != nil {
			continue
		}
		if st := takeReusable(reuse, i, md.MediaName.Media, carriesRTP(md)); st != nil {
			created = append(created, st)
			next[i] = st
			continue
		}
		st, err := s.eng.openStream(s.log, i, md.MediaName.Media, attrValue(md.Attributes, "content"),
			carriesRTP(md), carriesRTP(md) && !hasAttr(md.Attributes, "rtcp-mux"), s.modes)
		if err != nil {
			undo()
			s.log.Warn().Err(err).Int("mline", i).Msg("media: cannot allocate relay ports")
			return nil, err
		}
		opened = append(opened, st)
		created = append(created, st)
		next[i] = st
	}

	// Phase 2: rewrite; phase 3: commit.
	adv := s.adv[to]
	infos := make([]remoteInfo, len(next))
	var sec secPlan
	for i, md := range sd.MediaDescriptions {
		st := next[i]
		if s.term && (st == nil || !st.terminates()) {
			removeCrypto(md) // keys of one leg never reach the other
		}
		if st == nil {
			rewriteMedia(md, 0, adv)
			continue
		}
		infos[i] = remoteOf(sd, md)
		rewriteMedia(md, st.legs[to].base, adv)
		if st.terminates() {
			if err := s.secOffer(&sec, from, md, st); err != nil {
				undo()
				return nil, err
			}
		}
	}
	rewriteSession(sd, adv)
	out, err := s.marshal(to, sd)
	if err != nil {
		undo()
		return nil, err
	}
	p := &pendingOffer{
		from: from, mlines: len(sd.MediaDescriptions), started: time.Now(),
		agreed: s.streams, created: created, removed: removed,
	}
	for _, st := range s.streams {
		if st != nil {
			p.snaps = append(p.snaps, snapshot(st))
		}
	}
	for _, st := range created {
		p.snaps = append(p.snaps, snapshot(st))
	}
	s.setStreams(next)
	for i, st := range next {
		if st != nil {
			s.learn(st, from, infos[i])
		}
	}
	sec.commit()
	s.pending = p
	s.log.Debug().Stringer("from", from).Int("mlines", len(next)).Int("new", len(opened)).
		Int("reused", len(created)-len(opened)).Int("removed", len(removed)).Msg("media: offer staged")
	return out, nil
}

// ProvisionalAnswer takes an SDP answer received from side from in an
// unreliable provisional response (183 Session Progress with SDP, RFC 3261
// section 13.2.1 and RFC 6337 section 3.1.1) and returns the SDP to send to
// the offerer. It is applied like an answer: the answerer's addresses are
// learned and, when the session terminates SRTP, the keys of both legs are
// installed, so early media flows both ways. But the offer stays pending:
// another ProvisionalAnswer (another fork, a changed early SDP), the final
// Answer or Reject may follow. Streams the answer rejects (port 0) are not
// released before the final Answer.
//
// Errors are those of Answer. On error nothing changed.
func (s *Session) ProvisionalAnswer(from Side, answer []byte) ([]byte, error) {
	return s.answer(from, answer, false)
}

// Answer takes the final SDP answer received from side from, for the
// pending offer of the other side (2xx, reliable provisional response or
// PRACK, UPDATE 2xx, ACK), and returns the SDP to send to the offerer. It
// commits the negotiation: the answer is applied as ProvisionalAnswer
// applies it, streams the answer rejects (port 0) and streams the offer
// removed are released, and the result becomes the agreed state. After a
// ProvisionalAnswer, the same SDP gives the same SDP toward the offerer
// (same o= version); a different one updates the relay and the o= version.
//
// When the session terminates SRTP, a re-INVITE with new keys re-keys here
// without interrupting the relay: the previous key of a sender keeps
// decrypting until a packet authenticates with the new one.
//
// Errors wrap ErrBadSDP (no pending offer from the other side, m-line count
// mismatch, unparsable), ErrNotAcceptable (including a terminate-mode
// answer that accepts none of the SBC's SRTP suites) or ErrClosed. On
// error nothing changed: the offer is still pending.
func (s *Session) Answer(from Side, answer []byte) ([]byte, error) {
	return s.answer(from, answer, true)
}

// answer applies an answer from side from, committing it when final.
func (s *Session) answer(from Side, answer []byte, final bool) ([]byte, error) {
	if from != SideA && from != SideB {
		return nil, fmt.Errorf("%w: invalid side %v", ErrBadSDP, from)
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	to := from.Other()
	p := s.pending
	if p == nil || p.from != to {
		return nil, fmt.Errorf("%w: answer from side %v without an offer from side %v", ErrBadSDP, from, to)
	}
	if err := s.checkAdvertise(to); err != nil {
		return nil, err
	}
	sd, err := parseSDP(answer)
	if err != nil {
		return nil, err
	}
	if err := s.check(sd); err != nil {
		return nil, err
	}
	if len(sd.MediaDescriptions) != p.mlines {
		return nil, fmt.Errorf("%w: answer has %d m-lines, offer had %d",
			ErrBadSDP, len(sd.MediaDescriptions), p.mlines)
	}
	if err := s.checkSec(from, sd, true); err != nil {
		return nil, err
	}
	next := make([]*stream, len(s.streams))
	copy(next, s.streams)
	var toClose []*stream
	adv := s.adv[to]
	infos := make([]remoteInfo, len(next))
	var sec secPlan
	for i, md := range sd.MediaDescriptions {
		st := next[i]
		if s.term && (st == nil || md.MediaName.Port.Value == 0 || !st.terminates()) {
			removeCrypto(md) // keys of one leg never reach the other
		}
		if st == nil || md.MediaName.Port.Value == 0 {
			if st != nil && final {
				toClose = append(toClose, st)
				next[i] = nil
			}
			rewriteMedia(md, 0, adv)
			continue
		}
		infos[i] = remoteOf(sd, md)
		rewriteMedia(md, st.legs[to].base, adv)
		if st.terminates() {
			if err := s.secAnswer(&sec, from, md, st); err != nil {
				return nil, err
			}
		}
	}
	rewriteSession(sd, adv)
	out, err := s.marshal(to, sd)
	if err != nil {
		return nil, err
	}
	for i, st := range next {
		if st != nil && infos[i].md != nil {
			s.learn(st, from, infos[i])
		}
	}
	sec.commit()
	if !final {
		p.answers++
		s.log.Debug().Stringer("from", from).Int("answers", p.answers).Msg("media: provisional answer applied")
		return out, nil
	}
	s.setStreams(next)
	s.retire(toClose)
	s.retire(p.removed)
	for _, st := range next {
		if st != nil {
			st.answered.Store(true)
		}
	}
	s.pending = nil
	s.log.Debug().Stringer("from", from).Int("provisional", p.answers).Msg("media: answer committed")
	return out, nil
}

// Reject withdraws the pending offer from side from: it was refused (488,
// 491, 500, ...), cancelled or timed out. The state agreed before the offer
// is restored: streams the offer created are closed (their ports go back
// to the pool), streams it removed keep relaying, and the offerer's and
// answerer's previous addresses, directions (hold) and SRTP contexts are
// used again (RTCP sockets the offer opened stay open: their ports belong
// to the stream's reserved pairs anyway). The o= versions stay monotonic: the next SDP sent toward a
// side gets a new version if it differs from the last one sent there.
// Without an agreed state (the initial offer was refused) the session is
// left without streams, ready for another offer. Reject is a no-op when no
// offer from side from is pending.
func (s *Session) Reject(from Side) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.closed || s.pending == nil || s.pending.from != from {
		return
	}
	p := s.pending
	s.retire(s.rollback())
	s.log.Debug().Stringer("from", from).Int("provisional", p.answers).Int("closed", len(p.created)).
		Msg("media: offer rejected, agreed state restored")
}

// Pending reports the side whose offer is pending (staged by Offer and
// neither committed by Answer nor withdrawn by Reject).
func (s *Session) Pending() (from Side, ok bool) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.pending == nil {
		return 0, false
	}
	return s.pending.from, true
}

// check refuses what the session does not accept.
func (s *Session) check(sd *sdp.SessionDescription) error {
	if len(sd.MediaDescriptions) > maxStreams {
		return fmt.Errorf("%w: %d m-lines (max %d)", ErrNotAcceptable, len(sd.MediaDescriptions), maxStreams)
	}
	for i, md := range sd.MediaDescriptions {
		p := md.MediaName.Port.Value
		if p < 0 || p > 65535 {
			return fmt.Errorf("%w: %w: m-line %d: port %d", ErrNotAcceptable, ErrBadSDP, i, p)
		}
		if p == 0 {
			continue
		}
		if !s.cfg.AllowPlainRTP && !s.term && isPlainRTP(md) {
			return fmt.Errorf("%w: m-line %d (%s): plain %s without a=crypto",
				ErrNotAcceptable, i, md.MediaName.Media, proto(md))
		}
		if !connAddr(sd, md).IsValid() {
			return fmt.Errorf("%w: %w: m-line %d: no usable c= address", ErrNotAcceptable, ErrBadSDP, i)
		}
	}
	return nil
}

func (s *Session) checkAdvertise(to Side) error {
	if a := s.adv[to]; !a.IsValid() || a.IsUnspecified() {
		return fmt.Errorf("media: no advertise address for side %v (set SessionConfig.Advertise%v)", to, to)
	}
	return nil
}

// remoteInfo is what one side's SDP says about one stream.
type remoteInfo struct {
	hasAddr   bool // false for c=0.0.0.0 (RFC 2543 hold): keep the destination
	rtp, rtcp netip.AddrPort
	dir       direction
	content   string
	mux       bool
	md        *sdp.MediaDescription // for the clock rates
}

// remoteOf extracts the remote information of md. It must run before
// rewriteMedia changes md.
func remoteOf(sd *sdp.SessionDescription, md *sdp.MediaDescription) remoteInfo {
	ri := remoteInfo{
		dir:     mediaDirection(sd, md),
		content: attrValue(md.Attributes, "content"),
		mux:     hasAttr(md.Attributes, "rtcp-mux"),
		md:      md,
	}
	addr := connAddr(sd, md)
	if addr.IsUnspecified() {
		ri.dir = dirInactive
		return ri
	}
	ri.hasAddr = true
	port := md.MediaName.Port.Value
	ri.rtp = netip.AddrPortFrom(addr, uint16(port))
	ri.rtcp = netip.AddrPortFrom(addr, uint16(port+1))
	if p, a, ok := rtcpAttr(md); ok {
		if !a.IsValid() || a.IsUnspecified() {
			a = addr
		}
		ri.rtcp = netip.AddrPortFrom(a, uint16(p))
	}
	return ri
}

// learn applies what side from's SDP says about stream st: its address,
// direction (hold), payload clock rates, content and RTCP multiplexing.
// Caller holds opMu.
func (s *Session) learn(st *stream, from Side, ri remoteInfo) {
	if ri.hasAddr {
		st.setRemote(from, ri.rtp, ri.rtcp)
	}
	st.dir[from] = ri.dir
	st.held.Store(st.dir[SideA] != dirSendRecv || st.dir[SideB] != dirSendRecv)
	if st.isRTP {
		st.clocks.Store(buildClocks(st.clocks.Load(), ri.md))
		st.codec.Store(codecOf(ri.md))
	}
	if ri.content != st.content {
		st.content = ri.content
		if k := classify(st.media, ri.content); k != st.kind {
			st.kind = k
			st.applyDSCP()
		}
	}
	if st.isRTP && !ri.mux {
		if err := st.ensureRTCP(); err != nil {
			s.log.Warn().Err(err).Int("mline", st.index).Msg("media: RTCP will not be relayed")
		}
	}
}

// marshal sets the o= line toward side to and serializes sd. The session
// version toward that side increments whenever the rest of the SDP
// changes (RFC 3264 section 8).
func (s *Session) marshal(to Side, sd *sdp.SessionDescription) ([]byte, error) {
	o := &s.origins[to]
	if !o.init {
		o.init = true
		o.id = uint64(rand.Uint32())
		o.version = uint64(rand.Uint32())
	}
	user := sd.Origin.Username
	if user == "" {
		user = "-"
	}
	ci := connInfo(s.adv[to])
	sd.Origin = sdp.Origin{
		Username: user, SessionID: o.id, SessionVersion: 0,
		NetworkType: "IN", AddressType: ci.AddressType, UnicastAddress: ci.Address.Address,
	}
	body, err := sd.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%w: marshal: %s", ErrBadSDP, redact(err.Error()))
	}
	if sum := sha256.Sum256(body); sum != o.last {
		if o.last != ([sha256.Size]byte{}) {
			o.version++
		}
		o.last = sum
	}
	sd.Origin.SessionVersion = o.version
	out, err := sd.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%w: marshal: %s", ErrBadSDP, redact(err.Error()))
	}
	return out, nil
}

func (s *Session) setStreams(next []*stream) {
	s.mu.Lock()
	s.streams = next
	s.mu.Unlock()
}

// retire closes streams removed by the negotiation, keeping their stats.
func (s *Session) retire(sts []*stream) {
	for _, st := range sts {
		st.close()
		s.retired = append(s.retired, st.stats())
	}
}

// Stats returns the statistics of the open streams so far.
func (s *Session) Stats() []StreamStats {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.closed {
		return s.final
	}
	var out []StreamStats
	for _, st := range s.openStreams() {
		out = append(out, st.stats())
	}
	return out
}

// openStreams returns the streams of the current layout, then those a
// pending offer removes (still relaying until the answer). Caller holds
// opMu.
func (s *Session) openStreams() []*stream {
	var out []*stream
	for _, st := range s.streams {
		if st != nil {
			out = append(out, st)
		}
	}
	if s.pending != nil {
		out = append(out, s.pending.removed...)
	}
	return out
}

// Ports returns the SBC's RTP ports of m-line index toward side A and B
// (0, 0 if the stream is not allocated).
func (s *Session) Ports(index int) (portA, portB int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index < 0 || index >= len(s.streams) || s.streams[index] == nil {
		return 0, 0
	}
	st := s.streams[index]
	return st.legs[SideA].base, st.legs[SideB].base
}

// Close stops relaying, releases the ports (through quarantine) and
// returns the final statistics of every stream the session had, including
// streams rejected by a re-negotiation. Close is idempotent.
func (s *Session) Close() []StreamStats {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.closed {
		return s.final
	}
	s.closed = true
	streams := s.openStreams()
	s.pending = nil
	s.setStreams(nil)
	final := s.retired
	for _, st := range streams {
		st.close()
		final = append(final, st.stats())
	}
	s.final = final
	s.eng.removeSession(s)
	for _, ss := range final {
		ev := s.log.Info()
		if ss.Degraded() {
			ev = s.log.Warn()
		}
		ev.Int("mline", ss.Index).Str("media", ss.Media).
			Uint64("a_pkts", ss.FromA.Packets).Float64("a_loss_pct", ss.FromA.LossPercent()).Float64("a_jitter_ms", ss.FromA.JitterMs).
			Uint64("b_pkts", ss.FromB.Packets).Float64("b_loss_pct", ss.FromB.LossPercent()).Float64("b_jitter_ms", ss.FromB.JitterMs).
			Bool("degraded", ss.Degraded()).Msg("media: stream closed")
	}
	return final
}

// deadMedia reports, once, that no packet arrived on any answered,
// non-held RTP stream for timeout. Only RTP streams are expected to carry
// packets all the time: a non-RTP stream (BFCP, other application data,
// idle for most of a call and without a direction attribute) neither keeps
// the call alive nor counts as dead. When no RTP stream is answered and
// active (every one on hold, for instance), the timer pauses. Called only
// by the engine's watchdog goroutine.
func (s *Session) deadMedia(now time.Time, timeout time.Duration) bool {
	var act uint64
	live := false
	s.mu.Lock()
	for _, st := range s.streams {
		if st == nil || !st.isRTP || !st.answered.Load() || st.held.Load() {
			continue
		}
		live = true
		act += st.activity()
	}
	s.mu.Unlock()
	if !live || s.wdSince.IsZero() || act != s.wdActivity {
		s.wdActivity = act
		s.wdSince = now
		return false
	}
	if s.wdFired || now.Sub(s.wdSince) < timeout {
		return false
	}
	s.wdFired = true
	return true
}
