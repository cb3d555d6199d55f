package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	psdp "github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"

	"github.com/edge-sbc/edge-sbc/media"
)

// The media side of `edge-sbc call`: one SRTP audio stream (SDES,
// AES_CM_128_HMAC_SHA1_80, RTCP multiplexed on the RTP port) carrying a
// 1 kHz PCMU tone, and what comes back, accounted as the relay accounts a
// direction (media.Receiver).

const (
	callSuite     = "AES_CM_128_HMAC_SHA1_80"
	callPT        = 0   // PCMU
	callDTMF      = 101 // telephone-event, offered but never sent
	callPtime     = 20 * time.Millisecond
	callSamples   = 160 // 20 ms at 8 kHz
	rtcpInterval  = time.Second
	sdesKeyLen    = 16
	sdesSaltLen   = 14
	callMediaUser = "edge-sbc-call"
)

// sdesKey is an SDES master key and salt.
type sdesKey struct{ key, salt []byte }

// String never shows the key.
func (sdesKey) String() string { return "<redacted>" }

func newSDESKey() (sdesKey, error) {
	b := make([]byte, sdesKeyLen+sdesSaltLen)
	if _, err := rand.Read(b); err != nil {
		return sdesKey{}, fmt.Errorf("call: SRTP key: %w", err)
	}
	return sdesKey{key: b[:sdesKeyLen], salt: b[sdesKeyLen:]}, nil
}

func (k sdesKey) inline() string {
	return base64.StdEncoding.EncodeToString(append(append([]byte{}, k.key...), k.salt...))
}

func (k sdesKey) context(remote bool) (*srtp.Context, error) {
	var opts []srtp.ContextOption
	if remote {
		opts = append(opts, srtp.SRTPReplayProtection(64), srtp.SRTCPReplayProtection(64))
	}
	c, err := srtp.CreateContext(k.key, k.salt, srtp.ProtectionProfileAes128CmHmacSha1_80, opts...)
	if err != nil {
		return nil, fmt.Errorf("call: SRTP context: %w", err)
	}
	return c, nil
}

// offerSDP is the test call's offer: one sendrecv SRTP audio stream, PCMU
// and telephone-event, RTCP multiplexed.
func offerSDP(addr netip.AddrPort, key sdesKey, sessID uint64) ([]byte, error) {
	at := "IP4"
	if addr.Addr().Is6() {
		at = "IP6"
	}
	ip := addr.Addr().String()
	sd := psdp.SessionDescription{
		Origin: psdp.Origin{Username: "-", SessionID: sessID, SessionVersion: 1, NetworkType: "IN", AddressType: at,
			UnicastAddress: ip},
		SessionName:           "edge-sbc test call",
		ConnectionInformation: &psdp.ConnectionInformation{NetworkType: "IN", AddressType: at, Address: &psdp.Address{Address: ip}},
		TimeDescriptions:      []psdp.TimeDescription{{}},
		MediaDescriptions: []*psdp.MediaDescription{{
			MediaName: psdp.MediaName{Media: "audio", Port: psdp.RangedPort{Value: int(addr.Port())},
				Protos: []string{"RTP", "SAVP"}, Formats: []string{"0", "101"}},
			Attributes: []psdp.Attribute{
				{Key: "rtpmap", Value: "0 PCMU/8000"},
				{Key: "rtpmap", Value: "101 telephone-event/8000"},
				{Key: "fmtp", Value: "101 0-15"},
				{Key: "ptime", Value: "20"},
				{Key: "crypto", Value: "1 " + callSuite + " inline:" + key.inline()},
				{Key: "rtcp-mux"},
				{Key: "sendrecv"},
			},
		}},
	}
	b, err := sd.Marshal()
	if err != nil {
		return nil, fmt.Errorf("call: offer SDP: %w", err)
	}
	return b, nil
}

// answerMedia is what the test call uses of the answer.
type answerMedia struct {
	remote   netip.AddrPort
	key      sdesKey
	codec    string
	rtcpMux  bool
	sendOnly bool // the far end only sends, or is inactive: no echo expected
}

