package media

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// LearningMode selects how the relay learns where each side sends from,
// i.e. where the packets toward that side go (see doc.go, Endpoint
// learning).
type LearningMode uint8

const (
	// LearningHeuristic (the zero value, the default) learns a side's
	// source from its first packets in a window after its SDP, preferring
	// the signalled address, then locks it. Another source takes over only
	// as a proven NAT rebind.
	LearningHeuristic LearningMode = iota
	// LearningStrict accepts only packets from the address:port signalled
	// in SDP and learns nothing, like Config.StrictSource.
	LearningStrict
	// LearningOff latches to the source of any packet from a new address,
	// at once: anyone who guesses a relay port can take a stream over.
	LearningOff
)

// Names of the learning modes, as in configuration files.
const (
	learningHeuristicName = "heuristic"
	learningStrictName    = "strict"
	learningOffName       = "off"
)

// String returns "heuristic", "strict" or "off".
func (m LearningMode) String() string {
	switch m {
	case LearningHeuristic:
		return learningHeuristicName
	case LearningStrict:
		return learningStrictName
	case LearningOff:
		return learningOffName
	}
	return fmt.Sprintf("LearningMode(%d)", uint8(m))
}

// ParseLearningMode parses "heuristic", "strict" or "off" (the empty string
// is the default, heuristic). Errors wrap ErrBadLearningMode.
func ParseLearningMode(s string) (LearningMode, error) {
	switch s {
	case "", learningHeuristicName:
		return LearningHeuristic, nil
	case learningStrictName:
		return LearningStrict, nil
	case learningOffName:
		return LearningOff, nil
	}
	return 0, fmt.Errorf("%w: %q (heuristic, strict or off)", ErrBadLearningMode, s)
}

// Defaults of the endpoint learning (Config.LearnWindow,
// Config.RebindSilence) and its fixed parameters.
const (
	DefaultLearnWindow   = 3 * time.Second
	DefaultRebindSilence = 2 * time.Second

	// rebindPackets is how many RTP packets with the stream's SSRC and
	// continuous sequence numbers a new source must send to prove a NAT
	// rebind. On an RTCP port, which has no sequence numbers, one packet
	// with the SSRC does (RTCP comes every few seconds).
	rebindPackets = 3
	// rebindMaxSeqStep is the largest sequence number step between two
	// packets of a rebind candidate still counted as continuous (a few
	// packets lost on the way).
	rebindMaxSeqStep = 8
)

// verdict is the learner's decision about one packet.
type verdict uint8

const (
	verdictAccept   verdict = iota // from the learned source: relay it
	verdictLatch                   // a new source is learned: relay it and send to that source
	verdictStranger                // drop: not the learned source (Drops.Stranger)
	verdictUnproven                // drop: may be a NAT rebind, not proven yet (Drops.RebindPending)
)

// Ranks of a source against the address signalled in SDP: during a
// learning window a source of a higher rank replaces the one learned.
const (
	rankNone      uint8 = iota // nothing learned since the signalling
	rankOther                  // another address
	rankSameIP                 // the signalled IP, another port (a NAT keeping the address)
	rankSignalled              // exactly the signalled address:port
)

// learner decides, for one relay socket, which source the side facing it
// sends from. It is the private state of the socket's reader goroutine
// (not safe for concurrent use) and allocates nothing.
//
// The signalling tells it about a new SDP of either side through the
// stream's sigGen counter (bumped by setRemote); the signalled endpoint is
// the one of the side it faces. Each new SDP starts learning anew (the
// destination is kept, unless setRemote changed it to a new signalled
// address) and opens a learning window of Config.LearnWindow: the first
// packet latches its source, a source of a higher rank (see rankOf)
// replaces it, and a packet from exactly the signalled address:port locks
// at once. The window closes when it expires with a source learned; if
// nothing arrived, it starts again at the first packet. An SDP of the other
// side counts too: the answer restarts the offerer's learning when its
// media starts, so a stranger learned while the call was ringing does not
// stay.
//
// Once locked, another source takes over only if it is exactly the
// signalled address:port (which the SDP vouches for: a forged source
// there only sends the media to the signalled peer), or as a NAT rebind:
// the learned source has been silent for Config.RebindSilence, and the new
// one sends rebindPackets RTP packets with the SSRC last seen from the
// learned source and continuous sequence numbers (on an RTCP port, one
// RTCP packet with that SSRC). Streams that do not carry RTP have no SSRC:
// their source changes only with a new SDP.
type learner struct {
	window, silence uint64 // µs, from the engine's Config
	isRTP           bool   // the stream carries RTP: SSRCs can be read
	rtcpPort        bool   // the socket is an RTCP port

	gen      uint64    // stream's sigGen last seen
	sig      *endpoint // signalled endpoint when gen was seen (nil: no SDP yet)
	learning bool      // the window is open
	until    uint64    // end of the window (µs since the engine epoch)
	rank     uint8     // rank of the learned source
	last     uint64    // arrival of the last packet from the learned source
	ssrc     uint32    // SSRC last seen from the learned source
	hasSSRC  bool
	pt       uint8 // payload type of its last RTP packet (kernel fast path)

	cand    netip.AddrPort // rebind candidate
	candN   int            // its packets counted so far
	candSeq uint16         // its last RTP sequence number
}

