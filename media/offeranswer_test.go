package media

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/srtp/v3"
)

// mline is one m= section of buildSDP.
type mline struct {
	media string
	port  int
	attrs []string
}

// buildSDP is an SRTP SDP at 127.0.0.1 with the given m-lines, each with
// rtcp-mux and one a=crypto line.
func buildSDP(ms ...mline) []byte {
	s := "v=0\no=peer 7 7 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
	for _, m := range ms {
		pt := 0
		if m.media == "video" {
			pt = 97
		}
		s += fmt.Sprintf("m=%s %d RTP/SAVP %d\n", m.media, m.port, pt)
		if m.media == "video" {
			s += "a=rtpmap:97 H264/90000\n"
		}
		s += "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\na=rtcp-mux\n"
		for _, a := range m.attrs {
			s += a + "\n"
		}
	}
	return sdpLines(s)
}

// expectRelay sends an RTP packet from src to the SBC port in, and checks
// that dst receives it unchanged from the SBC port out.
func expectRelay(t *testing.T, src *peer, in int, dst *peer, out int, seq uint16) {
	t.Helper()
	pkt := rtpPacket(0, seq, uint32(seq)*160, 0x0A, 100)
	src.send(in, pkt)
	got, from := dst.recv(time.Second)
	if !bytes.Equal(got, pkt) {
		t.Fatalf("packet %d modified", seq)
	}
	if from != netip.AddrPortFrom(lo, uint16(out)) {
		t.Fatalf("packet %d came from %v, want the SBC port %d", seq, from, out)
	}
}

func originVersion(t *testing.T, b []byte) uint64 {
	t.Helper()
	return mustParse(t, b).Origin.SessionVersion
}

// TestProvisionalThenFinalSameSDP: 183 with SDP (early media both ways),
// then 200 with the same SDP: accepted, same SDP toward the offerer, media
// keeps flowing.
func TestProvisionalThenFinalSameSDP(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	defer s.Close()
	toB, err := s.Offer(SideA, audioSDP(lo, a.port()))
	if err != nil {
		t.Fatal(err)
	}
	early, err := s.ProvisionalAnswer(SideB, audioSDP(lo, b.port()))
	if err != nil {
		t.Fatal(err)
	}
	portA, portB := mediaPort(t, early, 0), mediaPort(t, toB, 0)
	expectRelay(t, a, portA, b, portB, 1) // A -> B: B's address came with the 183
	expectRelay(t, b, portB, a, portA, 2)
	if from, ok := s.Pending(); !ok || from != SideA {
		t.Fatalf("Pending() = %v, %v after the 183, want A, true", from, ok)
	}
	final, err := s.Answer(SideB, audioSDP(lo, b.port()))
	if err != nil {
		t.Fatalf("200 after 183 with the same SDP: %v", err)
	}
	if !bytes.Equal(final, early) {
		t.Fatalf("the 200's SDP toward A differs from the 183's:\n%s\n%s", early, final)
	}
	if _, ok := s.Pending(); ok {
		t.Fatal("offer still pending after the final answer")
	}
	for i := range uint16(3) {
		expectRelay(t, a, portA, b, portB, 10+i)
		expectRelay(t, b, portB, a, portA, 20+i)
	}
}

// TestProvisionalThenFinalNewAddress: the 200 moves B to another address:
// the relay follows and the o= version toward A increments.
func TestProvisionalThenFinalNewAddress(t *testing.T) {
	e := testEngine(t, nil)
	a, b1, b2 := newPeer(t), newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	defer s.Close()
	toB, err := s.Offer(SideA, audioSDP(lo, a.port()))
	if err != nil {
		t.Fatal(err)
	}
	early, err := s.ProvisionalAnswer(SideB, audioSDP(lo, b1.port()))
	if err != nil {
		t.Fatal(err)
	}
	portA, portB := mediaPort(t, early, 0), mediaPort(t, toB, 0)
	expectRelay(t, a, portA, b1, portB, 1)
	expectRelay(t, b1, portB, a, portA, 2) // B latched at b1
	final, err := s.Answer(SideB, audioSDP(lo, b2.port(), "a=sendrecv"))
	if err != nil {
		t.Fatal(err)
	}
	if mediaPort(t, final, 0) != portA {
		t.Fatal("the final answer moved the SBC port toward A")
	}
	if v1, v2 := originVersion(t, early), originVersion(t, final); v2 != v1+1 {
		t.Fatalf("o= version toward A %d -> %d, want +1", v1, v2)
	}
	expectRelay(t, a, portA, b2, portB, 3)
	b1.expectNothing(30 * time.Millisecond)
	expectRelay(t, b2, portB, a, portA, 4)
}

