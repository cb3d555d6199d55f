package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
)

// SRTPMode is how the SBC handles SRTP on one leg of a session.
type SRTPMode int

const (
	// SRTPPassthrough relays SRTP untouched: a=crypto lines go end to end
	// and packets are never decrypted. It is the zero value.
	SRTPPassthrough SRTPMode = iota
	// SRTPTerminate makes the SBC an SRTP endpoint on the leg: it offers
	// or answers its own SDES keys there and decrypts and re-encrypts
	// every packet.
	SRTPTerminate
	// SRTPPlainRTP makes the leg speak plain RTP/AVP(F): the SBC sends it
	// SDP without a=crypto and decrypts (encrypts) what it relays to (from)
	// it.
	SRTPPlainRTP
)

// String returns the name ParseSRTPMode accepts.
func (m SRTPMode) String() string {
	switch m {
	case SRTPPassthrough:
		return "passthrough"
	case SRTPTerminate:
		return "terminate"
	case SRTPPlainRTP:
		return "rtp"
	}
	return fmt.Sprintf("SRTPMode(%d)", int(m))
}

// ParseSRTPMode parses "passthrough", "terminate" or "rtp" (case
// insensitive). Other values return an error wrapping ErrBadSRTPMode.
func ParseSRTPMode(s string) (SRTPMode, error) {
	for _, m := range [...]SRTPMode{SRTPPassthrough, SRTPTerminate, SRTPPlainRTP} {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: %q (want passthrough, terminate or rtp)", ErrBadSRTPMode, firstN(s, 32))
}

// effectiveModes returns the per-side modes a session applies. A session
// passes SRTP through only when both sides are SRTPPassthrough; as soon as
// one side is not, a pass-through side is terminated too (its peer cannot
// share its keys any more).
func effectiveModes(a, b SRTPMode) ([2]SRTPMode, error) {
	m := [2]SRTPMode{a, b}
	for _, x := range m {
		if x < SRTPPassthrough || x > SRTPPlainRTP {
			return m, fmt.Errorf("%w: %v", ErrBadSRTPMode, x)
		}
	}
	if a == SRTPPassthrough && b == SRTPPassthrough {
		return m, nil
	}
	for i := range m {
		if m[i] == SRTPPassthrough {
			m[i] = SRTPTerminate
		}
	}
	return m, nil
}

// replayWindow is the SRTP and SRTCP replay window, in packets (pion's
// default for its sessions).
const replayWindow = 64

// srtpHeadroom is the room reserved after every relay buffer for what
// protection adds: at most a 16-byte GCM tag plus, for SRTCP, the 4-byte
// index (an MKI is never sent).
const srtpHeadroom = 64

// cryptoCtx is the SRTP state of one direction of one leg: either the
// remote context, which decrypts what the side sends, or the local one,
// which encrypts what is sent to it. It is built by the signalling and
// published through an atomic.Pointer; key is immutable.
//
// A pion srtp.Context is not safe for concurrent use. The RTP context is
// used only by the reader goroutine of one RTP socket (the one receiving
// from the side for a remote context, the one receiving from the other side
// for a local one), so it needs no lock. RTCP may arrive on the RTP socket
// (rtcp-mux) or on the RTCP socket, two goroutines, so the RTCP context is
// guarded by mu; RTCP is a few packets per second and the lock is
// uncontended. One context per direction also keeps SRTCP indexes unique
// per key, so a key stream is never reused.
//
// A context that replaces another one on the same leg and direction (a
// re-key) goes through a transition, see unprotectRTP, unprotectRTCP and
// carryLocalROC:
// prev and rtcpPrev (remote contexts only) decrypt what this context
// cannot authenticate, until it authenticates a packet itself (while the
// sender still uses the old key, the old context is tried first); rocFrom
// hands over the rollover counter of each SSRC. They are set before the
// context is published. The reader that uses the RTP context clears prev,
// and rocFrom once maxCarried SSRCs were carried over; the signalling
// clears all three when the context is replaced in turn (detach), so no
// chain of old contexts builds up. Contexts reached through these links
// are used by the same goroutines as this one (same leg, same direction).
type cryptoCtx struct {
	key srtpKey
	rtp *srtp.Context

	prev, rocFrom atomic.Pointer[cryptoCtx]
	// carried are the SSRCs whose ROC is settled in rtp (handed over from
	// rocFrom, or nothing to hand over). Owned by the reader that uses rtp.
	carried  [maxCarried]uint32
	nCarried int
	// prevFirst: prev authenticated the sender's last packet, so it is
	// tried first (a failed AEAD open allocates its error in pion). Owned
	// by the reader that uses rtp.
	prevFirst bool
	// roc is the rollover counter rtp reached, published for
	// Session.Snapshot (snapshot.go); rocSeen is its reader's own.
	roc     rocNote
	rocSeen bool

	mu       sync.Mutex
	rtcp     *srtp.Context // guarded by mu
	rtcpPrev *cryptoCtx    // guarded by mu: decrypts SRTCP until rtcp authenticates

	// A local context restored from a snapshot (Engine.Restore, snapshot.go):
	// rocSrc, when set, is the remote context that decrypts what this one
	// encrypts (the same reader uses both), from which each SSRC's rollover
	// counter is taken, plus rocOff; rtcpFloor is the SRTCP index each SSRC
	// starts from, so that no index the lost node used is used again with
	// the key; rtcpSet lists the SSRCs started (guarded by mu). Set before
	// the context is published, then immutable but rtcpSet.
	rocSrc    *cryptoCtx
	rocOff    uint32
	rtcpFloor uint32
	rtcpSet   map[uint32]struct{}
}

// maxCarried bounds the SSRCs per context whose rollover counter is
// carried over from the replaced context (RTX, FEC or simulcast add a few
// SSRCs to a stream; more are not worth a longer scan).
const maxCarried = 4

// succeed links c as the successor of cur on the same leg and direction:
// c takes over cur's rollover counters, and for a remote context tries
// cur when it cannot authenticate a packet. Called before c is published.
func (c *cryptoCtx) succeed(cur *cryptoCtx, remote bool) {
	c.rocFrom.Store(cur)
	if remote {
		c.prev.Store(cur)
		c.rtcpPrev = cur
	}
}

// detach drops c's links to the context it replaced: c is being replaced.
func (c *cryptoCtx) detach() {
	c.prev.Store(nil)
	c.rocFrom.Store(nil)
	c.mu.Lock()
	c.rtcpPrev = nil
	c.mu.Unlock()
}

// hasCarried reports whether the ROC of ssrc is settled in c.rtp. Reader
// of c.rtp only.
func (c *cryptoCtx) hasCarried(ssrc uint32) bool {
	for _, x := range c.carried[:c.nCarried] {
		if x == ssrc {
			return true
		}
	}
	return false
}

// markCarried records that the ROC of ssrc is settled; after maxCarried
// SSRCs nothing more is carried over. Reader of c.rtp only.
func (c *cryptoCtx) markCarried(ssrc uint32) {
	if c.nCarried == maxCarried {
		return
	}
	c.carried[c.nCarried] = ssrc
	c.nCarried++
	if c.nCarried == maxCarried {
		c.rocFrom.Store(nil)
	}
}

// rocCandidates are the rollover counters tried, in order, for the first
// packet of an SSRC under a new key when the replaced context had counted
// roc: the same (RFC 3711 keeps the ROC across a re-key), the next one
// (the sequence wrapped between the last packet under the old key and the
// first under the new), and 0 (peers that reset the ROC with the key).
func rocCandidates(roc uint32) ([3]uint32, int) {
	c := [3]uint32{roc, roc + 1, 0}
	if roc == 0 || roc+1 == 0 {
		return c, 2
	}
	return c, 3
}

// String and GoString keep the key out of formatted output.
func (c *cryptoCtx) String() string   { return "SRTP context " + c.key.String() }
func (c *cryptoCtx) GoString() string { return c.String() }

// newCryptoCtx derives the session keys of k. Inbound contexts check
// replays (window replayWindow) and accept the key's MKI.
func newCryptoCtx(k srtpKey, inbound bool) (*cryptoCtx, error) {
	info := k.suite.info()
	mk, salt := k.material[:info.keyLen], k.material[info.keyLen:]
	var opts []srtp.ContextOption
	if inbound {
		opts = append(opts, srtp.SRTPReplayProtection(replayWindow), srtp.SRTCPReplayProtection(replayWindow))
		if len(k.mki) > 0 {
			opts = append(opts, srtp.MasterKeyIndicator(k.mki))
		}
	}
	c := &cryptoCtx{key: k}
	var err error
	if c.rtp, err = srtp.CreateContext(mk, salt, info.profile, opts...); err != nil {
		return nil, fmt.Errorf("media: SRTP context (%v): %w", k, err)
	}
	if c.rtcp, err = srtp.CreateContext(mk, salt, info.profile, opts...); err != nil {
		return nil, fmt.Errorf("media: SRTCP context (%v): %w", k, err)
	}
	return c, nil
}

// dropReason says why the SRTP step refused a packet.
type dropReason uint8

const (
	dropNone   dropReason = iota
	dropAuth              // authentication failed, or not a valid (S)RTP/(S)RTCP packet
	dropReplay            // replayed or too old for the replay window
	dropNoKey             // the direction has no key yet
)

func (ls *localStats) drop(r dropReason) {
	switch r {
	case dropAuth:
		ls.auth++
	case dropReplay:
		ls.replay++
	case dropNoKey:
		ls.noKey++
	}
}

// reasonOf classifies an error of pion's unprotect functions.
func reasonOf(err error) dropReason {
	if errors.Is(err, srtp.ErrFailedToVerifyAuthTag) {
		return dropAuth
	}
	// pion's replay error is unexported; its text is its only handle
	// (TestTerminateReplayDropped guards it).
	if strings.Contains(err.Error(), "duplicated") {
		return dropReplay
	}
	return dropAuth
}

// srtpXform is the per-reader scratch state of the SRTP step. Owned by one
// reader goroutine; not safe for concurrent use.
type srtpXform struct {
	rtpHdr  rtp.Header
	rtcpHdr rtcp.Header
	// scratch receives trial decryptions during a re-key transition (a
	// failed AEAD open zeroes its output, and the packet must stay intact
	// for the next try). Allocated on first use, slotSize bytes.
	scratch []byte
}

func (x *srtpXform) scratchBuf() []byte {
	if x.scratch == nil {
		x.scratch = make([]byte, slotSize)
	}
	return x.scratch[:0]
}

// keep copies a trial result (shorter than p) back into p.
func keep(p, out []byte) []byte {
	p = p[:len(out)]
	copy(p, out)
	return p
}

// unprotect decrypts p in place with c when the sending side is in
// terminate mode (a plain RTP side needs nothing). p must have capacity
// for the result (it shrinks).
func (x *srtpXform) unprotect(p []byte, isRTCP bool, mode SRTPMode, c *cryptoCtx) ([]byte, dropReason) {
	if mode != SRTPTerminate {
		return p, dropNone
	}
	if c == nil {
		return p, dropNoKey
	}
	if isRTCP {
		return x.unprotectRTCP(p, c)
	}
	out, why := x.unprotectRTP(p, c)
	if why == dropNone {
		c.noteROC(out)
	}
	return out, why
}

// unprotectRTP decrypts an RTP packet. Outside a re-key transition it
// decrypts in place. During one, the first packet of each SSRC takes over
// the rollover counter the replaced context had reached (the first of
// rocCandidates that authenticates), and a packet that does not
// authenticate with c is tried with the replaced context (the sender keeps
// its old key until the answer reaches it, RFC 4568 section 7.1.4), which
// is retired as soon as c authenticates a packet. Once the old context
// authenticated a packet it is tried first, until it fails: a failed AEAD
// open allocates its error in pion, and in either phase the first try then
// succeeds, so nothing is allocated per packet.
func (x *srtpXform) unprotectRTP(p []byte, c *cryptoCtx) ([]byte, dropReason) {
	prev, from := c.prev.Load(), c.rocFrom.Load()
	var ssrc uint32
	inherit := false
	if from != nil && len(p) >= 12 {
		ssrc = binary.BigEndian.Uint32(p[8:12])
		inherit = !c.hasCarried(ssrc)
	}
	if prev == nil && !inherit {
		out, err := c.rtp.DecryptRTP(p[:0], p, &x.rtpHdr)
		if err != nil {
			return p, reasonOf(err)
		}
		return out, dropNone
	}
	if prev != nil && c.prevFirst {
		out, err := prev.rtp.DecryptRTP(x.scratchBuf(), p, &x.rtpHdr)
		if err == nil {
			return keep(p, out), dropNone
		}
		if why := reasonOf(err); why != dropAuth {
			return p, why
		}
	}
	out, why := x.decryptNew(p, c, from, ssrc, inherit)
	if why == dropNone {
		if inherit {
			c.markCarried(ssrc)
		}
		if prev != nil {
			c.prev.Store(nil) // the sender switched: retire the old key
		}
		return keep(p, out), dropNone
	}
	if prev == nil || why != dropAuth || c.prevFirst {
		return p, why
	}
	out, err := prev.rtp.DecryptRTP(x.scratchBuf(), p, &x.rtpHdr)
	if err != nil {
		return p, reasonOf(err)
	}
	c.prevFirst = true
	return keep(p, out), dropNone
}

// decryptNew decrypts p into the scratch buffer with c, first settling the
// ROC of ssrc from the replaced context when inherit.
func (x *srtpXform) decryptNew(p []byte, c, from *cryptoCtx, ssrc uint32, inherit bool) ([]byte, dropReason) {
	if inherit {
		if roc, ok := from.rtp.ROC(ssrc); ok {
			cands, n := rocCandidates(roc)
			why := dropAuth
			for _, r := range cands[:n] {
				c.rtp.SetROC(ssrc, r)
				out, err := c.rtp.DecryptRTP(x.scratchBuf(), p, &x.rtpHdr)
				if err == nil {
					return out, dropNone
				}
				if why = reasonOf(err); why != dropAuth {
					break
				}
			}
			return nil, why
		}
	}
	out, err := c.rtp.DecryptRTP(x.scratchBuf(), p, &x.rtpHdr)
	if err != nil {
		return nil, reasonOf(err)
	}
	return out, dropNone
}

// unprotectRTCP decrypts an SRTCP packet, falling back to the replaced
// context until c authenticates one (SRTCP carries its index: no ROC to
// hand over).
func (x *srtpXform) unprotectRTCP(p []byte, c *cryptoCtx) ([]byte, dropReason) {
	c.mu.Lock()
	prev := c.rtcpPrev
	if prev == nil {
		out, err := c.rtcp.DecryptRTCP(p[:0], p, &x.rtcpHdr)
		c.mu.Unlock()
		if err != nil {
			return p, reasonOf(err)
		}
		return out, dropNone
	}
	out, err := c.rtcp.DecryptRTCP(x.scratchBuf(), p, &x.rtcpHdr)
	if err == nil {
		c.rtcpPrev = nil
	}
	c.mu.Unlock()
	if err == nil {
		return keep(p, out), dropNone
	}
	if why := reasonOf(err); why != dropAuth {
		return p, why
	}
	prev.mu.Lock()
	out, err = prev.rtcp.DecryptRTCP(x.scratchBuf(), p, &x.rtcpHdr)
	prev.mu.Unlock()
	if err != nil {
		return p, reasonOf(err)
	}
	return keep(p, out), dropNone
}

// protect encrypts p in place with c when the receiving side is in
// terminate mode. p must have srtpHeadroom bytes of spare capacity.
func (x *srtpXform) protect(p []byte, isRTCP bool, mode SRTPMode, c *cryptoCtx) ([]byte, dropReason) {
	if mode != SRTPTerminate {
		return p, dropNone
	}
	if c == nil {
		return p, dropNoKey
	}
	var out []byte
	var err error
	if isRTCP {
		c.mu.Lock()
		if c.rtcpFloor > 0 && !c.floorRTCP(p) {
			c.mu.Unlock()
			return p, dropNoKey
		}
		out, err = c.rtcp.EncryptRTCP(p[:0], p, &x.rtcpHdr)
		c.mu.Unlock()
	} else {
		x.carryLocalROC(p, c)
		out, err = c.rtp.EncryptRTP(p[:0], p, &x.rtpHdr)
	}
	if err != nil {
		return p, dropAuth
	}
	if !isRTCP {
		c.noteROC(out)
	}
	return out, dropNone
}

// carryLocalROC settles the ROC of p's SSRC in a new local context from
// the one it replaced: that context encrypts a copy of p first, which
// advances its index to exactly this packet, so its ROC is the one to
// continue with (the receiver keeps its ROC across the re-key, RFC 3711).
func (x *srtpXform) carryLocalROC(p []byte, c *cryptoCtx) {
	from := c.rocFrom.Load()
	if from == nil && c.rocSrc == nil || len(p) < 12 {
		return
	}
	ssrc := binary.BigEndian.Uint32(p[8:12])
	if c.hasCarried(ssrc) {
		return
	}
	if src := c.rocSrc; src != nil {
		// Restored: the counter the decrypting context found for this
		// packet (it tries the snapshot's and the next), which follows the
		// sequence numbers this context encrypts.
		if roc, ok := src.rtp.ROC(ssrc); ok {
			c.rtp.SetROC(ssrc, roc+c.rocOff)
			c.markCarried(ssrc)
			return
		}
	}
	if from == nil {
		return
	}
	if _, ok := from.rtp.ROC(ssrc); ok {
		if _, err := from.rtp.EncryptRTP(x.scratchBuf(), p, &x.rtpHdr); err == nil {
			if roc, ok := from.rtp.ROC(ssrc); ok {
				c.rtp.SetROC(ssrc, roc)
			}
		}
	}
	c.markCarried(ssrc)
}

// maxFloored bounds the SSRCs a restored local context starts at its SRTCP
// floor; RTCP of further SSRCs is dropped (an index could repeat).
const maxFloored = 64

// floorRTCP starts the SRTCP index of the sender SSRC of p (an RTCP
// packet in clear) at the restored context's floor, once per SSRC; false
// when the packet must not be sent. Caller holds c.mu.
func (c *cryptoCtx) floorRTCP(p []byte) bool {
	if len(p) < 8 {
		return true // not RTCP: EncryptRTCP refuses it
	}
	ssrc := binary.BigEndian.Uint32(p[4:8])
	if _, ok := c.rtcpSet[ssrc]; ok {
		return true
	}
	if len(c.rtcpSet) >= maxFloored {
		return false
	}
	if c.rtcpSet == nil {
		c.rtcpSet = make(map[uint32]struct{})
	}
	c.rtcpSet[ssrc] = struct{}{}
	c.rtcp.SetIndex(ssrc, c.rtcpFloor)
	return true
}

// isMuxedRTCP reports whether p, received on an RTP port, is RTCP: RTCP
// packet types 192-223 (RFC 5761 section 4; 200-204 are SR, RR, SDES, BYE
// and APP, 205-206 the AVPF feedback messages) occupy the second byte.
func isMuxedRTCP(p []byte) bool {
	return len(p) >= 8 && p[0]>>6 == 2 && p[1] >= 192 && p[1] <= 223
}

// streamSec is the SDES state of a terminating stream. It is signalling
// state: guarded by the session's opMu.
type streamSec struct {
	// ours holds the SBC's keys toward each side, one per suite, drawn
	// when the stream is created: offers repeat them, answers pick one.
	ours [2][numSuites]srtpKey
	// neg is what the negotiation decided so far; a rollback (Reject)
	// restores a copy taken when the offer was staged.
	neg secNeg
}

// secNeg is the negotiated SDES state of a stream. It holds no key
// material of its own beyond the peers' lines, and is copied by value into
// snapshots.
type secNeg struct {
	// choice is the line the SBC accepted from side i's last offer, to be
	// answered (tag, suite) and installed as side i's remote key.
	choice [2]*cryptoLine
	// offerProto is the transport of side i's last offer, which the answer
	// to it repeats (RFC 3264 section 6; RTP/AVP with a=crypto is
	// best-effort SRTP).
	offerProto [2][]string
	// offered are the lines of the SBC's last offer toward side i, which
	// its answer must pick from.
	offered [2][]cryptoLine
	// agreed is the suite side i used in its last answered negotiation,
	// which the SBC's offers toward it list first.
	agreed [2]secAgreed
}

// String and GoString keep the keys out of formatted output.
func (sec *streamSec) String() string   { return "SDES keys <redacted>" }
func (sec *streamSec) GoString() string { return sec.String() }

func newStreamSec() *streamSec {
	sec := new(streamSec)
	for side := range sec.ours {
		for id := range numSuites {
			sec.ours[side][id] = newSRTPKey(id)
		}
	}
	return sec
}

// terminates reports whether the stream decrypts or encrypts.
func (st *stream) terminates() bool { return st.sec != nil }

// keyUpdate is a context to publish on a leg when the negotiation commits.
type keyUpdate struct {
	st     *stream
	side   Side
	remote bool // remote (decrypt) context, else local (encrypt)
	ctx    *cryptoCtx
	onlyIf bool // publish only if the leg has no context yet (early media)
}

// secPlan collects the SRTP changes of one offer or answer; nothing is
// published before commit.
type secPlan struct {
	updates []keyUpdate
	choices []func()
}

// install plans publishing k as side's remote or local key of st, unless
// the published context already has that key (a re-INVITE repeating the
// keys keeps the contexts, their rollover counters and replay windows).
func (p *secPlan) install(st *stream, side Side, remote bool, k srtpKey, onlyIfNone bool) error {
	cur := st.legs[side].local.Load()
	if remote {
		cur = st.legs[side].remote.Load()
	}
	if cur != nil && (onlyIfNone || cur.key.equal(k)) {
		return nil
	}
	c, err := newCryptoCtx(k, remote)
	if err != nil {
		return err
	}
	if cur != nil {
		c.succeed(cur, remote)
	}
	p.updates = append(p.updates, keyUpdate{st: st, side: side, remote: remote, ctx: c, onlyIf: onlyIfNone})
	return nil
}

// commit publishes the planned contexts; the readers pick them up at their
// next batch. Caller holds opMu.
func (p *secPlan) commit() {
	for _, f := range p.choices {
		f()
	}
	for _, u := range p.updates {
		ptr := &u.st.legs[u.side].local
		if u.remote {
			ptr = &u.st.legs[u.side].remote
		}
		if u.onlyIf {
			ptr.CompareAndSwap(nil, u.ctx)
			continue
		}
		if old := ptr.Swap(u.ctx); old != nil {
			old.detach()
		}
	}
}

// checkSec refuses an SDP from side from that a terminate-mode leg cannot
// use: an active RTP m-line without a supported a=crypto line (an answer
// must also accept one of the SBC's offered lines).
func (s *Session) checkSec(from Side, sd *sdp.SessionDescription, answer bool) error {
	if !s.term || s.modes[from] != SRTPTerminate {
		return nil
	}
	for i, md := range sd.MediaDescriptions {
		if md.MediaName.Port.Value == 0 || !carriesRTP(md) {
			continue
		}
		if answer && (i >= len(s.streams) || s.streams[i] == nil || !s.streams[i].terminates()) {
			continue
		}
		lines := cryptoLines(md)
		if answer {
			if _, ok := matchAnswer(lines, s.streams[i].sec.neg.offered[from]); !ok {
				return fmt.Errorf("%w: m-line %d (%s): answer accepts none of the offered SRTP crypto suites",
					ErrNotAcceptable, i, md.MediaName.Media)
			}
			continue
		}
		if len(lines) == 0 {
			return fmt.Errorf("%w: m-line %d (%s): no supported SRTP crypto suite (SDES) in %s",
				ErrNotAcceptable, i, md.MediaName.Media, proto(md))
		}
	}
	return nil
}

// secOffer rewrites the crypto of m-line md of an offer from side from
// toward the other side and plans the keys. Caller holds opMu; checkSec
// passed.
func (s *Session) secOffer(p *secPlan, from Side, md *sdp.MediaDescription, st *stream) error {
	to := from.Other()
	sec := st.sec
	var choice *cryptoLine
	offerProto := slices.Clone(md.MediaName.Protos)
	if s.modes[from] == SRTPTerminate {
		lines := cryptoLines(md)
		if len(lines) == 0 {
			return fmt.Errorf("%w: m-line %d: no supported SRTP crypto suite", ErrNotAcceptable, st.index)
		}
		c := lines[0] // the peer's first supported suite
		choice = &c
		// An initial key is usable at once (early media); a changed key
		// replaces the old one when the answer goes back (commit of
		// Answer), when the offerer starts using it.
		if err := p.install(st, from, true, c.key, true); err != nil {
			return err
		}
		if err := p.install(st, from, false, sec.ours[from][c.key.suite], true); err != nil {
			return err
		}
	}
	var offered []cryptoLine
	if s.modes[to] == SRTPTerminate {
		offered = ourOffer(&sec.ours[to], sec.neg.agreed[to])
		setProfile(md, true)
		setCrypto(md, offered)
	} else {
		setProfile(md, false)
		setCrypto(md, nil)
	}
	p.choices = append(p.choices, func() {
		sec.neg.choice[from] = choice
		sec.neg.offerProto[from] = offerProto
		sec.neg.offered[to] = offered
	})
	return nil
}

// secAnswer rewrites the crypto of m-line md of an answer from side from
// toward the offerer and plans the keys of both sides. Caller holds opMu;
// checkSec passed.
func (s *Session) secAnswer(p *secPlan, from Side, md *sdp.MediaDescription, st *stream) error {
	to := from.Other()
	sec := st.sec
	if s.modes[from] == SRTPTerminate {
		c, ok := matchAnswer(cryptoLines(md), sec.neg.offered[from])
		if !ok {
			return fmt.Errorf("%w: m-line %d: answer accepts none of the offered SRTP crypto suites", ErrNotAcceptable, st.index)
		}
		if err := p.install(st, from, true, c.key, false); err != nil {
			return err
		}
		if err := p.install(st, from, false, sec.ours[from][c.key.suite], false); err != nil {
			return err
		}
		p.choices = append(p.choices, func() { sec.neg.agreed[from] = secAgreed{suite: c.key.suite, ok: true} })
	}
	if s.modes[to] != SRTPTerminate {
		setProfile(md, false)
		setCrypto(md, nil)
		return nil
	}
	choice := sec.neg.choice[to]
	if choice == nil {
		return fmt.Errorf("%w: m-line %d: no SRTP crypto from the offer to answer", ErrBadSDP, st.index)
	}
	p.choices = append(p.choices, func() { sec.neg.agreed[to] = secAgreed{suite: choice.key.suite, ok: true} })
	if err := p.install(st, to, true, choice.key, false); err != nil {
		return err
	}
	ours := sec.ours[to][choice.key.suite]
	if err := p.install(st, to, false, ours, false); err != nil {
		return err
	}
	answerProfile(md, sec.neg.offerProto[to])
	setCrypto(md, []cryptoLine{{tag: choice.tag, key: ours}})
	return nil
}
