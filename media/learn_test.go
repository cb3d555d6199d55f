package media

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

// peerAt binds a peer on ip (any port): 127.0.0.2 is a loopback address of
// Linux too, another IP than the 127.0.0.1 of the signalled addresses.
func peerAt(t testing.TB, ip string) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Skipf("cannot bind %s: %v", ip, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &peer{t: t, conn: c}
}

func ssrcOf(p []byte) uint32 { return binary.BigEndian.Uint32(p[8:12]) }

// drain reads what p receives within d and returns the SSRCs seen.
func drain(p *peer, d time.Duration) []uint32 {
	var got []uint32
	for {
		b, _, err := p.tryRecv(d)
		if err != nil {
			return got
		}
		got = append(got, ssrcOf(b))
	}
}

// exchange sends n packets each way between a and b (SSRCs 0xA and 0xB,
// sequence numbers from seq) and checks each one arrives, unmodified.
func exchange(t *testing.T, a, b *peer, portA, portB int, seq uint16, n int) {
	t.Helper()
	for i := range n {
		s := seq + uint16(i)
		pkt := rtpPacket(0, s, uint32(s)*160, 0xA, 172)
		a.send(portA, pkt)
		if got, _ := b.recv(time.Second); !bytes.Equal(got, pkt) {
			t.Fatalf("A->B packet seq %d: got SSRC %#x", s, ssrcOf(got))
		}
		back := rtpPacket(0, s, uint32(s)*160, 0xB, 172)
		b.send(portB, back)
		if got, _ := a.recv(time.Second); !bytes.Equal(got, back) {
			t.Fatalf("B->A packet seq %d: got SSRC %#x", s, ssrcOf(got))
		}
	}
}

// TestLearningStrangerGetsNothing: on a live pass-through call, a stranger
// sending RTP to either relay port receives nothing, and its packets are
// neither relayed nor allowed to move the destination; the call goes on.
// A stranger that copies the caller's SSRC and sequence numbers while the
// caller is still sending is no NAT rebind either.
func TestLearningStrangerGetsNothing(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	exchange(t, a, b, portA, portB, 1, 3) // both sides learned and locked

	stranger := peerAt(t, "127.0.0.2")
	for i := range 5 {
		stranger.send(portA, rtpPacket(0, uint16(500+i), 0, 0x5EED, 172))
		stranger.send(portB, rtpPacket(0, uint16(600+i), 0, 0x5EED, 172))
	}
	exchange(t, a, b, portA, portB, 4, 5)
	// A sniffer's packets: A's SSRC, continuing A's sequence numbers.
	for i := range 5 {
		stranger.send(portA, rtpPacket(0, uint16(9+i), 0, 0xA, 172))
	}
	exchange(t, a, b, portA, portB, 9, 5)

	stranger.expectNothing(100 * time.Millisecond)
	if got := drain(b, 50*time.Millisecond); len(got) != 0 {
		t.Fatalf("B got stray packets with SSRCs %x", got)
	}
	if got := drain(a, 10*time.Millisecond); len(got) != 0 {
		t.Fatalf("A got stray packets with SSRCs %x", got)
	}
	st := s.Stats()[0]
	if st.FromA.Drops.Stranger != 5 || st.FromA.Drops.RebindPending != 5 || st.FromB.Drops.Stranger != 5 {
		t.Fatalf("drops from A %+v, from B %+v: want 5 strangers each, and 5 rebind candidates from A",
			st.FromA.Drops, st.FromB.Drops)
	}
	if st.FromA.Packets != 13 || st.FromB.Packets != 13 {
		t.Fatalf("relayed %d from A, %d from B, want 13 each (strangers not counted)", st.FromA.Packets, st.FromB.Packets)
	}
}

