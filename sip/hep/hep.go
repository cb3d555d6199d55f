// Package hep encodes and sends HEP v3 packets (the Homer Encapsulation
// Protocol of sipcapture.org) so that a collector such as Homer shows the
// SIP messages the SBC decrypted.
//
// A HEP v3 packet is "HEP3", a 16-bit total length, then chunks: a 16-bit
// vendor id (0 for the generic chunks used here), a 16-bit chunk type, a
// 16-bit chunk length (header included) and the value. All integers are big
// endian. [AppendPacket] writes the chunks Homer needs: IP family (1), IP
// protocol (2), source and destination address (3/4 for IPv4, 5/6 for
// IPv6) and port (7/8), time in seconds and microseconds (9/10), payload
// type (11), capture agent id (12), auth key (14, when set), correlation id
// (17, when set) and the payload (15). [Decode] reads them back (and skips
// chunks it does not know). Over UDP one datagram carries one packet; over
// TCP packets follow one another, each framed by its length.
//
// [Exporter] queues encoded packets and sends them from one goroutine to a
// collector over UDP or TCP without ever blocking the caller.
package hep

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Chunk types (vendor 0) of HEP v3.
const (
	ChunkIPFamily      = 0x0001
	ChunkIPProtocol    = 0x0002
	ChunkSrcIPv4       = 0x0003
	ChunkDstIPv4       = 0x0004
	ChunkSrcIPv6       = 0x0005
	ChunkDstIPv6       = 0x0006
	ChunkSrcPort       = 0x0007
	ChunkDstPort       = 0x0008
	ChunkTimeSeconds   = 0x0009
	ChunkTimeMicros    = 0x000a
	ChunkProtoType     = 0x000b
	ChunkCaptureID     = 0x000c
	ChunkAuthKey       = 0x000e
	ChunkPayload       = 0x000f
	ChunkCorrelationID = 0x0011
)

// Values of the IP family, IP protocol and payload type chunks.
const (
	FamilyIPv4  = 2
	FamilyIPv6  = 10
	ProtocolTCP = 6
	ProtocolUDP = 17
	TypeSIP     = 1
)

// MaxPacket is the largest HEP v3 packet: its length field has 16 bits.
const MaxPacket = 65535

const headerLen = 6 // "HEP3" + total length; a chunk header is 6 bytes too

var (
	// ErrTooLarge: the packet would exceed MaxPacket.
	ErrTooLarge = errors.New("hep: packet larger than 65535 bytes")
	// ErrAddress: source and destination are not both valid addresses of
	// one family.
	ErrAddress = errors.New("hep: source and destination must be valid addresses of one IP family")
	// ErrShort: b holds less than one whole packet (over TCP: read more).
	ErrShort = errors.New("hep: short packet")
	// ErrMalformed: b is not a HEP v3 packet.
	ErrMalformed = errors.New("hep: malformed packet")
)

// Packet is one captured message.
type Packet struct {
	Time          time.Time // microsecond resolution on the wire
	Src, Dst      netip.AddrPort
	Protocol      uint8 // IP protocol (ProtocolTCP for SIP over TLS)
	ProtoType     uint8 // payload type (TypeSIP)
	NodeID        uint32
	Password      string // auth key; chunk omitted when empty
	CorrelationID string // chunk omitted when empty
	Payload       []byte
}

// Size is the encoded length of p.
func (p *Packet) Size() int {
	ipLen := 4
	if unmap(p.Src).Addr().Is6() {
		ipLen = 16
	}
	n := headerLen +
		2*(headerLen+1) + // family, protocol
		2*(headerLen+ipLen) +
		2*(headerLen+2) + // ports
		2*(headerLen+4) + // time
		(headerLen + 1) + // proto type
		(headerLen + 4) + // capture id
		headerLen + len(p.Payload)
	if p.Password != "" {
		n += headerLen + len(p.Password)
	}
	if p.CorrelationID != "" {
		n += headerLen + len(p.CorrelationID)
	}
	return n
}

// AppendPacket appends the encoding of p to dst. Addresses are unmapped
// (an IPv4-mapped IPv6 address is sent as IPv4).
func AppendPacket(dst []byte, p *Packet) ([]byte, error) {
	src, dstAP := unmap(p.Src), unmap(p.Dst)
	if !src.Addr().IsValid() || !dstAP.Addr().IsValid() || src.Addr().Is4() != dstAP.Addr().Is4() {
		return dst, ErrAddress
	}
	q := *p
	q.Src, q.Dst = src, dstAP
	size := q.Size()
	if size > MaxPacket {
		return dst, ErrTooLarge
	}
	b := dst
	b = append(b, "HEP3"...)
	b = binary.BigEndian.AppendUint16(b, uint16(size))
	family, srcT, dstT := byte(FamilyIPv4), uint16(ChunkSrcIPv4), uint16(ChunkDstIPv4)
	if src.Addr().Is6() {
		family, srcT, dstT = FamilyIPv6, ChunkSrcIPv6, ChunkDstIPv6
	}
	b = chunk(b, ChunkIPFamily, family)
	b = chunk(b, ChunkIPProtocol, q.Protocol)
	b = chunk(b, srcT, src.Addr().AsSlice()...)
	b = chunk(b, dstT, dstAP.Addr().AsSlice()...)
	b = chunk(b, ChunkSrcPort, binary.BigEndian.AppendUint16(nil, src.Port())...)
	b = chunk(b, ChunkDstPort, binary.BigEndian.AppendUint16(nil, dstAP.Port())...)
	sec, usec := q.Time.Unix(), q.Time.Nanosecond()/1000
	b = chunk(b, ChunkTimeSeconds, binary.BigEndian.AppendUint32(nil, uint32(sec))...)
	b = chunk(b, ChunkTimeMicros, binary.BigEndian.AppendUint32(nil, uint32(usec))...)
	b = chunk(b, ChunkProtoType, q.ProtoType)
	b = chunk(b, ChunkCaptureID, binary.BigEndian.AppendUint32(nil, q.NodeID)...)
	if q.Password != "" {
		b = chunkString(b, ChunkAuthKey, q.Password)
	}
	if q.CorrelationID != "" {
		b = chunkString(b, ChunkCorrelationID, q.CorrelationID)
	}
	b = chunk(b, ChunkPayload, q.Payload...)
	if len(b)-len(dst) != size {
		panic(fmt.Sprintf("hep: encoded %d bytes, computed %d", len(b)-len(dst), size))
	}
	return b, nil
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func chunk(b []byte, typ uint16, v ...byte) []byte {
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(headerLen+len(v)))
	return append(b, v...)
}

