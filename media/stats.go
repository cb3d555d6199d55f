package media

import (
	"net/netip"
	"sync/atomic"
)

// Webex quality thresholds used by Degraded.
const (
	// JitterThresholdMs is the interarrival jitter above which a direction
	// is degraded.
	JitterThresholdMs = 30.0
	// LossThresholdPercent is the packet loss above which a direction is
	// degraded.
	LossThresholdPercent = 1.0
)

// Drops counts packets that were received but not forwarded, by reason.
type Drops struct {
	// Stranger: source is not the one accepted: not the SDP-signalled
	// address:port in strict mode, not the learned source (and no NAT
	// rebind candidate) with endpoint learning.
	Stranger uint64
	// NoDestination: the other side's address is not known yet (no SDP
	// from it and no packet latched).
	NoDestination uint64
	// Oversize: the datagram did not fit the relay buffer (truncated).
	Oversize uint64
	// SendError: the kernel refused to send the packet.
	SendError uint64
	// Auth (SRTP termination): the packet failed SRTP/SRTCP
	// authentication, or was not a valid (S)RTP/(S)RTCP packet to
	// unprotect or protect.
	Auth uint64
	// Replay (SRTP termination): the packet was already received, or is
	// older than the replay window.
	Replay uint64
	// NoKey (SRTP termination): the key of the sending or receiving leg is
	// not negotiated yet (offer/answer in progress).
	NoKey uint64
	// RebindPending (endpoint learning): from a new source carrying the
	// stream's SSRC, i.e. maybe the learned source after a NAT rebind, but
	// not proven yet (the learned source is not silent long enough, or too
	// few packets with continuous sequence numbers came).
	RebindPending uint64
}

// Total returns the sum of all drop reasons.
func (d Drops) Total() uint64 {
	return d.Stranger + d.NoDestination + d.Oversize + d.SendError + d.Auth + d.Replay + d.NoKey +
		d.RebindPending
}

// DirectionStats describes the packets received from one side of a stream
// (and forwarded to the other side).
type DirectionStats struct {
	// Packets and Bytes count accepted RTP packets (every accepted packet
	// for non-RTP streams such as BFCP). Bytes are UDP payload bytes.
	Packets uint64
	Bytes   uint64
	// RTCPPackets and RTCPBytes count accepted RTCP packets, both on the
	// RTCP port and muxed on the RTP port.
	RTCPPackets uint64
	RTCPBytes   uint64
	// Expected is the number of RTP packets expected from the sequence
	// numbers (RFC 3550 A.3), Lost the number missing (never negative).
	Expected uint64
	Lost     uint64
	// OutOfOrder counts RTP packets older than the highest sequence seen
	// (reordered or duplicated).
	OutOfOrder uint64
	// JitterMs is the current RFC 3550 A.8 interarrival jitter, in
	// milliseconds, using the payload type's clock rate from SDP.
	// MaxJitterMs is its maximum over the stream's life.
	JitterMs    float64
	MaxJitterMs float64
	// Drops counts packets not forwarded, by reason.
	Drops Drops
	// KernelPackets is how many of Packets and RTCPPackets the kernel fast
	// path forwarded (their loss and jitter are counted in the kernel).
	KernelPackets uint64 `json:",omitempty"`
	// R and MOS are the E-model estimate of a voice direction (see
	// Estimate; 0: not scored, i.e. not audio or no packet yet).
	R   float64 `json:",omitempty"`
	MOS float64 `json:",omitempty"`
}

// LossPercent returns Lost/Expected in percent (0 when nothing expected).
func (d DirectionStats) LossPercent() float64 {
	if d.Expected == 0 {
		return 0
	}
	return float64(d.Lost) * 100 / float64(d.Expected)
}

// Degraded reports whether this direction exceeds the Webex thresholds:
// jitter above 30 ms, loss above 1 % or a MOS (when scored) below 4.0.
func (d DirectionStats) Degraded() bool {
	return d.JitterMs > JitterThresholdMs || d.LossPercent() > LossThresholdPercent ||
		(d.MOS > 0 && d.MOS < MOSThreshold)
}