// TestLearningNATRebind: the caller's NAT rebinds mid-call (same SSRC,
// sequence numbers continuing, a new source port). The new source takes
// over once the old one has been silent for RebindSilence (2 s by
// default): from then on A's packets reach B again and B's go to the new
// port.
func TestLearningNATRebind(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	exchange(t, a, b, portA, portB, 1, 3)

	a2 := newPeer(t) // A behind its NAT, rebound
	const interval = 20 * time.Millisecond
	var recovered time.Duration
	start := time.Now()
	seq := uint16(4)
	for time.Since(start) < 4*time.Second {
		a2.send(portA, rtpPacket(0, seq, uint32(seq)*160, 0xA, 172))
		seq++
		if got, _, err := b.tryRecv(interval); err == nil {
			if ssrcOf(got) != 0xA {
				t.Fatalf("B got SSRC %#x", ssrcOf(got))
			}
			recovered = time.Since(start)
			break
		}
	}
	if recovered == 0 {
		t.Fatal("no recovery within 4 s of the rebind")
	}
	t.Logf("NAT rebind recovered %v after the new source's first packet (RebindSilence %v)", recovered, DefaultRebindSilence)
	if recovered < DefaultRebindSilence-100*time.Millisecond || recovered > DefaultRebindSilence+500*time.Millisecond {
		t.Fatalf("recovered after %v, want about %v", recovered, DefaultRebindSilence)
	}
	// B's media now goes to the new source, none to the old one.
	back := rtpPacket(0, 100, 0, 0xB, 172)
	b.send(portB, back)
	if got, _ := a2.recv(time.Second); !bytes.Equal(got, back) {
		t.Fatal("B->A did not follow the rebind")
	}
	a.expectNothing(50 * time.Millisecond)
	st := s.Stats()[0].FromA
	if st.Drops.Stranger != 0 || st.Drops.RebindPending == 0 {
		t.Fatalf("drops %+v: want rebind candidates only", st.Drops)
	}
}

// TestLearningSignalledWinsOverStranger: in the learning window, a stranger
// that sends first is learned, but the signalled address:port wins as soon
// as it sends, and the stranger cannot get the stream back.
func TestLearningSignalledWinsOverStranger(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()

	stranger := peerAt(t, "127.0.0.2")
	stranger.send(portA, rtpPacket(0, 1, 0, 0x5EED, 172))
	b.recv(time.Second) // learned in the window, relayed
	a.send(portA, rtpPacket(0, 1, 0, 0xA, 172))
	if got, _ := b.recv(time.Second); ssrcOf(got) != 0xA {
		t.Fatalf("B got SSRC %#x, want A's", ssrcOf(got))
	}
	stranger.send(portA, rtpPacket(0, 2, 0, 0x5EED, 172))
	back := rtpPacket(0, 1, 0, 0xB, 172)
	b.send(portB, back)
	if got, _ := a.recv(time.Second); !bytes.Equal(got, back) {
		t.Fatal("B->A did not go to the signalled address")
	}
	stranger.expectNothing(50 * time.Millisecond)
	b.expectNothing(20 * time.Millisecond)
	if d := s.Stats()[0].FromA.Drops; d.Stranger != 1 {
		t.Fatalf("drops %+v, want the stranger's second packet", d)
	}
}

// TestLearningSameIPBeatsOther: A is behind a NAT that keeps its address
// but not its port, so its packets never come from the signalled
// address:port. A stranger on another address sending first is replaced by
// A's source (same IP as signalled) within the window; afterwards the
// stranger is dropped.
func TestLearningSameIPBeatsOther(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, _, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	portA, _ := s.Ports(0)
	natA := newPeer(t) // 127.0.0.1, another port than the signalled one

	stranger := peerAt(t, "127.0.0.2")
	stranger.send(portA, rtpPacket(0, 1, 0, 0x5EED, 172))
	b.recv(time.Second)
	natA.send(portA, rtpPacket(0, 1, 0, 0xA, 172))
	b.recv(time.Second)
	stranger.send(portA, rtpPacket(0, 2, 0, 0x5EED, 172))
	b.send(portB, rtpPacket(0, 1, 0, 0xB, 172))
	if got, _ := natA.recv(time.Second); ssrcOf(got) != 0xB {
		t.Fatal("B->A did not go to A's NAT address")
	}
	stranger.expectNothing(50 * time.Millisecond)
	b.expectNothing(20 * time.Millisecond)
}

