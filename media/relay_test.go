package media

import (
	"bytes"
	"context"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRelayBothWaysByteIdentical(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{CallID: "both-ways"})
	if portA == portB || portA%2 != 0 || portB%2 != 0 {
		t.Fatalf("ports A=%d B=%d: want two distinct even ports", portA, portB)
	}

	for i := range 20 {
		pkt := rtpPacket(0, uint16(100+i), uint32(160*i), 0xA, 172)
		a.send(portA, pkt)
		got, from := b.recv(time.Second)
		if !bytes.Equal(got, pkt) {
			t.Fatalf("A->B packet %d modified", i)
		}
		if from != netip.AddrPortFrom(lo, uint16(portB)) {
			t.Fatalf("A->B packet came from %v, want the B-facing port %d", from, portB)
		}
		back := rtpPacket(0, uint16(7000+i), uint32(160*i), 0xB, 172)
		b.send(portB, back)
		got, from = a.recv(time.Second)
		if !bytes.Equal(got, back) {
			t.Fatalf("B->A packet %d modified", i)
		}
		if from != netip.AddrPortFrom(lo, uint16(portA)) {
			t.Fatalf("B->A packet came from %v, want the A-facing port %d", from, portA)
		}
	}
	st := s.Close()
	if len(st) != 1 {
		t.Fatalf("got %d stream stats, want 1", len(st))
	}
	if st[0].FromA.Packets != 20 || st[0].FromB.Packets != 20 || st[0].FromA.Bytes != 20*172 {
		t.Fatalf("stats: %+v", st[0])
	}
	if st[0].FromA.Lost != 0 || st[0].Degraded() {
		t.Fatalf("unexpected loss/degradation: %+v", st[0])
	}
}

func TestRelayEarlyMediaBeforeAnswer(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	defer s.Close()
	toB, err := s.Offer(SideA, audioSDP(lo, a.port()))
	if err != nil {
		t.Fatal(err)
	}
	portB := mediaPort(t, toB, 0)
	portA, _ := s.Ports(0)
	// B -> A works: A's address is in the offer.
	pkt := rtpPacket(0, 1, 0, 1, 100)
	b.send(portB, pkt)
	if got, _ := a.recv(time.Second); !bytes.Equal(got, pkt) {
		t.Fatal("early media B->A modified")
	}
	// A -> B is now possible too, B latched by its packet.
	a.send(portA, pkt)
	if got, _ := b.recv(time.Second); !bytes.Equal(got, pkt) {
		t.Fatal("A->B after latching modified")
	}
}

func TestRelayNoDestinationDropped(t *testing.T) {
	e := testEngine(t, nil)
	a := newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	if _, err := s.Offer(SideA, audioSDP(lo, a.port())); err != nil {
		t.Fatal(err)
	}
	portA, _ := s.Ports(0)
	a.send(portA, rtpPacket(0, 1, 0, 1, 100))
	waitFor(t, time.Second, "no_destination drop", func() bool {
		return s.Stats()[0].FromA.Drops.NoDestination == 1
	})
	s.Close()
}

func TestRelayLatchesNATRebinding(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()

	// A's NAT rebinds: A now sends from another port.
	a2 := newPeer(t)
	pkt := rtpPacket(0, 1, 0, 1, 172)
	a2.send(portA, pkt)
	if got, _ := b.recv(time.Second); !bytes.Equal(got, pkt) {
		t.Fatal("packet from the rebound source not relayed")
	}
	reply := rtpPacket(0, 9, 0, 2, 172)
	b.send(portB, reply)
	if got, _ := a2.recv(time.Second); !bytes.Equal(got, reply) {
		t.Fatal("reply did not go to the latched address")
	}
	a.expectNothing(50 * time.Millisecond)
}

func TestRelayStrictSourceDropsStranger(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.StrictSource = true })
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()

	stranger := newPeer(t)
	stranger.send(portA, rtpPacket(0, 1, 0, 1, 172))
	waitFor(t, time.Second, "stranger drop", func() bool {
		return s.Stats()[0].FromA.Drops.Stranger == 1
	})
	b.expectNothing(50 * time.Millisecond)

	// The signalled source still works, and replies still go to it.
	pkt := rtpPacket(0, 2, 160, 1, 172)
	a.send(portA, pkt)
	if got, _ := b.recv(time.Second); !bytes.Equal(got, pkt) {
		t.Fatal("signalled source not relayed")
	}
	b.send(portB, pkt)
	if got, _ := a.recv(time.Second); !bytes.Equal(got, pkt) {
		t.Fatal("reply not relayed to signalled address")
	}
	stranger.expectNothing(20 * time.Millisecond)
	if got := s.Stats()[0].FromA.Drops.Stranger; got != 1 {
		t.Fatalf("stranger drops = %d, want 1", got)
	}
}