// parseAnswer reads the answer's first audio m-line: address, the crypto
// line answering tag 1 with AES_CM_128_HMAC_SHA1_80, its first codec.
func parseAnswer(body []byte) (answerMedia, error) {
	var a answerMedia
	var sd psdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return a, fmt.Errorf("answer SDP: %w", err)
	}
	var md *psdp.MediaDescription
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media == "audio" {
			md = m
			break
		}
	}
	if md == nil {
		return a, errors.New("answer SDP has no audio stream")
	}
	if md.MediaName.Port.Value == 0 {
		return a, errors.New("the far end rejected the audio stream (port 0)")
	}
	ci := md.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	if ci == nil || ci.Address == nil {
		return a, errors.New("answer SDP has no c= address")
	}
	ip, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return a, fmt.Errorf("answer SDP c= %q: %w", ci.Address.Address, err)
	}
	a.remote = netip.AddrPortFrom(ip, uint16(md.MediaName.Port.Value))
	if !strings.Contains(strings.Join(md.MediaName.Protos, "/"), "SAVP") {
		return a, fmt.Errorf("the far end answered %s: no SRTP", strings.Join(md.MediaName.Protos, "/"))
	}
	found := false
	for _, at := range md.Attributes {
		switch at.Key {
		case "crypto":
			if found {
				continue
			}
			f := strings.Fields(at.Value)
			if len(f) < 3 || f[0] != "1" || f[1] != callSuite || !strings.HasPrefix(f[2], "inline:") {
				continue
			}
			raw, _, _ := strings.Cut(strings.TrimPrefix(f[2], "inline:"), "|")
			k, err := base64.StdEncoding.DecodeString(raw)
			if err != nil || len(k) != sdesKeyLen+sdesSaltLen {
				return a, errors.New("answer a=crypto:1: bad inline key")
			}
			a.key = sdesKey{key: k[:sdesKeyLen], salt: k[sdesKeyLen:]}
			found = true
		case "rtcp-mux":
			a.rtcpMux = true
		case "sendonly", "inactive":
			a.sendOnly = true
		}
	}
	if !found {
		return a, errors.New("the answer has no a=crypto:1 " + callSuite + " line")
	}
	if !slices.Contains(md.MediaName.Formats, "0") {
		return a, fmt.Errorf("the far end answered payload types %s, without PCMU (0)", strings.Join(md.MediaName.Formats, " "))
	}
	a.codec = "PCMU"
	return a, nil
}

// toneFrame is 20 ms of a 1 kHz sine at -10 dBFS in G.711 mu-law (8
// samples a period: the frame is the same every time).
func toneFrame() []byte {
	b := make([]byte, callSamples)
	for n := range b {
		v := 0.316 * 32767 * math.Sin(2*math.Pi*1000*float64(n)/8000)
		b[n] = linearToMuLaw(int16(v))
	}
	return b
}

// linearToMuLaw encodes a 16-bit linear sample as G.711 mu-law.
func linearToMuLaw(s int16) byte {
	const bias, clip = 0x84, 32635
	v := int(s)
	sign := byte(0)
	if v < 0 {
		v, sign = -v, 0x80
	}
	v = min(v, clip) + bias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0f
	return ^(sign | byte(exp<<4) | byte(mant))
}

// errNoEchoKey: the packet failed authentication with the far end's key,
// which is also ours.
var errNoEchoKey = errors.New("SRTP authentication failed")

// mediaResult is what the media streams measured.
type mediaResult struct {
	SentRTP, SentRTCP uint64
	Received          media.DirectionStats
	Echo              bool // what came back carries our SSRC
	AuthFailures      uint64
	RTTMs             float64 // 0: not measured
	RTTSource         string
}

// callMedia sends the tone and receives what comes back. Its two
// goroutines are owned by it: stop ends them.
type callMedia struct {
	conn   *net.UDPConn
	remote netip.AddrPort
	ssrc   uint32
	start  time.Time
	mux    bool

	local              *srtp.Context // encrypts what we send (sender goroutine only)
	remoteCtx, ownEcho *srtp.Context // decrypt (receiver goroutine only)

	mu           sync.Mutex // guards the fields below
	recv         *media.Receiver
	remoteSSRC   uint32 // the far end's own SSRC (not an echo of ours), 0 unknown
	lastSR       uint32 // middle 32 bits of the NTP time of its last SR
	lastSRAt     time.Time
	rtts         []time.Duration
	rttSource    string
	echo         bool
	authFailures uint64
	sentRTP      uint64
	sentRTCP     uint64

	quit chan struct{}
	wg   sync.WaitGroup
}