// TestLearningWindowRestartsWithAnswer: a stranger sending to the caller's
// port while the call rings is learned and locked (the caller sends
// nothing yet); the answer starts learning anew, and the caller, behind a
// NAT (its source is not the signalled address), gets its stream.
func TestLearningWindowRestartsWithAnswer(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.LearnWindow = 50 * time.Millisecond })
	a, b := newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	defer s.Close()
	toB, err := s.Offer(SideA, audioSDP(lo, a.port()))
	if err != nil {
		t.Fatal(err)
	}
	portA, _ := s.Ports(0)
	portB := mediaPort(t, toB, 0)
	stranger := peerAt(t, "127.0.0.2")
	stranger.send(portA, rtpPacket(0, 1, 0, 0x5EED, 172)) // no destination yet: dropped, but learned
	waitFor(t, time.Second, "stranger's packet", func() bool { return s.Stats()[0].FromA.Drops.NoDestination == 1 })
	time.Sleep(100 * time.Millisecond) // the window closes: locked on the stranger

	toA, err := s.Answer(SideB, audioSDP(lo, b.port()))
	if err != nil {
		t.Fatal(err)
	}
	if mediaPort(t, toA, 0) != portA {
		t.Fatal("answer changed the port")
	}
	natA := peerAt(t, "127.0.0.3") // A's public address, not the signalled one
	natA.send(portA, rtpPacket(0, 1, 0, 0xA, 172))
	if got, _ := b.recv(time.Second); ssrcOf(got) != 0xA {
		t.Fatalf("B got SSRC %#x", ssrcOf(got))
	}
	stranger.send(portA, rtpPacket(0, 2, 0, 0x5EED, 172)) // too late now
	b.send(portB, rtpPacket(0, 1, 0, 0xB, 172))
	if got, _ := natA.recv(time.Second); ssrcOf(got) != 0xB {
		t.Fatal("B->A did not go to A")
	}
	stranger.expectNothing(50 * time.Millisecond)
	b.expectNothing(20 * time.Millisecond)
}

// TestLearningRTCPPortRebind: on a separate RTCP port the rebind is proven
// by one RTCP packet carrying the learned SSRC once the learned source has
// been silent for RebindSilence; another SSRC never takes over.
func TestLearningRTCPPortRebind(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.RebindSilence = 200 * time.Millisecond })
	a, b := newPeer(t), newPeer(t)
	aRTCP, bRTCP := newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	defer s.Close()
	sdpAt := func(rtp, rtcp int) []byte {
		return sdpLines(`v=0
			o=- 1 1 IN IP4 127.0.0.1
			s=-
			c=IN IP4 127.0.0.1
			t=0 0
			m=audio ` + itoa(rtp) + ` RTP/SAVP 0
			a=rtcp:` + itoa(rtcp) + ` IN IP4 127.0.0.1
			a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz`)
	}
	toB, err := s.Offer(SideA, sdpAt(a.port(), aRTCP.port()))
	if err != nil {
		t.Fatal(err)
	}
	toA, err := s.Answer(SideB, sdpAt(b.port(), bRTCP.port()))
	if err != nil {
		t.Fatal(err)
	}
	portA, portB := mediaPort(t, toA, 0), mediaPort(t, toB, 0)
	rr := func(ssrc uint32) []byte {
		p := []byte{0x80, 201, 0, 1, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(p[4:], ssrc)
		return p
	}
	aRTCP.send(portA+1, rr(0xA))
	bRTCP.recv(time.Second)

	a2 := newPeer(t) // A's RTCP, rebound
	a2.send(portA+1, rr(0xA))
	a2.send(portA+1, rr(0x5EED))
	waitFor(t, time.Second, "rebind candidate", func() bool {
		d := s.Stats()[0].FromA.Drops
		return d.RebindPending == 1 && d.Stranger == 1
	})
	bRTCP.expectNothing(250 * time.Millisecond) // now past RebindSilence
	a2.send(portA+1, rr(0x5EED))
	bRTCP.expectNothing(20 * time.Millisecond)
	a2.send(portA+1, rr(0xA))
	bRTCP.recv(time.Second)
	bRTCP.send(portB+1, rr(0xB))
	if got, _ := a2.recv(time.Second); !bytes.Equal(got, rr(0xB)) {
		t.Fatal("B's RTCP did not follow the rebind")
	}
	aRTCP.expectNothing(20 * time.Millisecond)
}