func newLearner(c *Config, isRTP, rtcpPort bool) learner {
	return learner{
		window:   uint64(c.LearnWindow / time.Microsecond),
		silence:  uint64(c.RebindSilence / time.Microsecond),
		isRTP:    isRTP,
		rtcpPort: rtcpPort,
		learning: true, // until 0: the window starts at the first packet
	}
}

// sync takes a new SDP into account (once per batch): gen is the stream's
// sigGen, sig the endpoint signalled by the side, now the batch's time.
func (l *learner) sync(gen uint64, sig *endpoint, now uint64) {
	if gen == l.gen {
		return
	}
	l.gen, l.sig = gen, sig
	l.rank = rankNone
	l.hasSSRC = false
	l.learning = true
	l.until = now + l.window
	l.cand, l.candN = netip.AddrPort{}, 0
}

// admit decides about packet p (RTCP if isRTCP) from src; cur is where
// packets to the side go now (the learned or signalled endpoint, or nil).
func (l *learner) admit(src netip.AddrPort, cur *endpoint, p []byte, isRTCP bool, now uint64) verdict {
	if l.learning && now >= l.until {
		if l.rank == rankNone {
			l.until = now + l.window // nothing learned: the window starts now
		} else {
			l.learning = false
		}
	}
	if l.rank != rankNone && cur != nil && cur.ap == src {
		l.heard(p, isRTCP, now)
		return verdictAccept
	}
	if r := l.rankOf(src); r > l.rank && (l.learning || r == rankSignalled) {
		l.rank = r
		if r == rankSignalled {
			l.learning = false // nothing better can come
		}
		l.hasSSRC = false
		l.cand, l.candN = netip.AddrPort{}, 0
		l.heard(p, isRTCP, now)
		if cur != nil && cur.ap == src {
			return verdictAccept // already the destination
		}
		return verdictLatch
	}
	return l.rebind(src, p, isRTCP, now)
}

// rankOf ranks src against the signalled address.
func (l *learner) rankOf(src netip.AddrPort) uint8 {
	switch {
	case l.sig == nil:
		return rankOther
	case l.sig.ap == src:
		return rankSignalled
	case l.sig.ap.Addr() == src.Addr():
		return rankSameIP
	}
	return rankOther
}

// heard records a packet from the learned source: its time and, for RTP
// on an RTP port or RTCP on an RTCP port, its SSRC.
func (l *learner) heard(p []byte, isRTCP bool, now uint64) {
	l.last = now
	if isRTCP != l.rtcpPort {
		return
	}
	if ssrc, ok := l.ssrcOf(p, isRTCP); ok {
		l.ssrc, l.hasSSRC = ssrc, true
		if !isRTCP {
			l.pt = p[1] & 0x7f
		}
	}
}

// locked reports whether the learned source is locked: learned, and the
// learning window closed (what the kernel fast path waits for).
func (l *learner) locked() bool { return !l.learning && l.rank != rankNone }

// candidate reports whether p, from a source other than the learned one,
// carries the learned source's SSRC: a NAT rebind candidate.
func (l *learner) candidate(p []byte, isRTCP bool) bool {
	ssrc, ok := l.ssrcOf(p, isRTCP)
	return ok && l.hasSSRC && ssrc == l.ssrc
}

// heardAt records that the learned source was heard at now (µs since the
// engine epoch) where this reader could not see it: the kernel fast path
// forwarded its packets.
func (l *learner) heardAt(now uint64) { l.last = max(l.last, now) }

// ssrcOf returns the SSRC of an RTP packet, or the sender SSRC of an RTCP
// packet (both are in clear with SRTP).
func (l *learner) ssrcOf(p []byte, isRTCP bool) (uint32, bool) {
	if !l.isRTP || len(p) < 8 || p[0]>>6 != 2 {
		return 0, false
	}
	if isRTCP {
		if p[1] < 192 || p[1] > 223 {
			return 0, false
		}
		return binary.BigEndian.Uint32(p[4:8]), true
	}
	if len(p) < 12 {
		return 0, false
	}
	return binary.BigEndian.Uint32(p[8:12]), true
}

// rebind decides about a packet from a source other than the learned one
// (see learner).
func (l *learner) rebind(src netip.AddrPort, p []byte, isRTCP bool, now uint64) verdict {
	ssrc, ok := l.ssrcOf(p, isRTCP)
	if !ok || !l.hasSSRC || ssrc != l.ssrc {
		return verdictStranger
	}
	if src != l.cand {
		l.cand, l.candN = src, 0
	}
	need := rebindPackets
	switch {
	case l.rtcpPort:
		need = 1
		l.candN++
	case isRTCP:
		// Muxed RTCP carries the SSRC but no sequence number: it
		// neither proves nor breaks a rebind.
	default:
		seq := binary.BigEndian.Uint16(p[2:4])
		if d := seq - l.candSeq; l.candN > 0 && d >= 1 && d <= rebindMaxSeqStep {
			l.candN++
		} else {
			l.candN = 1
		}
		l.candSeq = seq
	}
	if l.candN < need || now-l.last < l.silence {
		return verdictUnproven
	}
	l.cand, l.candN = netip.AddrPort{}, 0
	l.last = now
	return verdictLatch
}
