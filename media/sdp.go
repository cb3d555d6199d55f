package media

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// direction is an SDP media direction attribute.
type direction uint8

const (
	dirSendRecv direction = iota
	dirSendOnly
	dirRecvOnly
	dirInactive
)

func dirOf(attrs []sdp.Attribute) (direction, bool) {
	for _, a := range attrs {
		switch a.Key {
		case "sendrecv":
			return dirSendRecv, true
		case "sendonly":
			return dirSendOnly, true
		case "recvonly":
			return dirRecvOnly, true
		case "inactive":
			return dirInactive, true
		}
	}
	return dirSendRecv, false
}

// mediaDirection returns the direction of md, falling back to the
// session-level attribute, then sendrecv.
func mediaDirection(sd *sdp.SessionDescription, md *sdp.MediaDescription) direction {
	if d, ok := dirOf(md.Attributes); ok {
		return d
	}
	d, _ := dirOf(sd.Attributes)
	return d
}

// iceAttrs are dropped: the SBC anchors media, ICE runs end to end no more.
var iceAttrs = [...]string{
	"candidate", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite",
	"end-of-candidates", "remote-candidates", "ice-mismatch", "ice-pacing",
}

func isICEAttr(key string) bool {
	for _, k := range iceAttrs {
		if strings.EqualFold(key, k) {
			return true
		}
	}
	return false
}

// dropAttrs returns attrs without ICE attributes and without
// a=group:BUNDLE (the relay anchors every m-line on its own ports, so
// bundling cannot be offered through it). Order is preserved.
func dropAttrs(attrs []sdp.Attribute) []sdp.Attribute {
	out := attrs[:0]
	for _, a := range attrs {
		if isICEAttr(a.Key) {
			continue
		}
		if a.Key == "group" && strings.HasPrefix(strings.ToUpper(a.Value), "BUNDLE") {
			continue
		}
		out = append(out, a)
	}
	return out
}

func hasAttr(attrs []sdp.Attribute, key string) bool {
	for _, a := range attrs {
		if a.Key == key {
			return true
		}
	}
	return false
}

func attrValue(attrs []sdp.Attribute, key string) string {
	for _, a := range attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

func proto(md *sdp.MediaDescription) string {
	return strings.Join(md.MediaName.Protos, "/")
}

// carriesRTP reports whether the transport protocol of md is RTP based.
func carriesRTP(md *sdp.MediaDescription) bool {
	for _, p := range md.MediaName.Protos {
		if strings.EqualFold(p, "RTP") {
			return true
		}
	}
	return false
}

// carriesUDP reports whether md is carried over UDP, the only transport
// the relay has. Any proto starting with TCP (TCP/BFCP, TCP/TLS/BFCP,
// TCP/RTP/AVP, ...) is not: such m-lines are rejected (port 0) rather than
// given a UDP relay port their endpoints would never use.
func carriesUDP(md *sdp.MediaDescription) bool {
	p := md.MediaName.Protos
	return len(p) == 0 || !strings.EqualFold(p[0], "TCP")
}

// rejectTCP sets the port of every m-line not carried over UDP to 0, so an
// offer treats it as rejected: no port is allocated, the offer forwarded
// carries port 0 (RFC 3264 section 6: the answer must then carry port 0
// too) and an answer accepting it anyway is sent on with port 0.
func rejectTCP(sd *sdp.SessionDescription) {
	for _, md := range sd.MediaDescriptions {
		if !carriesUDP(md) {
			md.MediaName.Port = sdp.RangedPort{Value: 0}
		}
	}
}

// isPlainRTP reports whether md is an active audio or video stream over
// RTP/AVP or RTP/AVPF without a=crypto, i.e. unencrypted media.
func isPlainRTP(md *sdp.MediaDescription) bool {
	if md.MediaName.Port.Value == 0 {
		return false
	}
	if md.MediaName.Media != "audio" && md.MediaName.Media != "video" {
		return false
	}
	switch strings.ToUpper(proto(md)) {
	case "RTP/AVP", "RTP/AVPF":
		return !hasAttr(md.Attributes, "crypto")
	}
	return false
}

// connAddr returns the connection address of md (media c=, else session
// c=). The zero Addr means none or unparsable.
func connAddr(sd *sdp.SessionDescription, md *sdp.MediaDescription) netip.Addr {
	ci := md.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	if ci == nil || ci.Address == nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// rtcpAttr parses a=rtcp:<port> [IN IP4 <addr>] (RFC 3605).
func rtcpAttr(md *sdp.MediaDescription) (port int, addr netip.Addr, ok bool) {
	v, found := md.Attribute("rtcp")
	if !found {
		return 0, netip.Addr{}, false
	}
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0, netip.Addr{}, false
	}
	p, err := strconv.Atoi(f[0])
	if err != nil || p <= 0 || p > 65535 {
		return 0, netip.Addr{}, false
	}
	if len(f) >= 4 {
		addr, _ = netip.ParseAddr(f[3])
	}
	return p, addr.Unmap(), true
}

// staticClock is the clock rate of the static payload types of RFC 3551.
func staticClock(pt int) uint32 {
	switch pt {
	case 0, 3, 4, 5, 7, 8, 9, 12, 13, 15, 18:
		return 8000
	case 6:
		return 16000
	case 10, 11:
		return 44100
	case 16:
		return 11025
	case 17:
		return 22050
	case 14, 25, 26, 28, 31, 32, 33, 34:
		return 90000
	}
	return 0
}

// buildClocks returns a clock table for md: the previous table (if any),
// then static payload types, then a=rtpmap entries. Unknown dynamic types
// default to 8000 Hz for audio and 90000 Hz otherwise. telephone-event
// gets 0: its timestamps do not advance per packet, so it is left out of
// the jitter.
func buildClocks(prev *clockTable, md *sdp.MediaDescription) *clockTable {
	t := new(clockTable)
	def := uint32(90000)
	if md.MediaName.Media == "audio" {
		def = 8000
	}
	for pt := range t {
		if c := staticClock(pt); c != 0 {
			t[pt] = c
		} else {
			t[pt] = def
		}
	}
	if prev != nil {
		*t = *prev
	}
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		ptStr, enc, ok := strings.Cut(a.Value, " ")
		if !ok {
			continue
		}
		pt, err := strconv.Atoi(ptStr)
		if err != nil || pt < 0 || pt > 127 {
			continue
		}
		name, rest, _ := strings.Cut(strings.TrimSpace(enc), "/")
		rateStr, _, _ := strings.Cut(rest, "/")
		rate, err := strconv.ParseUint(rateStr, 10, 32)
		if err != nil || rate == 0 {
			continue
		}
		if strings.EqualFold(name, "telephone-event") {
			rate = 0
		}
		t[pt] = uint32(rate)
	}
	return t
}