// DegradedReasons names each Webex threshold the direction exceeds
// ("jitter", "loss", "mos"); nil when none.
func (d DirectionStats) DegradedReasons() []string {
	var r []string
	if d.JitterMs > JitterThresholdMs {
		r = append(r, "jitter")
	}
	if d.LossPercent() > LossThresholdPercent {
		r = append(r, "loss")
	}
	if d.MOS > 0 && d.MOS < MOSThreshold {
		r = append(r, "mos")
	}
	return r
}

// StreamStats describes one m= stream of a session.
type StreamStats struct {
	// Index is the m-line index in the SDP.
	Index int
	// Media is the m= media type: "audio", "video", "application".
	Media string
	// Content is the a=content value ("slides", "main"), if any.
	Content string
	// PortA and PortB are the SBC's RTP ports facing side A and side B.
	PortA, PortB int
	// RemoteA and RemoteB are where the relay sends side A's and side B's
	// RTP: the address:port of the side's SDP, or the source learned from
	// its packets (invalid until known).
	RemoteA, RemoteB netip.AddrPort
	// Codec is the voice codec of an audio stream (the first of the last
	// SDP's formats, see Estimate), "" otherwise.
	Codec string `json:",omitempty"`
	// FromA describes packets received from side A (forwarded to B),
	// FromB those received from side B (forwarded to A).
	FromA, FromB DirectionStats
	// Kernel is true when the stream ran in the kernel fast path for some
	// time (FromA.KernelPackets and FromB.KernelPackets say how much).
	Kernel bool `json:",omitempty"`
}

// Degraded reports whether either direction exceeds the Webex thresholds
// (jitter > 30 ms, loss > 1 % or MOS < 4.0).
func (s StreamStats) Degraded() bool {
	return s.FromA.Degraded() || s.FromB.Degraded()
}

// sockStats are the published counters of one socket reader.
//
// Concurrency rule: every sockStats has exactly one writer, the reader
// goroutine of its socket, which publishes its private state with atomic
// stores once per received batch. Any goroutine may read with atomic loads
// (Session.Stats, the watchdog); a snapshot may mix two batches, which is
// harmless for monitoring. After the reader goroutine ended (Session.Close
// waits for it) the values are final.
type sockStats struct {
	packets     atomic.Uint64
	bytes       atomic.Uint64
	rtcpPackets atomic.Uint64
	rtcpBytes   atomic.Uint64
	expected    atomic.Uint64
	lost        atomic.Uint64
	outOfOrder  atomic.Uint64
	jitterUs    atomic.Uint64
	maxJitterUs atomic.Uint64
	stranger    atomic.Uint64
	noDest      atomic.Uint64
	oversize    atomic.Uint64
	sendErr     atomic.Uint64
	auth        atomic.Uint64
	replay      atomic.Uint64
	noKey       atomic.Uint64
	rebind      atomic.Uint64
}

// addTo adds the published counters into d. Jitter is taken as the
// maximum of the sockets of a direction (only the RTP socket has any).
func (s *sockStats) addTo(d *DirectionStats) {
	d.Packets += s.packets.Load()
	d.Bytes += s.bytes.Load()
	d.RTCPPackets += s.rtcpPackets.Load()
	d.RTCPBytes += s.rtcpBytes.Load()
	d.Expected += s.expected.Load()
	d.Lost += s.lost.Load()
	d.OutOfOrder += s.outOfOrder.Load()
	if j := float64(s.jitterUs.Load()) / 1000; j > d.JitterMs {
		d.JitterMs = j
	}
	if j := float64(s.maxJitterUs.Load()) / 1000; j > d.MaxJitterMs {
		d.MaxJitterMs = j
	}
	d.Drops.Stranger += s.stranger.Load()
	d.Drops.NoDestination += s.noDest.Load()
	d.Drops.Oversize += s.oversize.Load()
	d.Drops.SendError += s.sendErr.Load()
	d.Drops.Auth += s.auth.Load()
	d.Drops.Replay += s.replay.Load()
	d.Drops.NoKey += s.noKey.Load()
	d.Drops.RebindPending += s.rebind.Load()
}

// activity returns a counter that grows whenever a packet is accepted;
// the watchdog compares it between scans.
func (s *sockStats) activity() uint64 {
	return s.packets.Load() + s.rtcpPackets.Load()
}