// TestTwoForksThenAnswerFromSecond: two forks answer provisionally, the
// second one answers finally.
func TestTwoForksThenAnswerFromSecond(t *testing.T) {
	e := testEngine(t, nil)
	a, f1, f2 := newPeer(t), newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	defer s.Close()
	toB, err := s.Offer(SideA, audioSDP(lo, a.port()))
	if err != nil {
		t.Fatal(err)
	}
	portB := mediaPort(t, toB, 0)
	e1, err := s.ProvisionalAnswer(SideB, audioSDP(lo, f1.port()))
	if err != nil {
		t.Fatal(err)
	}
	portA := mediaPort(t, e1, 0)
	expectRelay(t, a, portA, f1, portB, 1)
	e2, err := s.ProvisionalAnswer(SideB, audioSDP(lo, f2.port(), "a=label:fork2"))
	if err != nil {
		t.Fatalf("second fork's 183: %v", err)
	}
	if v1, v2 := originVersion(t, e1), originVersion(t, e2); v2 != v1+1 {
		t.Fatalf("o= version toward A %d -> %d, want +1", v1, v2)
	}
	expectRelay(t, a, portA, f2, portB, 2)
	f1.expectNothing(30 * time.Millisecond)
	final, err := s.Answer(SideB, audioSDP(lo, f2.port(), "a=label:fork2"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(final, e2) {
		t.Fatal("the final answer of fork 2 differs from its 183 toward A")
	}
	expectRelay(t, a, portA, f2, portB, 3)
	expectRelay(t, f2, portB, a, portA, 4)
	f1.expectNothing(30 * time.Millisecond)
}

// TestRejectedReofferRestoresAgreedState: a re-INVITE from A moving its
// audio, holding it, dropping video and adding a stream, answered
// provisionally by B from another address, then refused: everything is as
// agreed before.
func TestRejectedReofferRestoresAgreedState(t *testing.T) {
	e := testEngine(t, nil)
	a, av, b, bv := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	a2, a3, b2 := newPeer(t), newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	defer s.Close()
	toB, err := s.Offer(SideA, buildSDP(mline{"audio", a.port(), nil}, mline{"video", av.port(), nil}))
	if err != nil {
		t.Fatal(err)
	}
	toA, err := s.Answer(SideB, buildSDP(mline{"audio", b.port(), nil}, mline{"video", bv.port(), nil}))
	if err != nil {
		t.Fatal(err)
	}
	pA, pB := mediaPort(t, toA, 0), mediaPort(t, toB, 0)
	vA, vB := mediaPort(t, toA, 1), mediaPort(t, toB, 1)
	expectRelay(t, a, pA, b, pB, 1)
	expectRelay(t, b, pB, a, pA, 2)
	expectRelay(t, av, vA, bv, vB, 3)
	agreedPorts := e.PortsInUse()
	s.mu.Lock()
	audio := s.streams[0]
	s.mu.Unlock()

	reoffer, err := s.Offer(SideA, buildSDP(
		mline{"audio", a2.port(), []string{"a=sendonly"}},
		mline{"video", 0, nil},
		mline{"audio", a3.port(), nil}))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.PortsInUse(); got != agreedPorts+4 {
		t.Fatalf("ports in use %d after adding a stream, want %d", got, agreedPorts+4)
	}
	if !audio.held.Load() {
		t.Fatal("audio not on hold while the hold offer is pending")
	}
	expectRelay(t, b, pB, a2, pA, 4) // media toward the offerer follows its offer
	a.expectNothing(30 * time.Millisecond)
	expectRelay(t, bv, vB, av, vA, 5) // the removed stream relays until the answer commits
	early, err := s.ProvisionalAnswer(SideB, buildSDP(
		mline{"audio", b2.port(), []string{"a=recvonly"}},
		mline{"video", 0, nil},
		mline{"audio", b2.port() + 2, nil}))
	if err != nil {
		t.Fatal(err)
	}
	expectRelay(t, a2, pA, b2, pB, 6)

	s.Reject(SideA)
	if _, ok := s.Pending(); ok {
		t.Fatal("offer still pending after Reject")
	}
	if audio.held.Load() {
		t.Fatal("hold not undone")
	}
	if got := e.PortsInUse(); got != agreedPorts {
		t.Fatalf("ports in use %d after Reject, want %d: the added stream was not released", got, agreedPorts)
	}
	if pa, pb := s.Ports(2); pa != 0 || pb != 0 {
		t.Fatalf("added stream still allocated: %d/%d", pa, pb)
	}
	if n := len(s.Stats()); n != 2 {
		t.Fatalf("%d open streams after Reject, want 2", n)
	}
	expectRelay(t, b, pB, a, pA, 7) // A's previous address
	a2.expectNothing(30 * time.Millisecond)
	expectRelay(t, a, pA, b, pB, 8) // B's agreed address, not the 183's
	b2.expectNothing(30 * time.Millisecond)
	expectRelay(t, av, vA, bv, vB, 9) // the removed stream still relays, both ways
	expectRelay(t, bv, vB, av, vA, 10)

	// The next negotiation works, and o= versions never go back.
	again, err := s.Offer(SideB, buildSDP(mline{"audio", b.port(), nil}, mline{"video", bv.port(), nil}))
	if err != nil {
		t.Fatalf("re-offer after Reject: %v", err)
	}
	if v0, v1 := originVersion(t, early), originVersion(t, again); v1 <= v0 {
		t.Fatalf("o= version toward A went from %d to %d", v0, v1)
	}
	back, err := s.Answer(SideA, buildSDP(mline{"audio", a.port(), nil}, mline{"video", av.port(), nil}))
	if err != nil {
		t.Fatal(err)
	}
	if v0, v1 := originVersion(t, reoffer), originVersion(t, back); v1 <= v0 {
		t.Fatalf("o= version toward B went from %d to %d", v0, v1)
	}
	expectRelay(t, a, pA, b, pB, 11)
}

// TestRejectInitialOffer: the refused initial offer leaves no stream; the
// next offer starts afresh.
func TestRejectInitialOffer(t *testing.T) {
	e := testEngine(t, nil)
	a := newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	defer s.Close()
	if _, err := s.Offer(SideA, webexOffer); err != nil {
		t.Fatal(err)
	}
	s.Reject(SideA)
	if _, ok := s.Pending(); ok || e.PortsInUse() != 0 {
		t.Fatalf("after Reject of the initial offer: pending %v, %d ports in use", ok, e.PortsInUse())
	}
	if _, err := s.Answer(SideB, webexOffer); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("answer to a rejected offer: %v", err)
	}
	if _, err := s.Offer(SideB, audioSDP(lo, a.port())); err != nil {
		t.Fatalf("offer after Reject: %v", err)
	}
}

// TestRejectNothingPendingIsNoop: Reject without a pending offer from that
// side changes nothing.
func TestRejectNothingPendingIsNoop(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	s.Reject(SideA)
	s.Reject(SideB)
	if _, ok := s.Pending(); ok {
		t.Fatal("pending after Reject on an agreed session")
	}
	expectRelay(t, a, portA, b, portB, 1)
	expectRelay(t, b, portB, a, portA, 2)

	b2 := newPeer(t)
	if _, err := s.Offer(SideA, audioSDP(lo, a.port(), "a=sendonly")); err != nil {
		t.Fatal(err)
	}
	s.Reject(SideB) // not B's offer
	if from, ok := s.Pending(); !ok || from != SideA {
		t.Fatalf("Reject(B) withdrew A's offer: %v, %v", from, ok)
	}
	if _, err := s.Answer(SideB, audioSDP(lo, b2.port(), "a=recvonly")); err != nil {
		t.Fatal(err)
	}
	s.Reject(SideA) // answered: nothing to withdraw
	expectRelay(t, a, portA, b2, portB, 3)
	if got := e.PortsInUse(); got != 4 {
		t.Fatalf("ports in use %d, want 4", got)
	}
}

// TestOfferWhilePending: an offer from the other side before the pending
// one is answered (here: after a 183 only) is refused with
// ErrOfferPending and changes nothing; the same side may offer again.
func TestOfferWhilePending(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	defer s.Close()
	toB, err := s.Offer(SideA, audioSDP(lo, a.port()))
	if err != nil {
		t.Fatal(err)
	}
	early, err := s.ProvisionalAnswer(SideB, audioSDP(lo, b.port()))
	if err != nil {
		t.Fatal(err)
	}
	portA, portB := mediaPort(t, early, 0), mediaPort(t, toB, 0)
	if _, err := s.Offer(SideB, audioSDP(lo, b.port(), "a=sendonly")); !errors.Is(err, ErrOfferPending) {
		t.Fatalf("offer from B after a provisional answer only: %v", err)
	}
	if from, ok := s.Pending(); !ok || from != SideA {
		t.Fatalf("Pending() = %v, %v", from, ok)
	}
	expectRelay(t, b, portB, a, portA, 1)
	expectRelay(t, a, portA, b, portB, 2)

	// A offers again (e.g. the next target of a serial fork): it replaces
	// the pending offer and keeps the ports.
	toB2, err := s.Offer(SideA, audioSDP(lo, a.port()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(toB2, toB) {
		t.Fatal("the same offer again produced another SDP")
	}
	if got := e.PortsInUse(); got != 4 {
		t.Fatalf("ports in use %d, want 4", got)
	}
	// A replacing offer that fails leaves the pending one as it was.
	if _, err := s.Offer(SideA, plainOffer); !errors.Is(err, ErrNotAcceptable) {
		t.Fatalf("plain replacing offer: %v", err)
	}
	toA, err := s.Answer(SideB, audioSDP(lo, b.port()))
	if err != nil {
		t.Fatal(err)
	}
	if mediaPort(t, toA, 0) != portA {
		t.Fatal("ports moved")
	}
	expectRelay(t, a, portA, b, portB, 3)
	expectRelay(t, b, portB, a, portA, 4)
}

// TestReplacingOfferFailureReinstates: a replacing offer that fails after
// the rollback (no ports for its new stream) reinstates the replaced
// pending offer, streams and addresses included.
func TestReplacingOfferFailureReinstates(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.PortMin, c.PortMax = 12500, 12507 }) // 4 pairs
	a, a2, b := newPeer(t), newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	if _, err := s.Offer(SideA, buildSDP(mline{"audio", a2.port(), nil}, mline{"video", a2.port() + 2, nil})); err != nil {
		t.Fatal(err)
	}
	three := buildSDP(mline{"audio", a2.port(), nil}, mline{"video", a2.port() + 2, nil}, mline{"video", a2.port() + 4, nil})
	if _, err := s.Offer(SideA, three); !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("err = %v, want ErrPortsExhausted", err)
	}
	if from, ok := s.Pending(); !ok || from != SideA {
		t.Fatal("the replaced offer is not pending any more")
	}
	if pa, _ := s.Ports(1); pa == 0 || e.PortsInUse() != 8 {
		t.Fatalf("video stream of the replaced offer lost (port %d, %d ports in use)", pa, e.PortsInUse())
	}
	expectRelay(t, b, portB, a2, portA, 1)
	s.Reject(SideA)
	expectRelay(t, b, portB, a, portA, 2)
	if e.PortsInUse() != 4 {
		t.Fatalf("%d ports in use after Reject, want 4", e.PortsInUse())
	}
}