// connInfo returns a c= line value for addr.
func connInfo(addr netip.Addr) *sdp.ConnectionInformation {
	at := "IP4"
	if addr.Is6() {
		at = "IP6"
	}
	return &sdp.ConnectionInformation{
		NetworkType: "IN",
		AddressType: at,
		Address:     &sdp.Address{Address: addr.String()},
	}
}

// rewriteMedia points md at the SBC: m= port, media c= (if present) and
// a=rtcp, and drops ICE attributes. Other attributes, a=crypto included,
// are kept in order. port 0 marks a rejected stream.
func rewriteMedia(md *sdp.MediaDescription, port int, addr netip.Addr) {
	md.MediaName.Port = sdp.RangedPort{Value: port}
	if md.ConnectionInformation != nil {
		md.ConnectionInformation = connInfo(addr)
	}
	md.Attributes = dropAttrs(md.Attributes)
	if port == 0 {
		return
	}
	ci := connInfo(addr)
	for i, a := range md.Attributes {
		if a.Key == "rtcp" {
			md.Attributes[i].Value = fmt.Sprintf("%d IN %s %s", port+1, ci.AddressType, ci.Address.Address)
		}
	}
}

// rewriteSession points the session-level c= at addr and drops session
// ICE attributes; o= is handled by the Session (versioning).
func rewriteSession(sd *sdp.SessionDescription, addr netip.Addr) {
	sd.ConnectionInformation = connInfo(addr)
	sd.Attributes = dropAttrs(sd.Attributes)
}

// parseSDP parses b. Errors wrap ErrNotAcceptable and ErrBadSDP; their text
// never contains key material.
func parseSDP(b []byte) (*sdp.SessionDescription, error) {
	sd := &sdp.SessionDescription{}
	if err := sd.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("%w: %w: %s", ErrNotAcceptable, ErrBadSDP, redact(err.Error()))
	}
	return sd, nil
}

// redact removes SDES keys ("inline:<key>") from s, e.g. from a parser
// error that quotes an a=crypto line.
func redact(s string) string {
	const tag = "inline:"
	var b strings.Builder
	for {
		i := strings.Index(strings.ToLower(s), tag)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+len(tag)])
		b.WriteString("<redacted>")
		s = s[i+len(tag):]
		j := strings.IndexAny(s, " |'\"\r\n;")
		if j < 0 {
			return b.String()
		}
		s = s[j:]
	}
}
