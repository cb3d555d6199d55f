package media

import (
	"testing"
	"time"
)

const benchBurst = 16

// relayBurst sends n packets from a to the relay and reads them at b.
func relayBurst(tb testing.TB, a, b *peer, portA int, pkt, rbuf []byte, n int) {
	for range n {
		if _, err := a.conn.Write(pkt); err != nil {
			tb.Fatal(err)
		}
	}
	for range n {
		if _, _, err := b.conn.ReadFromUDPAddrPort(rbuf); err != nil {
			tb.Fatal(err)
		}
	}
}

func setupRelayBench(tb testing.TB) (a, b *peer, portA int, pkt, rbuf []byte) {
	e := testEngine(tb, nil)
	a, b = newPeer(tb), newPeer(tb)
	s, portA, _ := call(tb, e, a, b, SessionConfig{})
	tb.Cleanup(func() { s.Close() })
	// Connect A's socket so that Write needs no address.
	if err := a.conn.Close(); err != nil {
		tb.Fatal(err)
	}
	a = connectedPeer(tb, a.port(), portA)
	_ = b.conn.SetReadDeadline(time.Now().Add(time.Minute))
	pkt = rtpPacket(0, 1, 0, 1, 172)
	rbuf = make([]byte, 2048)
	relayBurst(tb, a, b, portA, pkt, rbuf, benchBurst) // latch, warm up
	return a, b, portA, pkt, rbuf
}

// BenchmarkRelayPassthrough measures one 172-byte packet (G.711 20 ms
// SRTP size) through real loopback sockets: client send, relay
// recvmmsg+sendmmsg, client receive. It must report 0 allocs/op.
func BenchmarkRelayPassthrough(b *testing.B) {
	a, bp, portA, pkt, rbuf := setupRelayBench(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	n := b.N
	for n > 0 {
		k := min(n, benchBurst)
		relayBurst(b, a, bp, portA, pkt, rbuf, k)
		n -= k
	}
}

// TestRelayZeroAllocs checks that the relay's steady state allocates
// nothing (the test's own socket calls do not allocate either).
func TestRelayZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	a, b, portA, pkt, rbuf := setupRelayBench(t)
	allocs := testing.AllocsPerRun(200, func() {
		relayBurst(t, a, b, portA, pkt, rbuf, benchBurst)
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per burst of %d packets, want 0", allocs, benchBurst)
	}
}

// BenchmarkReoffer measures the SDP path of a re-INVITE with the four
// streams of a Webex call (parse, anchor, rewrite, marshal), ports kept.
func BenchmarkReoffer(b *testing.B) {
	e := testEngine(b, nil)
	s := e.NewSession(SessionConfig{AdvertiseA: advA, AdvertiseB: advB})
	defer s.Close()
	if _, err := s.Offer(SideA, webexOffer); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := s.Offer(SideA, webexOffer); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOfferNewSession measures a first offer including the
// allocation and binding of 4 streams x 2 legs, and the Close.
func BenchmarkOfferNewSession(b *testing.B) {
	e := testEngine(b, func(c *Config) { c.PortMin, c.PortMax = 14000, 14999 })
	b.ReportAllocs()
	for range b.N {
		s := e.NewSession(SessionConfig{AdvertiseA: advA, AdvertiseB: advB})
		if _, err := s.Offer(SideA, webexOffer); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