// localStats is the private, non-atomic state of one socket reader. Only
// the reader goroutine touches it; publish copies it into sockStats.
type localStats struct {
	packets, bytes         uint64
	rtcpPackets, rtcpBytes uint64
	stranger, noDest       uint64
	oversize, sendErr      uint64
	auth, replay, noKey    uint64
	rebindPending          uint64
	maxJitterUs            uint64
	seq                    seqTracker
}

func (l *localStats) publish(s *sockStats) {
	s.packets.Store(l.packets)
	s.bytes.Store(l.bytes)
	s.rtcpPackets.Store(l.rtcpPackets)
	s.rtcpBytes.Store(l.rtcpBytes)
	exp, lost := l.seq.expectedLost()
	s.expected.Store(exp)
	s.lost.Store(lost)
	s.outOfOrder.Store(l.seq.outOfOrder)
	j := l.seq.jitterUs()
	if j > l.maxJitterUs {
		l.maxJitterUs = j
	}
	s.jitterUs.Store(j)
	s.maxJitterUs.Store(l.maxJitterUs)
	s.stranger.Store(l.stranger)
	s.noDest.Store(l.noDest)
	s.oversize.Store(l.oversize)
	s.sendErr.Store(l.sendErr)
	s.auth.Store(l.auth)
	s.replay.Store(l.replay)
	s.noKey.Store(l.noKey)
	s.rebind.Store(l.rebindPending)
}

// RFC 3550 A.1 constants.
const (
	maxDropout  = 3000
	maxMisorder = 100
	seqMod      = 1 << 16
)

// maxSSRCs is how many SSRCs of one direction get their own sequence and
// jitter state (a main stream plus RTX, FEC or a few simulcast layers).
const maxSSRCs = 4

// ssrcIdleUs: the jitter of an SSRC not heard for this long (µs) is no
// longer reported.
const ssrcIdleUs = 5_000_000

// seqTracker follows RTP sequence numbers (RFC 3550 A.1, without the
// probation phase) and interarrival jitter (A.8) of one direction, per SSRC
// for up to maxSSRCs SSRCs (a small fixed array: nothing is allocated per
// packet). Beyond that, the least recently seen SSRC is replaced; the counts
// of replaced SSRCs and of restarted runs stay in the totals. Expected and
// lost are summed over the SSRCs; the jitter reported is the largest of the
// SSRCs heard in the last ssrcIdleUs.
//
// The array is allocated with the first packet, once per reader: kept
// inline, it would double the stack of every reader goroutine (4 instead
// of 2 KB, TestFootprint), RTCP readers included.
type seqTracker struct {
	srcs   *[maxSSRCs]ssrcSeq
	n      int    // srcs[:n] are in use
	cur    int    // index of the SSRC of the last packet
	tick   uint64 // packets seen: the recency of srcs
	lastUs uint64 // arrival of the last packet

	prevExpected, prevLost uint64 // folded from replaced SSRCs and restarted runs
	outOfOrder             uint64
}

// ssrcSeq is the sequence and jitter state of one SSRC.
type ssrcSeq struct {
	ssrc     uint32
	lastTick uint64
	lastUs   uint64
	maxSeq   uint16
	cycles   uint64 // shifted count of seq number cycles
	baseSeq  uint64
	badSeq   uint32 // seqMod+1 when none
	received uint64 // packets of the current sequence run
	rerun    bool   // the next packet starts a new run (packets went through the kernel)

	clock       uint32 // clock rate of the last packet's payload type
	haveTransit bool
	transit     uint32 // arrival - timestamp, in clock units, mod 2^32
	jitter      uint64 // RFC 3550 scaled jitter (x16), in clock units
}

