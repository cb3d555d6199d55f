package fastpath

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edge-sbc/edge-sbc/media/fastpath/nstest"
)

// rtpPacket is a 172-byte RTP packet (12-byte header, 160 bytes of PCMU).
func rtpPacket(seq uint16, ssrc uint32) []byte {
	p := make([]byte, 172)
	p[0], p[1] = 0x80, 0
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	for i := 12; i < len(p); i++ {
		p[i] = byte(i*7 + int(seq))
	}
	return p
}

// TestForward loads the program in a namespace of its own and forwards RTP
// from A to B through one flow: B receives every packet with the payload
// unchanged, from the SBC's address and port, with valid checksums, the
// TOS asked and TTL 64; the relay's socket sees none of them; a stranger
// and another SSRC go to the socket; removing the flow gives the next
// packet to the socket.
func TestForward(t *testing.T) {
	topo, inside := nstest.Inside()
	if !inside {
		nstest.Run(t)
		return
	}
	p, err := Load(netip.IPv4Unspecified())
	if err != nil {
		t.Skipf("the fast path cannot load here: %v", err)
	}
	defer p.Close()
	t.Logf("attached to %v", p.Interfaces())

	relayA, err := net.ListenUDP("udp4", &net.UDPAddr{Port: 40000}) // the relay's port facing A
	if err != nil {
		t.Fatal(err)
	}
	defer relayA.Close()
	a, err := nstest.ListenUDP(topo.A, netip.AddrPortFrom(nstest.A, 5000))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := nstest.ListenUDP(topo.B, netip.AddrPortFrom(nstest.B, 6000))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	stranger, err := nstest.ListenUDP(topo.A, netip.AddrPortFrom(nstest.A, 5002))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	raw := nstest.Capture(t, topo.B, "b")

	const ssrc = 0x11223344
	f := Flow{
		Src: netip.AddrPortFrom(nstest.A, 5000), Port: 40000,
		From: netip.AddrPortFrom(netip.IPv4Unspecified(), 40002), To: netip.AddrPortFrom(nstest.B, 6000),
		Kind: KindRTP, SSRC: ssrc, PT: 0, Clock: 8000, TOS: 46 << 2,
	}
	k, err := p.Add(f)
	if err != nil {
		t.Fatal(err)
	}
	relay := net.UDPAddrFromAddrPort(netip.AddrPortFrom(nstest.SBCA, 40000))
	const n = 50
	buf := make([]byte, 2048)
	for i := range n {
		pkt := rtpPacket(uint16(1000+i), ssrc)
		if _, err := a.WriteToUDP(pkt, relay); err != nil {
			t.Fatal(err)
		}
		_ = b.SetReadDeadline(time.Now().Add(2 * time.Second))
		m, from, err := b.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if want := netip.AddrPortFrom(nstest.SBCB, 40002); from != want {
			t.Fatalf("packet %d from %v, want %v", i, from, want)
		}
		if string(buf[:m]) != string(pkt) {
			t.Fatalf("packet %d: payload changed", i)
		}
		rm, err := unix.Read(raw, buf)
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		if err := nstest.CheckIPv4UDP(buf[:rm]); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if tos, ttl := buf[1], buf[8]; tos != 46<<2 || ttl != 64 {
			t.Fatalf("packet %d: TOS %#x TTL %d, want %#x and 64", i, tos, ttl, 46<<2)
		}
	}
	c, err := p.Read(k)
	if err != nil {
		t.Fatal(err)
	}
	if c.Packets != n || c.Bytes != n*172 || c.Expected != n || c.Lost != 0 || c.LastNs == 0 {
		t.Fatalf("counters %+v, want %d packets of 172 bytes, none lost", c, n)
	}
	if pk, _ := p.Totals(); pk != n {
		t.Fatalf("totals %d, want %d", pk, n)
	}

	// The relay's socket saw nothing; a stranger and another SSRC reach it.
	expectSocket := func(what string, from *net.UDPConn, pkt []byte) {
		t.Helper()
		if _, err := from.WriteToUDP(pkt, relay); err != nil {
			t.Fatal(err)
		}
		_ = relayA.SetReadDeadline(time.Now().Add(2 * time.Second))
		m, _, err := relayA.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:m]) != string(pkt) {
			t.Fatalf("%s: the relay's socket did not get it (%v)", what, err)
		}
	}
	expectSocket("stranger", stranger, rtpPacket(1, ssrc))
	expectSocket("another SSRC", a, rtpPacket(2000, ssrc+1))
	if c2, _ := p.Read(k); c2.Packets != n {
		t.Fatalf("the kernel counted %d packets, want %d", c2.Packets, n)
	}
	last, err := p.Remove(k)
	if err != nil || last.Packets != n {
		t.Fatalf("remove: %+v, %v", last, err)
	}
	expectSocket("after remove", a, rtpPacket(1100, ssrc))
	if _, err := p.Read(k); err == nil {
		t.Fatal("the entry is still there")
	}
}

// TestForwardLoopback: with both sides on this host (loopback), the
// rewritten datagram is delivered through the loopback. The test runs with
// CAP_BPF and CAP_NET_ADMIN only, the capabilities the systemd unit
// documents.
func TestForwardLoopback(t *testing.T) {
	if _, inside := nstest.Inside(); !inside {
		nstest.RunWith(t, "setpriv", "--bounding-set=-all,+bpf,+net_admin", "--inh-caps=-all", "--")
		return
	}
	lo := netip.MustParseAddr("127.0.0.1")
	p, err := Load(lo)
	if err != nil {
		t.Skipf("the fast path cannot load here: %v", err)
	}
	defer p.Close()
	if got := p.Interfaces(); len(got) != 1 || got[0] != "lo" {
		t.Fatalf("attached to %v, want [lo]", got)
	}
	a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice(), Port: 5000})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice(), Port: 6000})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k, err := p.Add(Flow{
		Src: netip.AddrPortFrom(lo, 5000), Port: 40000,
		From: netip.AddrPortFrom(lo, 40002), To: netip.AddrPortFrom(lo, 6000), Kind: KindRaw,
	})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for i := range 20 {
		pkt := rtpPacket(uint16(i), 1)
		if _, err := a.WriteToUDPAddrPort(pkt, netip.AddrPortFrom(lo, 40000)); err != nil {
			t.Fatal(err)
		}
		_ = b.SetReadDeadline(time.Now().Add(2 * time.Second))
		m, from, err := b.ReadFromUDPAddrPort(buf)
		if err != nil {
			c, _ := p.Read(k)
			t.Fatalf("packet %d: %v (counters %+v)", i, err, c)
		}
		if from != netip.AddrPortFrom(lo, 40002) || string(buf[:m]) != string(pkt) {
			t.Fatalf("packet %d from %v, changed: %v", i, from, string(buf[:m]) != string(pkt))
		}
	}
	if c, _ := p.Remove(k); c.Packets != 20 {
		t.Fatalf("counted %d packets, want 20", c.Packets)
	}
}
