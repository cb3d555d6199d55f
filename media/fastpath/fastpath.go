package fastpath

import (
	"errors"
	"net/netip"
)

// ErrUnsupported is returned by Load where the fast path cannot exist (not
// Linux, or a bind address it cannot serve).
var ErrUnsupported = errors.New("fastpath: unsupported")

// Kind is what a flow carries, which decides how its datagrams are counted.
type Kind uint8

const (
	// KindRaw is a stream that does not carry RTP (BFCP): every datagram
	// counts as a packet.
	KindRaw Kind = iota
	// KindRTP is the RTP port of an RTP stream: RTP of Flow.SSRC is
	// forwarded and its sequence numbers and jitter tracked; muxed RTCP is
	// forwarded and counted apart; RTP of other SSRCs and non-RTP
	// datagrams go to the relay's socket.
	KindRTP
	// KindRTCP is the RTCP port of a stream without rtcp-mux.
	KindRTCP
)

// Flow is one direction of one relay port moved into the kernel: datagrams
// from Src to the relay's port Port leave from From toward To.
type Flow struct {
	// Src is the learned source of the side sending (IPv4).
	Src netip.AddrPort
	// Port is the relay port Src sends to.
	Port uint16
	// From is the relay's address and port facing the other side; an
	// unspecified address means the source address the kernel's routing
	// picks toward To (as a socket bound to 0.0.0.0 gets).
	From netip.AddrPort
	// To is the other side's learned address and port (IPv4).
	To netip.AddrPort
	// Kind says how datagrams are counted and which are forwarded.
	Kind Kind
	// SSRC (KindRTP) is the only SSRC forwarded in the kernel.
	SSRC uint32
	// PT and Clock (KindRTP): the payload type whose jitter is tracked and
	// its clock rate (0: no jitter).
	PT    uint8
	Clock uint32
	// TOS is the IP TOS byte set on forwarded datagrams (DSCP << 2), as
	// the relay's socket sets IP_TOS.
	TOS uint8
}

// Key identifies a flow's entry.
type Key struct {
	src  netip.AddrPort
	port uint16
}

// Key returns the key of f's entry.
func (f Flow) Key() Key { return Key{src: f.Src, port: f.Port} }

// Counters are what the program counted for one flow since it was added,
// with the conventions of the relay's statistics: Bytes are UDP payload
// bytes, RTCP (muxed or on an RTCP port) apart, Expected and Lost as in
// RFC 3550 A.3 over the sequence runs of the flow's SSRC.
type Counters struct {
	Packets, Bytes         uint64
	RTCPPackets, RTCPBytes uint64
	Expected, Lost         uint64
	OutOfOrder             uint64
	// JitterUs is the RFC 3550 A.8 jitter of the last packet, MaxJitterUs
	// its maximum, in microseconds (0 without a clock rate).
	JitterUs, MaxJitterUs uint64
	// LastNs is the CLOCK_MONOTONIC time of the last packet, in
	// nanoseconds (0: none yet); see Program.Now.
	LastNs uint64
}

// Add folds c into d (counts add up, the jitter is the last one's, the
// maximum jitter and last time the largest).
func (d *Counters) Add(c Counters) {
	d.Packets += c.Packets
	d.Bytes += c.Bytes
	d.RTCPPackets += c.RTCPPackets
	d.RTCPBytes += c.RTCPBytes
	d.Expected += c.Expected
	d.Lost += c.Lost
	d.OutOfOrder += c.OutOfOrder
	if c.LastNs >= d.LastNs {
		d.JitterUs = c.JitterUs
		d.LastNs = c.LastNs
	}
	d.MaxJitterUs = max(d.MaxJitterUs, c.MaxJitterUs)
}
