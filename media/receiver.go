package media

import "time"

// Receiver accounts the RTP packets an endpoint receives exactly as the
// relay accounts a direction: packets, bytes, RFC 3550 loss from sequence
// numbers (per SSRC) and interarrival jitter. It is for endpoints outside
// the relay, such as `edge-sbc call`. A Receiver is not safe for concurrent
// use.
type Receiver struct {
	l      localStats
	clocks clockTable
}

// NewReceiver returns a Receiver for a stream whose payload types all use
// clock (Hz; 8000 for PCMU), except telephoneEvent (its timestamps do not
// advance per packet; negative: none), which is left out of the jitter.
func NewReceiver(clock uint32, telephoneEvent int) *Receiver {
	r := &Receiver{}
	for pt := range r.clocks {
		r.clocks[pt] = clock
	}
	if telephoneEvent >= 0 && telephoneEvent < len(r.clocks) {
		r.clocks[telephoneEvent] = 0
	}
	return r
}

// RTP accounts one received RTP packet (its header in clear: decrypted, or
// SRTP, whose header is not encrypted) that arrived at since, the time
// since any fixed origin.
func (r *Receiver) RTP(p []byte, since time.Duration) {
	r.l.account(p, false, &r.clocks, uint64(since.Microseconds()))
}

// RTCP accounts one received RTCP packet.
func (r *Receiver) RTCP(p []byte) {
	r.l.account(p, true, nil, 0)
}

// Stats returns the statistics so far, as the relay reports a direction
// (MOS and R are not filled in: see Estimate).
func (r *Receiver) Stats() DirectionStats {
	var s sockStats
	r.l.publish(&s)
	var d DirectionStats
	s.addTo(&d)
	return d
}

// HighestSeq returns the extended highest sequence number received from
// ssrc (RFC 3550 A.1) and whether ssrc was seen, for RTCP reception
// reports.
func (r *Receiver) HighestSeq(ssrc uint32) (uint32, bool) {
	t := &r.l.seq
	if t.srcs == nil {
		return 0, false
	}
	for i := range t.srcs[:t.n] {
		if s := &t.srcs[i]; s.ssrc == ssrc && s.received > 0 {
			return uint32(s.cycles) + uint32(s.maxSeq), true
		}
	}
	return 0, false
}
