package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/rs/zerolog"
)

// Advertised addresses only appear in SDP text; tests never send to them.
var (
	advA = netip.MustParseAddr("192.0.2.1")
	advB = netip.MustParseAddr("198.51.100.1")
	lo   = netip.MustParseAddr("127.0.0.1")
)

func testEngine(t testing.TB, mod func(*Config)) *Engine {
	t.Helper()
	cfg := Config{
		PortMin:    12000,
		PortMax:    12399,
		BindAddr:   lo,
		Quarantine: -1,
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := NewEngine(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func sdpLines(s string) []byte {
	s = strings.TrimSpace(s)
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

func mustParse(t testing.TB, b []byte) *sdp.SessionDescription {
	t.Helper()
	sd := &sdp.SessionDescription{}
	if err := sd.Unmarshal(b); err != nil {
		t.Fatalf("output SDP does not parse: %v\n%s", err, b)
	}
	return sd
}

// audioSDP is a one-stream SRTP audio SDP at ip:port.
func audioSDP(ip netip.Addr, port int, extra ...string) []byte {
	s := fmt.Sprintf(`v=0
o=peer 1 1 IN IP4 %[1]s
s=-
c=IN IP4 %[1]s
t=0 0
m=audio %[2]d RTP/SAVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31
a=rtcp-mux
`, ip, port)
	for _, x := range extra {
		s += x + "\n"
	}
	return sdpLines(s)
}

// peer is a UDP socket playing side A or side B.
type peer struct {
	t    testing.TB
	conn *net.UDPConn
}

func newPeer(t testing.TB) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &peer{t: t, conn: c}
}

func (p *peer) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

func (p *peer) send(port int, b []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(b, netip.AddrPortFrom(lo, uint16(port))); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the next datagram and its source, or fails after d.
func (p *peer) recv(d time.Duration) ([]byte, netip.AddrPort) {
	p.t.Helper()
	b, from, err := p.tryRecv(d)
	if err != nil {
		p.t.Fatalf("recv: %v", err)
	}
	return b, from
}

func (p *peer) tryRecv(d time.Duration) ([]byte, netip.AddrPort, error) {
	buf := make([]byte, 4096)
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return buf[:n], from, nil
}

// expectNothing fails if a datagram arrives within d.
func (p *peer) expectNothing(d time.Duration) {
	p.t.Helper()
	b, from, err := p.tryRecv(d)
	if err == nil {
		p.t.Fatalf("unexpected datagram of %d bytes from %v", len(b), from)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		p.t.Fatal(err)
	}
}

// rtpPacket builds an RTP packet of size bytes.
func rtpPacket(pt uint8, seq uint16, ts, ssrc uint32, size int) []byte {
	b := make([]byte, size)
	b[0] = 0x80
	b[1] = pt
	b[2], b[3] = byte(seq>>8), byte(seq)
	b[4], b[5], b[6], b[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
	b[8], b[9], b[10], b[11] = byte(ssrc>>24), byte(ssrc>>16), byte(ssrc>>8), byte(ssrc)
	for i := 12; i < size; i++ {
		b[i] = byte(i * 7)
	}
	return b
}

// mediaPort returns the m= port of m-line i of an SDP.
func mediaPort(t testing.TB, b []byte, i int) int {
	t.Helper()
	sd := mustParse(t, b)
	if i >= len(sd.MediaDescriptions) {
		t.Fatalf("no m-line %d", i)
	}
	return sd.MediaDescriptions[i].MediaName.Port.Value
}

// call sets up a one-stream audio call between peers a and b and returns
// the session and the SBC ports facing A and B.
func call(t testing.TB, e *Engine, a, b *peer, sc SessionConfig) (*Session, int, int) {
	t.Helper()
	sc.AdvertiseA, sc.AdvertiseB = lo, lo
	s := e.NewSession(sc)
	toB, err := s.Offer(SideA, audioSDP(lo, a.port()))
	if err != nil {
		t.Fatal(err)
	}
	toA, err := s.Answer(SideB, audioSDP(lo, b.port()))
	if err != nil {
		t.Fatal(err)
	}
	return s, mediaPort(t, toA, 0), mediaPort(t, toB, 0)
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// connectedPeer binds local port and connects it to the relay port.
func connectedPeer(t testing.TB, local, remote int) *peer {
	t.Helper()
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: local},
		&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: remote})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &peer{t: t, conn: c}
}