// TestRejectedRekeyKeepsOldKeys (SRTP termination): a re-offer with a new
// key and another suite, answered provisionally with a new key (early
// media on the new keys both ways), then refused: the old keys work again
// both ways.
func TestRejectedRekeyKeepsOldKeys(t *testing.T) {
	e := testEngine(t, nil)
	tc := newTermCall(t, e, suiteAES128SHA1x80, suiteAES128SHA1x80)
	encA, atB := testCtx(t, tc.keyA), testCtx(t, tc.sbcToB)
	encB, atA := testCtx(t, tc.keyB), testCtx(t, tc.sbcToA)
	seq := uint16(100)
	both := func(encA, atA, encB, atB *srtp.Context) {
		t.Helper()
		seq++
		plain := rtpPacket(0, seq, uint32(seq)*160, 0xA1, 172)
		tc.a.send(tc.portA, seal(t, encA, plain))
		if dec, err := open(atB, mustRecv(tc.b)); err != nil || !bytes.Equal(dec, plain) {
			t.Fatalf("A->B seq %d: %v", seq, err)
		}
		back := rtpPacket(0, seq, uint32(seq)*160, 0xB2, 172)
		tc.b.send(tc.portB, seal(t, encB, back))
		if dec, err := open(atA, mustRecv(tc.a)); err != nil || !bytes.Equal(dec, back) {
			t.Fatalf("B->A seq %d: %v", seq, err)
		}
	}
	both(encA, atA, encB, atB)

	keyA2, keyB2 := newSRTPKey(suiteAEADAES128GCM), newSRTPKey(suiteAES128SHA1x80)
	if _, err := tc.s.Offer(SideA, termSDP(tc.a.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: keyA2}.attrValue())); err != nil {
		t.Fatal(err)
	}
	early, err := tc.s.ProvisionalAnswer(SideB, termSDP(tc.b.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: keyB2}.attrValue()))
	if err != nil {
		t.Fatal(err)
	}
	_, lines := sdpCrypto(t, early)
	if len(lines) != 1 || lines[0].key.suite != suiteAEADAES128GCM || lines[0].key.equal(tc.sbcToA) {
		t.Fatalf("early answer to A: %v", lines)
	}
	both(testCtx(t, keyA2), testCtx(t, lines[0].key), testCtx(t, keyB2), atB)

	tc.s.Reject(SideA)
	for range 3 {
		both(encA, atA, encB, atB)
	}
	// The keys of the refused offer are gone.
	tc.a.send(tc.portA, seal(t, testCtx(t, keyA2), rtpPacket(0, 500, 0, 0xA1, 172)))
	waitFor(t, time.Second, "new key refused", func() bool { return tc.s.Stats()[0].FromA.Drops.Auth == 1 })
	tc.b.expectNothing(30 * time.Millisecond)
}