// TestLearningStrict: Learning strict accepts only the signalled
// address:port, like StrictSource: not even a first packet from elsewhere
// is learned.
func TestLearningStrict(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.Learning = LearningStrict })
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	natA := newPeer(t)
	natA.send(portA, rtpPacket(0, 1, 0, 0xA, 172)) // heuristic would learn it
	waitFor(t, time.Second, "stranger drop", func() bool { return s.Stats()[0].FromA.Drops.Stranger == 1 })
	b.expectNothing(20 * time.Millisecond)
	exchange(t, a, b, portA, portB, 2, 3)
	natA.expectNothing(20 * time.Millisecond)
}

// TestLearningOff: Learning off keeps the old behaviour: the destination
// moves to any new source at once, even on a live call.
func TestLearningOff(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.Learning = LearningOff })
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	exchange(t, a, b, portA, portB, 1, 3)
	stranger := peerAt(t, "127.0.0.2")
	stranger.send(portA, rtpPacket(0, 1, 0, 0x5EED, 172))
	if got, _ := b.recv(time.Second); ssrcOf(got) != 0x5EED {
		t.Fatal("the stranger's packet was not relayed")
	}
	b.send(portB, rtpPacket(0, 9, 0, 0xB, 172))
	if got, _ := stranger.recv(time.Second); ssrcOf(got) != 0xB {
		t.Fatal("learning off: the destination did not move to the new source")
	}
}

func TestParseLearningMode(t *testing.T) {
	for in, want := range map[string]LearningMode{"": LearningHeuristic, "heuristic": LearningHeuristic, "strict": LearningStrict, "off": LearningOff} {
		got, err := ParseLearningMode(in)
		if err != nil || got != want {
			t.Errorf("ParseLearningMode(%q) = %v, %v", in, got, err)
		}
		if in != "" && got.String() != in {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if _, err := ParseLearningMode("latch"); !errorsIs(err, ErrBadLearningMode) {
		t.Errorf("unknown mode: err = %v", err)
	}
	if _, err := (Config{Learning: 7}).withDefaults(); !errorsIs(err, ErrBadLearningMode) {
		t.Errorf("Config.Learning 7: err = %v", err)
	}
	c, err := Config{}.withDefaults()
	if err != nil || c.Learning != LearningHeuristic || c.LearnWindow != 3*time.Second || c.RebindSilence != 2*time.Second {
		t.Errorf("defaults: %v %v %v %v", c.Learning, c.LearnWindow, c.RebindSilence, err)
	}
}

// TestStrangerDropsZeroAllocs: dropping strangers' packets, including
// would-be NAT rebinds carrying the stream's SSRC, allocates nothing.
func TestStrangerDropsZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	exchange(t, a, b, portA, portB, 1, 3)
	stranger := peerAt(t, "127.0.0.2")
	foreign, copied, legit := rtpPacket(0, 1, 0, 0x5EED, 172), rtpPacket(0, 1, 0, 0xA, 172), rtpPacket(0, 1, 0, 0xA, 172)
	dst := netip.AddrPortFrom(lo, uint16(portA))
	rbuf := make([]byte, 2048)
	_ = b.conn.SetReadDeadline(time.Now().Add(time.Minute))
	runs := 0
	allocs := testing.AllocsPerRun(100, func() {
		runs++
		for range 4 {
			_, _ = stranger.conn.WriteToUDPAddrPort(foreign, dst)
			_, _ = stranger.conn.WriteToUDPAddrPort(copied, dst)
		}
		// A's packet comes after the strangers' on the same socket: once
		// B has it, the strangers' were handled.
		_, _ = a.conn.WriteToUDPAddrPort(legit, dst)
		if _, _, err := b.conn.ReadFromUDPAddrPort(rbuf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per burst of 8 strangers' packets, want 0", allocs)
	}
	d := s.Stats()[0].FromA.Drops
	if d.Stranger != uint64(4*runs) || d.RebindPending != uint64(4*runs) {
		t.Fatalf("drops %+v after %d bursts, want %d of each", d, runs, 4*runs)
	}
}