func chunkString(b []byte, typ uint16, v string) []byte {
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(headerLen+len(v)))
	return append(b, v...)
}

// Decode reads the first HEP v3 packet of b and returns it with the number
// of bytes it took. Chunks of other vendors and unknown types are skipped.
// ErrShort means b ends inside the packet; every other problem is
// ErrMalformed. Payload is a copy.
func Decode(b []byte) (Packet, int, error) {
	var p Packet
	if len(b) < headerLen {
		return p, 0, ErrShort
	}
	if string(b[:4]) != "HEP3" {
		return p, 0, fmt.Errorf("%w: no HEP3 magic", ErrMalformed)
	}
	total := int(binary.BigEndian.Uint16(b[4:]))
	if total < headerLen {
		return p, 0, fmt.Errorf("%w: length %d", ErrMalformed, total)
	}
	if len(b) < total {
		return p, 0, ErrShort
	}
	var (
		family           byte
		src, dst         []byte
		sport, dport     uint16
		sec, usec        uint32
		haveFam, haveSrc bool
	)
	for rest := b[headerLen:total]; len(rest) > 0; {
		if len(rest) < headerLen {
			return p, 0, fmt.Errorf("%w: truncated chunk header", ErrMalformed)
		}
		vendor, typ, n := binary.BigEndian.Uint16(rest), binary.BigEndian.Uint16(rest[2:]), int(binary.BigEndian.Uint16(rest[4:]))
		if n < headerLen || n > len(rest) {
			return p, 0, fmt.Errorf("%w: chunk %#04x length %d", ErrMalformed, typ, n)
		}
		v := rest[headerLen:n]
		rest = rest[n:]
		if vendor != 0 {
			continue
		}
		fixed := func(want int) error {
			if len(v) != want {
				return fmt.Errorf("%w: chunk %#04x has %d bytes, want %d", ErrMalformed, typ, len(v), want)
			}
			return nil
		}
		var err error
		switch typ {
		case ChunkIPFamily:
			if err = fixed(1); err == nil {
				family, haveFam = v[0], true
			}
		case ChunkIPProtocol:
			if err = fixed(1); err == nil {
				p.Protocol = v[0]
			}
		case ChunkSrcIPv4, ChunkSrcIPv6:
			if err = fixed(ipLen(typ)); err == nil {
				src, haveSrc = v, true
			}
		case ChunkDstIPv4, ChunkDstIPv6:
			if err = fixed(ipLen(typ)); err == nil {
				dst = v
			}
		case ChunkSrcPort:
			if err = fixed(2); err == nil {
				sport = binary.BigEndian.Uint16(v)
			}
		case ChunkDstPort:
			if err = fixed(2); err == nil {
				dport = binary.BigEndian.Uint16(v)
			}
		case ChunkTimeSeconds:
			if err = fixed(4); err == nil {
				sec = binary.BigEndian.Uint32(v)
			}
		case ChunkTimeMicros:
			if err = fixed(4); err == nil {
				usec = binary.BigEndian.Uint32(v)
			}
		case ChunkProtoType:
			if err = fixed(1); err == nil {
				p.ProtoType = v[0]
			}
		case ChunkCaptureID:
			if err = fixed(4); err == nil {
				p.NodeID = binary.BigEndian.Uint32(v)
			}
		case ChunkAuthKey:
			p.Password = string(v)
		case ChunkCorrelationID:
			p.CorrelationID = string(v)
		case ChunkPayload:
			p.Payload = append([]byte{}, v...)
		}
		if err != nil {
			return Packet{}, 0, err
		}
	}
	if !haveFam || !haveSrc || dst == nil {
		return Packet{}, 0, fmt.Errorf("%w: no IP family or addresses", ErrMalformed)
	}
	if want := map[byte]int{FamilyIPv4: 4, FamilyIPv6: 16}[family]; want == 0 || len(src) != want || len(dst) != want {
		return Packet{}, 0, fmt.Errorf("%w: IP family %d with %d/%d byte addresses", ErrMalformed, family, len(src), len(dst))
	}
	sa, _ := netip.AddrFromSlice(src)
	da, _ := netip.AddrFromSlice(dst)
	p.Src, p.Dst = netip.AddrPortFrom(sa.Unmap(), sport), netip.AddrPortFrom(da.Unmap(), dport)
	p.Time = time.Unix(int64(sec), int64(usec)*1000)
	return p, total, nil
}

func ipLen(typ uint16) int {
	if typ == ChunkSrcIPv6 || typ == ChunkDstIPv6 {
		return 16
	}
	return 4
}