func TestRelayRTCPNotMuxed(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	aRTCP, bRTCP := newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	defer s.Close()
	offer := sdpLines(`v=0
		o=- 1 1 IN IP4 127.0.0.1
		s=-
		c=IN IP4 127.0.0.1
		t=0 0
		m=audio ` + itoa(a.port()) + ` RTP/SAVP 0
		a=rtcp:` + itoa(aRTCP.port()) + ` IN IP4 127.0.0.1
		a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz`)
	answer := bytes.ReplaceAll(bytes.ReplaceAll(offer, []byte(itoa(a.port())), []byte(itoa(b.port()))),
		[]byte(itoa(aRTCP.port())), []byte(itoa(bRTCP.port())))
	toB, err := s.Offer(SideA, offer)
	if err != nil {
		t.Fatal(err)
	}
	toA, err := s.Answer(SideB, answer)
	if err != nil {
		t.Fatal(err)
	}
	portA, portB := mediaPort(t, toA, 0), mediaPort(t, toB, 0)
	if v, _ := mustParse(t, toB).MediaDescriptions[0].Attribute("rtcp"); v != itoa(portB+1)+" IN IP4 127.0.0.1" {
		t.Fatalf("a=rtcp toward B = %q", v)
	}
	rr := []byte{0x81, 201, 0, 7, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
	aRTCP.send(portA+1, rr)
	if got, _ := bRTCP.recv(time.Second); !bytes.Equal(got, rr) {
		t.Fatal("RTCP A->B modified")
	}
	bRTCP.send(portB+1, rr)
	if got, _ := aRTCP.recv(time.Second); !bytes.Equal(got, rr) {
		t.Fatal("RTCP B->A modified")
	}
	waitFor(t, time.Second, "RTCP counters", func() bool {
		st := s.Stats()[0]
		return st.FromA.RTCPPackets == 1 && st.FromB.RTCPPackets == 1 && st.FromA.Packets == 0
	})
}

func TestRelayMuxedRTCPCountedSeparately(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, _ := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	a.send(portA, rtpPacket(0, 1, 0, 1, 172))
	sr := []byte{0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	a.send(portA, sr)
	b.recv(time.Second)
	b.recv(time.Second)
	st := s.Close()[0]
	if st.FromA.Packets != 1 || st.FromA.RTCPPackets != 1 || st.FromA.RTCPBytes != uint64(len(sr)) {
		t.Fatalf("stats %+v", st.FromA)
	}
}

func TestRelayOversizeDropped(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, _ := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	a.send(portA, make([]byte, bufSize+100))
	waitFor(t, time.Second, "oversize drop", func() bool { return s.Stats()[0].FromA.Drops.Oversize == 1 })
	b.expectNothing(30 * time.Millisecond)
}

func TestRelayReofferKeepsFlowing(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()

	stop := make(chan struct{})
	done := make(chan int)
	go func() { // A streams while B re-offers
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			a.send(portA, rtpPacket(0, uint16(n), uint32(160*n), 1, 172))
			n++
			time.Sleep(time.Millisecond)
		}
	}()
	for range 5 {
		toA, err := s.Offer(SideB, audioSDP(lo, b.port(), "a=sendrecv"))
		if err != nil {
			t.Fatal(err)
		}
		toB, err := s.Answer(SideA, audioSDP(lo, a.port()))
		if err != nil {
			t.Fatal(err)
		}
		if mediaPort(t, toA, 0) != portA || mediaPort(t, toB, 0) != portB {
			t.Fatal("re-offer changed ports")
		}
	}
	close(stop)
	sent := <-done
	got := 0
	for {
		if _, _, err := b.tryRecv(200 * time.Millisecond); err != nil {
			break
		}
		got++
	}
	if got != sent {
		t.Fatalf("sent %d packets during re-offers, B received %d", sent, got)
	}
}

func TestDeadMediaTimeout(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.Timeout = 150 * time.Millisecond })
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := newPeer(t), newPeer(t)
	var fired atomic.Int32
	s, portA, _ := call(t, e, a, b, SessionConfig{OnTimeout: func() { fired.Add(1) }})
	defer s.Close()

	// Media flowing: no timeout.
	for i := range 30 {
		a.send(portA, rtpPacket(0, uint16(i), uint32(i*160), 1, 60))
		time.Sleep(10 * time.Millisecond)
	}
	if fired.Load() != 0 {
		t.Fatal("timeout fired while media flowed")
	}
	waitFor(t, 2*time.Second, "OnTimeout", func() bool { return fired.Load() == 1 })
	time.Sleep(300 * time.Millisecond)
	if n := fired.Load(); n != 1 {
		t.Fatalf("OnTimeout called %d times, want once", n)
	}
}

func TestDeadMediaPausedOnHold(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.Timeout = 100 * time.Millisecond })
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := newPeer(t), newPeer(t)
	var fired atomic.Int32
	s, _, _ := call(t, e, a, b, SessionConfig{OnTimeout: func() { fired.Add(1) }})
	defer s.Close()
	if _, err := s.Offer(SideA, audioSDP(lo, a.port(), "a=sendonly")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideB, audioSDP(lo, b.port(), "a=recvonly")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if fired.Load() != 0 {
		t.Fatal("timeout fired while on hold")
	}
	// Resume: the timer runs again.
	if _, err := s.Offer(SideA, audioSDP(lo, a.port(), "a=sendrecv")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideB, audioSDP(lo, b.port(), "a=sendrecv")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "OnTimeout after resume", func() bool { return fired.Load() == 1 })
}