// startMedia starts sending to remote from conn and receiving on it.
func startMedia(conn *net.UDPConn, ours sdesKey, ans answerMedia) (*callMedia, error) {
	local, err := ours.context(false)
	if err != nil {
		return nil, err
	}
	remoteCtx, err := ans.key.context(true)
	if err != nil {
		return nil, err
	}
	// A far end that echoes the packets byte for byte sends them back
	// encrypted with our own key (unless it answered with our key: then
	// remoteCtx decrypts them, and a second context would let a replay
	// through).
	var ownEcho *srtp.Context
	if !bytes.Equal(ours.key, ans.key.key) || !bytes.Equal(ours.salt, ans.key.salt) {
		if ownEcho, err = ours.context(true); err != nil {
			return nil, err
		}
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("call: SSRC: %w", err)
	}
	m := &callMedia{
		conn: conn, remote: ans.remote, ssrc: be32(b[:]), start: time.Now(), mux: ans.rtcpMux,
		local: local, remoteCtx: remoteCtx, ownEcho: ownEcho,
		recv: media.NewReceiver(8000, callDTMF), quit: make(chan struct{}),
	}
	m.wg.Add(2)
	go m.send()
	go m.receive()
	return m, nil
}

// stop ends sending and receiving and returns the result.
func (m *callMedia) stop() mediaResult {
	close(m.quit)
	_ = m.conn.Close()
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	r := mediaResult{SentRTP: m.sentRTP, SentRTCP: m.sentRTCP, Received: m.recv.Stats(), Echo: m.echo, AuthFailures: m.authFailures}
	if len(m.rtts) > 0 {
		var sum time.Duration
		for _, d := range m.rtts {
			sum += d
		}
		r.RTTMs = float64(sum.Microseconds()) / 1000 / float64(len(m.rtts))
		r.RTTSource = m.rttSource
	}
	return r
}

func (m *callMedia) send() {
	defer m.wg.Done()
	tick := time.NewTicker(callPtime)
	defer tick.Stop()
	frame := toneFrame()
	var seqb [2]byte
	_, _ = rand.Read(seqb[:])
	seq := be16(seqb[:])
	ts := uint32(seq) * 7919
	lastRTCP := time.Now()
	out := make([]byte, 0, 512)
	for {
		select {
		case <-m.quit:
			return
		case <-tick.C:
		}
		seq++
		ts += callSamples
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: callPT, SequenceNumber: seq, Timestamp: ts, SSRC: m.ssrc}, Payload: frame}
		plain, err := pkt.Marshal()
		if err != nil {
			continue
		}
		if out, err = m.local.EncryptRTP(out[:0], plain, nil); err == nil {
			if _, err := m.conn.WriteToUDPAddrPort(out, m.remote); err == nil {
				m.mu.Lock()
				m.sentRTP++
				m.mu.Unlock()
			}
		}
		if m.mux && time.Since(lastRTCP) >= rtcpInterval {
			lastRTCP = time.Now()
			m.sendRTCP(ts, &out)
		}
	}
}

// sendRTCP sends a compound SR + SDES, with a reception report on the far
// end's SSRC once it is known.
func (m *callMedia) sendRTCP(ts uint32, out *[]byte) {
	now := time.Now()
	m.mu.Lock()
	sr := &rtcp.SenderReport{SSRC: m.ssrc, NTPTime: ntpTime(now), RTPTime: ts, PacketCount: uint32(m.sentRTP),
		OctetCount: uint32(m.sentRTP * callSamples)}
	if m.remoteSSRC != 0 {
		st := m.recv.Stats()
		hs, _ := m.recv.HighestSeq(m.remoteSSRC)
		rr := rtcp.ReceptionReport{SSRC: m.remoteSSRC, TotalLost: uint32(min(st.Lost, 1<<23-1)), LastSequenceNumber: hs,
			Jitter: uint32(st.JitterMs * 8)}
		if !m.lastSRAt.IsZero() {
			rr.LastSenderReport = m.lastSR
			rr.Delay = uint32(now.Sub(m.lastSRAt).Seconds() * 65536)
		}
		sr.Reports = []rtcp.ReceptionReport{rr}
	}
	m.mu.Unlock()
	plain, err := rtcp.Marshal([]rtcp.Packet{sr, &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{
		Source: m.ssrc, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: callMediaUser}},
	}}}})
	if err != nil {
		return
	}
	enc, err := m.local.EncryptRTCP((*out)[:0], plain, nil)
	if err != nil {
		return
	}
	*out = enc
	if _, err := m.conn.WriteToUDPAddrPort(enc, m.remote); err == nil {
		m.mu.Lock()
		m.sentRTCP++
		m.mu.Unlock()
	}
}