// update accounts one RTP packet with sequence seq, timestamp ts, SSRC
// ssrc, arriving at arrivalUs microseconds (any fixed origin) with a
// payload type of clock rate clock (0: skip jitter, e.g. telephone-event).
func (t *seqTracker) update(seq uint16, ts, ssrc uint32, arrivalUs uint64, clock uint32) {
	t.tick++
	t.lastUs = arrivalUs
	src, fresh := t.source(ssrc)
	src.lastTick, src.lastUs = t.tick, arrivalUs
	if fresh || src.rerun {
		src.rerun = false
		t.restart(src, seq)
	} else {
		udelta := seq - src.maxSeq
		switch {
		case udelta == 0:
			t.outOfOrder++ // duplicate
		case udelta < maxDropout:
			if seq < src.maxSeq {
				src.cycles += seqMod
			}
			src.maxSeq = seq
		case int(udelta) <= seqMod-maxMisorder:
			// A very large jump: accept it only if the next packet
			// follows it (the source restarted its sequence).
			if uint32(seq) == src.badSeq {
				t.restart(src, seq)
			} else {
				src.badSeq = (uint32(seq) + 1) & (seqMod - 1)
				return
			}
		default:
			t.outOfOrder++ // reordered
		}
	}
	src.received++

	if clock == 0 {
		return
	}
	if clock != src.clock {
		src.clock = clock
		src.haveTransit = false
		src.jitter = 0
	}
	arrival := uint32(arrivalUs * uint64(clock) / 1e6)
	transit := arrival - ts
	if src.haveTransit {
		d := int32(transit - src.transit)
		if d < 0 {
			d = -d
		}
		// J += |D| - J/16, with J scaled by 16 (RFC 3550 A.8).
		src.jitter += uint64(d) - ((src.jitter + 8) >> 4)
	}
	src.transit = transit
	src.haveTransit = true
}

// source returns the state of ssrc, and whether it is new: a free slot, or
// the least recently seen SSRC's, whose counts are folded into the totals.
func (t *seqTracker) source(ssrc uint32) (*ssrcSeq, bool) {
	if t.srcs == nil {
		t.srcs = new([maxSSRCs]ssrcSeq)
	}
	if t.n > 0 && t.srcs[t.cur].ssrc == ssrc {
		return &t.srcs[t.cur], false
	}
	for i := range t.srcs[:t.n] {
		if t.srcs[i].ssrc == ssrc {
			t.cur = i
			return &t.srcs[i], false
		}
	}
	i := t.n
	if t.n < maxSSRCs {
		t.n++
	} else {
		i = 0
		for j := range t.srcs {
			if t.srcs[j].lastTick < t.srcs[i].lastTick {
				i = j
			}
		}
		t.fold(&t.srcs[i])
	}
	t.srcs[i] = ssrcSeq{ssrc: ssrc}
	t.cur = i
	return &t.srcs[i], true
}

// rerun makes the next packet of every SSRC start a new run: the packets in
// between were forwarded, and counted, by the kernel fast path.
func (t *seqTracker) rerun() {
	if t.srcs == nil {
		return
	}
	for i := range t.srcs[:t.n] {
		t.srcs[i].rerun = true
	}
}

// fold adds the current run of src to the totals.
func (t *seqTracker) fold(src *ssrcSeq) {
	e, l := src.runExpectedLost()
	t.prevExpected += e
	t.prevLost += l
}

// restart begins a new sequence run of src at seq, folding the previous
// run (if any) into the totals.
func (t *seqTracker) restart(src *ssrcSeq, seq uint16) {
	t.fold(src)
	src.maxSeq = seq
	src.baseSeq = uint64(seq)
	src.cycles = 0
	src.badSeq = seqMod + 1
	src.received = 0
}

// runExpectedLost returns the expected and lost packets of the current
// run (0, 0 before its first packet).
func (s *ssrcSeq) runExpectedLost() (expected, lost uint64) {
	if s.received == 0 {
		return 0, 0
	}
	expected = s.cycles + uint64(s.maxSeq) - s.baseSeq + 1
	if expected > s.received {
		lost = expected - s.received
	}
	return expected, lost
}

// expectedLost returns the cumulative expected and lost packet counts, over
// all SSRCs.
func (t *seqTracker) expectedLost() (expected, lost uint64) {
	expected, lost = t.prevExpected, t.prevLost
	if t.srcs == nil {
		return expected, lost
	}
	for i := range t.srcs[:t.n] {
		e, l := t.srcs[i].runExpectedLost()
		expected += e
		lost += l
	}
	return expected, lost
}

// jitterUs returns the current jitter in microseconds: the largest of the
// SSRCs heard in the last ssrcIdleUs.
func (t *seqTracker) jitterUs() uint64 {
	var j uint64
	if t.srcs == nil {
		return 0
	}
	for i := range t.srcs[:t.n] {
		src := &t.srcs[i]
		if src.clock == 0 || t.lastUs-src.lastUs > ssrcIdleUs {
			continue
		}
		j = max(j, src.jitter*1e6/(16*uint64(src.clock)))
	}
	return j
}