func TestPoolFullAfterCloseAndQuarantine(t *testing.T) {
	e := testEngine(t, func(c *Config) {
		c.PortMin, c.PortMax = 12400, 12499 // 50 pairs
		c.Quarantine = 150 * time.Millisecond
	})
	total := e.PortsFree()
	if total != 100 {
		t.Fatalf("free = %d, want 100", total)
	}
	var sessions []*Session
	for range 3 {
		s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
		if _, err := s.Offer(SideA, webexOffer); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	// 4 streams x 2 legs x 2 ports x 3 sessions
	if got := e.PortsInUse(); got != 4*2*2*3 {
		t.Fatalf("in use = %d", got)
	}
	if e.PortsInUse()+e.PortsFree() != total {
		t.Fatalf("in use %d + free %d != %d", e.PortsInUse(), e.PortsFree(), total)
	}
	for _, s := range sessions {
		s.Close()
	}
	if e.PortsInUse() != 0 {
		t.Fatalf("in use after close = %d", e.PortsInUse())
	}
	if e.PortsFree() == total {
		t.Fatal("ports free immediately: quarantine not applied")
	}
	waitFor(t, 2*time.Second, "quarantine end", func() bool { return e.PortsFree() == total })
}

func TestPortsExhausted(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.PortMin, c.PortMax = 12800, 12807 }) // 4 pairs
	s1 := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	if _, err := s1.Offer(SideA, audioSDP(lo, 5000)); err != nil {
		t.Fatal(err)
	}
	s2 := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	if _, err := s2.Offer(SideA, audioSDP(lo, 5002)); err != nil {
		t.Fatal(err)
	}
	s3 := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	_, err := s3.Offer(SideA, audioSDP(lo, 5004))
	if !errorsIs(err, ErrPortsExhausted) {
		t.Fatalf("err = %v, want ErrPortsExhausted", err)
	}
	// A two-stream offer with one pair left must not leak it.
	s1.Close()
	if _, err := s3.Offer(SideA, webexOffer); !errorsIs(err, ErrPortsExhausted) {
		t.Fatalf("err = %v, want ErrPortsExhausted", err)
	}
	if got := e.PortsInUse(); got != 4 {
		t.Fatalf("in use after failed offer = %d, want 4 (s2 only)", got)
	}
	s2.Close()
	s3.Close()
}

func TestEngineCloseClosesSessions(t *testing.T) {
	e := testEngine(t, nil)
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := newPeer(t), newPeer(t)
	s, _, _ := call(t, e, a, b, SessionConfig{})
	if e.NumSessions() != 1 {
		t.Fatal("session not registered")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if e.PortsInUse() != 0 || e.NumSessions() != 0 {
		t.Fatal("engine close left sessions open")
	}
	if _, err := s.Offer(SideA, audioSDP(lo, a.port())); !errorsIs(err, ErrClosed) {
		t.Fatalf("offer after close: %v", err)
	}
	if s2 := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo}); s2 != nil {
		if _, err := s2.Offer(SideA, audioSDP(lo, a.port())); !errorsIs(err, ErrClosed) {
			t.Fatalf("offer on session of closed engine: %v", err)
		}
	}
}

// readerGoroutines counts the live relay reader goroutines. Counting them
// by name, not with runtime.NumGoroutine, keeps the test immune to the
// testing package's own goroutines that are still exiting.
func readerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "created by github.com/edge-sbc/edge-sbc/media.(*stream).startReaders")
		}
		buf = make([]byte, 2*len(buf))
	}
}

func TestCloseStopsReaders(t *testing.T) {
	e := testEngine(t, nil)
	// The readers of the tests before (their engines closed) may still be
	// leaving the goroutine dump: the count is taken once they are gone,
	// or after 2 s (then whatever is left is the baseline).
	deadline := time.Now().Add(2 * time.Second)
	for readerGoroutines() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	base := readerGoroutines()
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	if _, err := s.Offer(SideA, webexOffer); err != nil { // 4 streams, RTCP muxed or none (BFCP)
		t.Fatal(err)
	}
	// The readers are started by Offer; on a loaded machine the last may
	// appear in the dump a moment later.
	waitFor(t, 2*time.Second, "8 reader goroutines", func() bool { return readerGoroutines()-base == 4*2 })
	first := s.Close()
	// Close waited for the readers (wg.Done); their goroutines may take
	// a moment more to vanish from the dump.
	waitFor(t, 2*time.Second, "readers to exit", func() bool { return readerGoroutines() == base })
	if again := s.Close(); len(again) != len(first) {
		t.Fatal("second Close returned different stats")
	}
	if e.PortsInUse() != 0 {
		t.Fatal("ports still in use")
	}
}