func (m *callMedia) receive() {
	defer m.wg.Done()
	buf := make([]byte, 2048)
	dec := make([]byte, 0, 2048)
	for {
		n, _, err := m.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-m.quit:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p := buf[:n]
		at := time.Now()
		if n < 8 || p[0]>>6 != 2 {
			continue
		}
		if p[1] >= 192 && p[1] <= 223 { // RTCP (RFC 5761)
			m.receiveRTCP(p, at, &dec)
			continue
		}
		out, err := m.remoteCtx.DecryptRTP(dec[:0], p, nil)
		echo := false
		if err != nil {
			if m.ownEcho == nil {
				err = errNoEchoKey
			} else {
				out, err = m.ownEcho.DecryptRTP(dec[:0], p, nil)
			}
			if err != nil {
				m.mu.Lock()
				m.authFailures++
				m.mu.Unlock()
				continue
			}
			echo = true
		}
		dec = out[:0]
		ssrc := be32(out[8:12])
		m.mu.Lock()
		m.recv.RTP(out, at.Sub(m.start))
		if echo || ssrc == m.ssrc {
			m.echo = true
		} else {
			m.remoteSSRC = ssrc
		}
		m.mu.Unlock()
	}
}

func (m *callMedia) receiveRTCP(p []byte, at time.Time, dec *[]byte) {
	out, err := m.remoteCtx.DecryptRTCP((*dec)[:0], p, nil)
	if err != nil {
		if m.ownEcho == nil {
			err = errNoEchoKey
		} else {
			out, err = m.ownEcho.DecryptRTCP((*dec)[:0], p, nil)
		}
		if err != nil {
			m.mu.Lock()
			m.authFailures++
			m.mu.Unlock()
			return
		}
	}
	*dec = out[:0]
	pkts, err := rtcp.Unmarshal(out)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recv.RTCP(out)
	if err != nil {
		return
	}
	for _, pk := range pkts {
		var reports []rtcp.ReceptionReport
		switch r := pk.(type) {
		case *rtcp.SenderReport:
			if r.SSRC == m.ssrc { // our own SR, echoed: a round trip
				m.addRTT(at.Sub(fromNTP(r.NTPTime)), "RTCP (our sender reports echoed)")
				continue
			}
			m.lastSR = uint32(r.NTPTime >> 16)
			m.lastSRAt = at
			reports = r.Reports
		case *rtcp.ReceiverReport:
			reports = r.Reports
		}
		for _, rr := range reports {
			if rr.SSRC != m.ssrc || rr.LastSenderReport == 0 {
				continue
			}
			// RFC 3550 6.4.1: A - LSR - DLSR, in 1/65536 s.
			units := uint32(ntpTime(at)>>16) - rr.LastSenderReport - rr.Delay
			m.addRTT(time.Duration(float64(units)/65536*float64(time.Second)), "RTCP (far end's reception reports)")
		}
	}
}

// addRTT keeps a plausible round-trip sample. Caller holds mu.
func (m *callMedia) addRTT(d time.Duration, source string) {
	if d < 0 || d > 10*time.Second {
		return
	}
	m.rtts = append(m.rtts, d)
	m.rttSource = source
}

// ntpEpochOffset is the seconds from 1900 (NTP) to 1970 (Unix).
const ntpEpochOffset = 2208988800

func ntpTime(t time.Time) uint64 {
	secs := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return secs<<32 | frac
}

func fromNTP(v uint64) time.Time {
	secs := int64(v>>32) - ntpEpochOffset
	nanos := int64((v & 0xffffffff) * 1e9 >> 32)
	return time.Unix(secs, nanos)
}

// be16, be32 and be64 read big-endian integers (network byte order).
func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

func be32(b []byte) uint32 { return uint32(be16(b))<<16 | uint32(be16(b[2:])) }

func be64(b []byte) uint64 { return uint64(be32(b))<<32 | uint64(be32(b[4:])) }
