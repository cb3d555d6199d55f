package media

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// termSDP is a one-stream audio SDP at 127.0.0.1:port with the given
// transport and a=crypto values.
func termSDP(port int, transport string, extra []string, crypto ...string) []byte {
	s := fmt.Sprintf(`v=0
o=peer 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio %d %s 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
`, port, transport)
	for _, c := range crypto {
		s += "a=crypto:" + c + "\n"
	}
	if extra == nil {
		extra = []string{"a=rtcp-mux"}
	}
	for _, x := range extra {
		s += x + "\n"
	}
	return sdpLines(s)
}

// sdpCrypto returns the transport and the a=crypto lines of m-line 0.
func sdpCrypto(t testing.TB, b []byte) (string, []cryptoLine) {
	t.Helper()
	md := mustParse(t, b).MediaDescriptions[0]
	var out []cryptoLine
	for _, a := range md.Attributes {
		if a.Key == "crypto" {
			c, err := parseCrypto(a.Value)
			if err != nil {
				t.Fatalf("SBC sent a bad a=crypto: %v", err)
			}
			out = append(out, c)
		}
	}
	return proto(md), out
}

// testCtx is a test endpoint's SRTP context for k (no replay check).
func testCtx(t testing.TB, k srtpKey) *srtp.Context {
	t.Helper()
	i := k.suite.info()
	c, err := srtp.CreateContext(k.material[:i.keyLen], k.material[i.keyLen:], i.profile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func seal(t testing.TB, c *srtp.Context, plain []byte) []byte {
	t.Helper()
	out, err := c.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func open(c *srtp.Context, enc []byte) ([]byte, error) {
	return c.DecryptRTP(nil, enc, nil)
}

// termCall sets up a one-stream audio call, side A offering suiteA with a
// fresh key, side B answering suiteB. It returns the session, the SBC
// ports and the four keys: the peers' own and those the SBC sent them.
type termCall struct {
	s                *Session
	a, b             *peer
	portA, portB     int
	keyA, keyB       srtpKey // the peers' keys
	sbcToA, sbcToB   srtpKey // the SBC's keys, from the SDP it sent
	offerToB, answer []byte
}

func newTermCall(t testing.TB, e *Engine, suiteA, suiteB suiteID) *termCall {
	t.Helper()
	c := &termCall{a: newPeer(t), b: newPeer(t), keyA: newSRTPKey(suiteA), keyB: newSRTPKey(suiteB)}
	c.s = e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo, ModeA: SRTPTerminate, ModeB: SRTPTerminate})
	t.Cleanup(func() { c.s.Close() })
	// An unsupported suite first: it must be skipped, tag 2 answered.
	offer := termSDP(c.a.port(), "RTP/SAVP", nil,
		"1 F8_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
		cryptoLine{tag: 2, key: c.keyA}.attrValue())
	toB, err := c.s.Offer(SideA, offer)
	if err != nil {
		t.Fatal(err)
	}
	c.offerToB = toB
	tr, lines := sdpCrypto(t, toB)
	if tr != "RTP/SAVP" || len(lines) != len(offerSuites) {
		t.Fatalf("offer to B: %s with %d crypto lines, want RTP/SAVP with %d", tr, len(lines), len(offerSuites))
	}
	tagB := 0
	for i, l := range lines {
		if l.tag != i+1 || l.key.suite != offerSuites[i] || bytes.Equal(l.key.material, c.keyA.material) {
			t.Fatalf("offer to B, line %d: %v", i, l)
		}
		if l.key.suite == suiteB {
			tagB, c.sbcToB = l.tag, l.key
		}
	}
	if tagB == 0 {
		t.Fatalf("SBC did not offer %v to B", suiteB)
	}
	toA, err := c.s.Answer(SideB, termSDP(c.b.port(), "RTP/SAVP", nil, cryptoLine{tag: tagB, key: c.keyB}.attrValue()))
	if err != nil {
		t.Fatal(err)
	}
	c.answer = toA
	tr, lines = sdpCrypto(t, toA)
	if tr != "RTP/SAVP" || len(lines) != 1 || lines[0].tag != 2 || lines[0].key.suite != suiteA {
		t.Fatalf("answer to A: %s %v", tr, lines)
	}
	c.sbcToA = lines[0].key
	if c.sbcToA.equal(c.keyA) || c.sbcToA.equal(c.keyB) || bytes.Equal(c.sbcToA.material, c.sbcToB.material) {
		t.Fatal("the SBC reused a peer's key or the same key on both legs")
	}
	c.portA, c.portB = mediaPort(t, toA, 0), mediaPort(t, toB, 0)
	return c
}

func TestTerminateEndToEnd(t *testing.T) {
	e := testEngine(t, nil)
	for _, c := range []struct{ a, b suiteID }{
		{suiteAES128SHA1x80, suiteAES128SHA1x80},
		{suiteAES128SHA1x32, suiteAES128SHA1x32},
		{suiteAEADAES128GCM, suiteAEADAES128GCM},
		{suiteAES256SHA1x80, suiteAEADAES128GCM},
		{suiteAEADAES256GCM, suiteAES128SHA1x32},
	} {
		t.Run(c.a.String()+"/"+c.b.String(), func(t *testing.T) {
			tc := newTermCall(t, e, c.a, c.b)
			encA, encB := testCtx(t, tc.keyA), testCtx(t, tc.keyB)
			atB, atA := testCtx(t, tc.sbcToB), testCtx(t, tc.sbcToA)
			for i := range 10 {
				plain := rtpPacket(0, uint16(1000+i), uint32(160*i), 0xA1, 172)
				tc.a.send(tc.portA, seal(t, encA, plain))
				got, from := tc.b.recv(time.Second)
				if from != netip.AddrPortFrom(lo, uint16(tc.portB)) {
					t.Fatalf("A->B from %v", from)
				}
				if _, err := open(testCtx(t, tc.keyA), got); err == nil {
					t.Fatal("packet to B decrypts with A's key: not re-encrypted")
				}
				dec, err := open(atB, got)
				if err != nil {
					t.Fatalf("A->B packet %d does not decrypt with the SBC's key to B: %v", i, err)
				}
				if !bytes.Equal(dec, plain) {
					t.Fatalf("A->B packet %d: payload changed", i)
				}

				back := rtpPacket(8, uint16(50000+i), uint32(160*i), 0xB2, 172)
				tc.b.send(tc.portB, seal(t, encB, back))
				got, _ = tc.a.recv(time.Second)
				if _, err := open(testCtx(t, tc.keyB), got); err == nil {
					t.Fatal("packet to A decrypts with B's key: not re-encrypted")
				}
				if dec, err = open(atA, got); err != nil || !bytes.Equal(dec, back) {
					t.Fatalf("B->A packet %d: %v", i, err)
				}
			}

			// SRTCP muxed on the RTP port (RFC 5761), both ways.
			rr := []byte{0x81, 201, 0, 7, 0, 0, 0, 0xA1, 0, 0, 0, 0xB2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
			enc, err := encA.EncryptRTCP(nil, rr, nil)
			if err != nil {
				t.Fatal(err)
			}
			tc.a.send(tc.portA, enc)
			got, _ := tc.b.recv(time.Second)
			if dec, err := atB.DecryptRTCP(nil, got, nil); err != nil || !bytes.Equal(dec, rr) {
				t.Fatalf("SRTCP A->B: %v", err)
			}
			if enc, err = encB.EncryptRTCP(nil, rr, nil); err != nil {
				t.Fatal(err)
			}
			tc.b.send(tc.portB, enc)
			got, _ = tc.a.recv(time.Second)
			if dec, err := atA.DecryptRTCP(nil, got, nil); err != nil || !bytes.Equal(dec, rr) {
				t.Fatalf("SRTCP B->A: %v", err)
			}

			st := statsWhen(t, tc.s, "counters", func(st StreamStats) bool {
				return st.FromA.RTCPPackets == 1 && st.FromB.RTCPPackets == 1
			})
			if st.FromA.Packets != 10 || st.FromB.Packets != 10 || st.FromA.RTCPPackets != 1 ||
				st.FromA.Drops.Total() != 0 || st.FromB.Drops.Total() != 0 || st.FromA.Lost != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestTerminateTamperedAndReplayedDropped(t *testing.T) {
	e := testEngine(t, nil)
	for _, id := range offerSuites {
		t.Run(id.String(), func(t *testing.T) {
			tc := newTermCall(t, e, id, id)
			encA, atB := testCtx(t, tc.keyA), testCtx(t, tc.sbcToB)
			good := seal(t, encA, rtpPacket(0, 1, 0, 7, 172))
			tc.a.send(tc.portA, good)
			if _, err := open(atB, mustRecv(tc.b)); err != nil {
				t.Fatal(err)
			}

			// Flip a bit of the auth tag (the last bytes of the packet).
			bad := seal(t, encA, rtpPacket(0, 2, 160, 7, 172))
			bad[len(bad)-1] ^= 0x01
			tc.a.send(tc.portA, bad)
			waitFor(t, time.Second, "auth drop", func() bool { return tc.s.Stats()[0].FromA.Drops.Auth == 1 })
			tc.b.expectNothing(50 * time.Millisecond)
			// Flip a payload byte of a later packet: same verdict.
			bad = seal(t, encA, rtpPacket(0, 3, 320, 7, 172))
			bad[20] ^= 0x80
			tc.a.send(tc.portA, bad)
			waitFor(t, time.Second, "second auth drop", func() bool { return tc.s.Stats()[0].FromA.Drops.Auth == 2 })

			// Replay the first, genuine packet.
			tc.a.send(tc.portA, good)
			waitFor(t, time.Second, "replay drop", func() bool { return tc.s.Stats()[0].FromA.Drops.Replay == 1 })
			tc.b.expectNothing(50 * time.Millisecond)

			// The stream still works, and drops were not counted as media.
			next := rtpPacket(0, 4, 480, 7, 172)
			tc.a.send(tc.portA, seal(t, encA, next))
			if dec, err := open(atB, mustRecv(tc.b)); err != nil || !bytes.Equal(dec, next) {
				t.Fatalf("after drops: %v", err)
			}
			st := statsWhen(t, tc.s, "counters", func(st StreamStats) bool { return st.FromA.Packets == 2 }).FromA
			if st.Packets != 2 || st.Drops.Auth != 2 || st.Drops.Replay != 1 || st.Drops.Total() != 3 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestTerminateInterworkingPlainRTP(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo, ModeA: SRTPTerminate, ModeB: SRTPPlainRTP})
	defer s.Close()
	keyA := newSRTPKey(suiteAES128SHA1x80)
	toB, err := s.Offer(SideA, termSDP(a.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: keyA}.attrValue()))
	if err != nil {
		t.Fatal(err)
	}
	if tr, lines := sdpCrypto(t, toB); tr != "RTP/AVP" || len(lines) != 0 {
		t.Fatalf("offer to the plain RTP leg: %s with %d crypto lines", tr, len(lines))
	}
	toA, err := s.Answer(SideB, termSDP(b.port(), "RTP/AVP", nil))
	if err != nil {
		t.Fatal(err)
	}
	tr, lines := sdpCrypto(t, toA)
	if tr != "RTP/SAVP" || len(lines) != 1 || lines[0].tag != 1 || lines[0].key.suite != suiteAES128SHA1x80 {
		t.Fatalf("answer to the SRTP leg: %s %v", tr, lines)
	}
	portA, portB := mediaPort(t, toA, 0), mediaPort(t, toB, 0)
	encA, atA := testCtx(t, keyA), testCtx(t, lines[0].key)
	for i := range 5 {
		plain := rtpPacket(0, uint16(10+i), uint32(160*i), 1, 172)
		a.send(portA, seal(t, encA, plain))
		if got, _ := b.recv(time.Second); !bytes.Equal(got, plain) {
			t.Fatalf("A->B packet %d: plain RTP leg did not get the plaintext", i)
		}
		back := rtpPacket(0, uint16(20+i), uint32(160*i), 2, 172)
		b.send(portB, back)
		got, _ := a.recv(time.Second)
		if bytes.Equal(got, back) {
			t.Fatal("B->A sent in clear to the SRTP leg")
		}
		if dec, err := open(atA, got); err != nil || !bytes.Equal(dec, back) {
			t.Fatalf("B->A packet %d: %v", i, err)
		}
	}

	// Re-offer from the plain leg, with feedback (AVPF): the SRTP leg gets
	// RTP/SAVPF and our suites, the agreed one first (the first anyway),
	// answers GCM (tag 3) with a new key.
	toA, err = s.Offer(SideB, termSDP(b.port(), "RTP/AVPF", nil))
	if err != nil {
		t.Fatal(err)
	}
	tr, lines = sdpCrypto(t, toA)
	if tr != "RTP/SAVPF" || len(lines) != len(offerSuites) || lines[2].tag != 3 || lines[2].key.suite != suiteAEADAES128GCM {
		t.Fatalf("offer to the SRTP leg: %s %v", tr, lines)
	}
	keyA2 := newSRTPKey(suiteAEADAES128GCM)
	toB, err = s.Answer(SideA, termSDP(a.port(), "RTP/SAVPF", nil, cryptoLine{tag: 3, key: keyA2}.attrValue()))
	if err != nil {
		t.Fatal(err)
	}
	if tr, l := sdpCrypto(t, toB); tr != "RTP/AVPF" || len(l) != 0 {
		t.Fatalf("answer to the plain leg: %s %v", tr, l)
	}
	encA2, atA2 := testCtx(t, keyA2), testCtx(t, lines[2].key)
	plain := rtpPacket(0, 100, 16000, 1, 172)
	a.send(portA, seal(t, encA2, plain))
	if got, _ := b.recv(time.Second); !bytes.Equal(got, plain) {
		t.Fatal("after re-key to GCM: A->B")
	}
	back := rtpPacket(0, 200, 16000, 2, 172)
	b.send(portB, back)
	if dec, err := open(atA2, mustRecv(a)); err != nil || !bytes.Equal(dec, back) {
		t.Fatalf("after re-key to GCM: B->A: %v", err)
	}
}

// statsWhen waits until cond holds for the stats of m-line 0 (readers
// publish once per batch, after sending) and returns them.
func statsWhen(t testing.TB, s *Session, what string, cond func(StreamStats) bool) StreamStats {
	t.Helper()
	var st StreamStats
	waitFor(t, time.Second, what, func() bool { st = s.Stats()[0]; return cond(st) })
	return st
}

func mustRecv(p *peer) []byte {
	p.t.Helper()
	b, _ := p.recv(time.Second)
	return b
}

func TestTerminateRefusesUnusableCrypto(t *testing.T) {
	e := testEngine(t, nil)
	const secret = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
	for name, offer := range map[string][]byte{
		"plain RTP":         termSDP(5000, "RTP/AVP", nil),
		"unsupported suite": termSDP(5000, "RTP/SAVP", nil, "1 F8_128_HMAC_SHA1_80 inline:"+secret),
		"short key":         termSDP(5000, "RTP/SAVP", nil, "1 AES_CM_128_HMAC_SHA1_80 inline:"+secret[:20]),
		"DTLS only":         termSDP(5000, "UDP/TLS/RTP/SAVPF", []string{"a=fingerprint:sha-256 AB:CD", "a=setup:actpass"}),
	} {
		s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo, ModeA: SRTPTerminate, ModeB: SRTPPlainRTP})
		_, err := s.Offer(SideA, offer)
		if !errors.Is(err, ErrNotAcceptable) {
			t.Fatalf("%s: err = %v, want ErrNotAcceptable", name, err)
		}
		if strings.Contains(err.Error(), secret[:12]) {
			t.Fatalf("%s: error leaks the key: %v", name, err)
		}
		if e.PortsInUse() != 0 {
			t.Fatalf("%s: refused offer holds ports", name)
		}
		s.Close()
	}

	// A terminate-mode answer must accept one of our lines.
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo, ModeA: SRTPPlainRTP, ModeB: SRTPTerminate})
	defer s.Close()
	if _, err := s.Offer(SideA, termSDP(5000, "RTP/AVP", nil)); err != nil {
		t.Fatal(err)
	}
	wrongSuite := cryptoLine{tag: 1, key: newSRTPKey(suiteAEADAES128GCM)} // tag 1 is AES_CM_128_HMAC_SHA1_80
	for _, ans := range [][]byte{termSDP(5002, "RTP/AVP", nil), termSDP(5002, "RTP/SAVP", nil, wrongSuite.attrValue())} {
		if _, err := s.Answer(SideB, ans); !errors.Is(err, ErrNotAcceptable) {
			t.Fatalf("answer: err = %v, want ErrNotAcceptable", err)
		}
	}
	if _, err := s.Answer(SideB, termSDP(5002, "RTP/SAVP", nil, cryptoLine{tag: 3, key: newSRTPKey(suiteAEADAES128GCM)}.attrValue())); err != nil {
		t.Fatalf("valid answer after refused ones: %v", err)
	}

	// Invalid modes are refused, not treated as pass-through.
	bad := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo, ModeA: 9})
	defer bad.Close()
	if _, err := bad.Offer(SideA, audioSDP(lo, 5000)); !errors.Is(err, ErrBadSRTPMode) {
		t.Fatalf("mode 9: %v", err)
	}
}

func TestTerminateSequenceWrap(t *testing.T) {
	e := testEngine(t, nil)
	tc := newTermCall(t, e, suiteAES128SHA1x80, suiteAEADAES128GCM)
	encA, atB := testCtx(t, tc.keyA), testCtx(t, tc.sbcToB)
	encB, atA := testCtx(t, tc.keyB), testCtx(t, tc.sbcToA)
	seq := uint16(65530)
	for i := range 14 { // 65530..65535, 0..7: ROC 0 then 1
		plain := rtpPacket(0, seq, uint32(160*i), 9, 172)
		tc.a.send(tc.portA, seal(t, encA, plain))
		if dec, err := open(atB, mustRecv(tc.b)); err != nil || !bytes.Equal(dec, plain) {
			t.Fatalf("A->B seq %d: %v", seq, err)
		}
		back := rtpPacket(0, seq, uint32(160*i), 10, 172)
		tc.b.send(tc.portB, seal(t, encB, back))
		if dec, err := open(atA, mustRecv(tc.a)); err != nil || !bytes.Equal(dec, back) {
			t.Fatalf("B->A seq %d: %v", seq, err)
		}
		seq++
	}
	if roc, ok := atB.ROC(9); !ok || roc != 1 {
		t.Fatalf("receiver ROC = %d, %v; want 1", roc, ok)
	}
	st := statsWhen(t, tc.s, "counters", func(st StreamStats) bool { return st.FromB.Packets == 14 && st.FromA.Packets == 14 }).FromA
	if st.Lost != 0 || st.Drops.Total() != 0 || st.Packets != 14 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTerminateRekeyOnReoffer(t *testing.T) {
	e := testEngine(t, nil)
	tc := newTermCall(t, e, suiteAES128SHA1x80, suiteAES128SHA1x80)
	encA, atB := testCtx(t, tc.keyA), testCtx(t, tc.sbcToB)
	var sent [][]byte
	send := func(c *srtp.Context, seq uint16) {
		t.Helper()
		plain := rtpPacket(0, seq, uint32(seq)*160, 0x5EC, 172)
		sent = append(sent, plain)
		tc.a.send(tc.portA, seal(t, c, plain))
		if dec, err := open(atB, mustRecv(tc.b)); err != nil || !bytes.Equal(dec, plain) {
			t.Fatalf("seq %d: %v", seq, err)
		}
	}
	for seq := range uint16(5) {
		send(encA, seq+1)
	}

	// A re-offers with a new key (and the same key repeated would keep the
	// context: checked below). Until the answer, A still uses its old key.
	keyA2 := newSRTPKey(suiteAES128SHA1x80)
	reoffer := termSDP(tc.a.port(), "RTP/SAVP", []string{"a=rtcp-mux", "a=sendrecv"}, cryptoLine{tag: 1, key: keyA2}.attrValue())
	toB, err := tc.s.Offer(SideA, reoffer)
	if err != nil {
		t.Fatal(err)
	}
	_, lines := sdpCrypto(t, toB)
	_, first := sdpCrypto(t, tc.offerToB)
	for i := range lines {
		if !lines[i].key.equal(first[i].key) {
			t.Fatal("re-offer changed the SBC's keys toward B")
		}
	}
	send(encA, 6) // old key, between offer and answer
	toA, err := tc.s.Answer(SideB, termSDP(tc.b.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: tc.keyB}.attrValue()))
	if err != nil {
		t.Fatal(err)
	}
	if _, l := sdpCrypto(t, toA); len(l) != 1 || l[0].tag != 1 || !l[0].key.equal(tc.sbcToA) {
		t.Fatal("answer to A changed the SBC's key toward A")
	}
	// A switches keys when the 200 reaches it (RFC 4568 section 7.1.4):
	// what it sent before that, with the old key, arrives after the SBC
	// processed the answer, and is not lost (RTP and SRTCP).
	send(encA, 7)
	send(encA, 8)
	rr := []byte{0x81, 201, 0, 7, 0, 0, 0x05, 0xEC, 0, 0, 0, 0xB2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	srtcp, err := encA.EncryptRTCP(nil, rr, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc.a.send(tc.portA, srtcp)
	if dec, err := atB.DecryptRTCP(nil, mustRecv(tc.b), nil); err != nil || !bytes.Equal(dec, rr) {
		t.Fatalf("SRTCP with the old key after the answer: %v", err)
	}
	encA2 := testCtx(t, keyA2)
	for seq := range uint16(5) {
		send(encA2, seq+9) // new key: B's context runs on, undisturbed
	}
	if d := tc.s.Stats()[0].FromA.Drops; d.Total() != 0 {
		t.Fatalf("packets lost across the re-key: %+v", d)
	}
	// Once the new key authenticated, the old one is retired.
	tc.a.send(tc.portA, seal(t, encA, rtpPacket(0, 20, 0, 0x5EC, 172)))
	waitFor(t, time.Second, "old key refused", func() bool { return tc.s.Stats()[0].FromA.Drops.Auth == 1 })
	tc.b.expectNothing(30 * time.Millisecond)

	// A re-offer repeating the key keeps the context: a replay of a packet
	// seen before the re-INVITE is still caught.
	replay := seal(t, testCtx(t, keyA2), rtpPacket(0, 10, 10*160, 0x5EC, 172))
	if _, err := tc.s.Offer(SideA, reoffer); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.s.Answer(SideB, termSDP(tc.b.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: tc.keyB}.attrValue())); err != nil {
		t.Fatal(err)
	}
	tc.a.send(tc.portA, replay)
	waitFor(t, time.Second, "replay drop", func() bool { return tc.s.Stats()[0].FromA.Drops.Replay == 1 })
	tc.b.expectNothing(30 * time.Millisecond)
	if n := tc.s.Stats()[0].FromA.Packets; n != uint64(len(sent)) {
		t.Fatalf("%d packets accounted, sent %d", n, len(sent))
	}
}

// TestTerminateRTCPSocket covers SRTCP on a separate RTCP port (no
// rtcp-mux) in both directions.
func TestTerminateRTCPSocket(t *testing.T) {
	e := testEngine(t, nil)
	a, b, aRTCP, bRTCP := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo, ModeA: SRTPTerminate, ModeB: SRTPPlainRTP})
	defer s.Close()
	keyA := newSRTPKey(suiteAEADAES128GCM)
	toB, err := s.Offer(SideA, termSDP(a.port(), "RTP/SAVP", []string{"a=rtcp:" + itoa(aRTCP.port())}, cryptoLine{tag: 1, key: keyA}.attrValue()))
	if err != nil {
		t.Fatal(err)
	}
	toA, err := s.Answer(SideB, termSDP(b.port(), "RTP/AVP", []string{"a=rtcp:" + itoa(bRTCP.port())}))
	if err != nil {
		t.Fatal(err)
	}
	_, lines := sdpCrypto(t, toA)
	portA, portB := mediaPort(t, toA, 0), mediaPort(t, toB, 0)
	encA, atA := testCtx(t, keyA), testCtx(t, lines[0].key)
	sr := []byte{0x80, 200, 0, 6, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	enc, err := encA.EncryptRTCP(nil, sr, nil)
	if err != nil {
		t.Fatal(err)
	}
	aRTCP.send(portA+1, enc)
	if got := mustRecv(bRTCP); !bytes.Equal(got, sr) {
		t.Fatal("SRTCP A->B not decrypted for the plain leg")
	}
	bRTCP.send(portB+1, sr)
	var h rtcp.Header
	if dec, err := atA.DecryptRTCP(nil, mustRecv(aRTCP), &h); err != nil || !bytes.Equal(dec, sr) || h.Type != rtcp.TypeSenderReport {
		t.Fatalf("RTCP B->A not encrypted with the SBC's key: %v", err)
	}
	st := statsWhen(t, s, "counters", func(st StreamStats) bool { return st.FromA.RTCPPackets == 1 && st.FromB.RTCPPackets == 1 })
	if st.FromA.RTCPPackets != 1 || st.FromB.RTCPPackets != 1 || st.FromA.Drops.Total()+st.FromB.Drops.Total() != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestTerminateEarlyMedia: A's key is usable as soon as A offers, so its
// packets are decrypted (then wait for B's address); B's packets before
// its answer have no key and are dropped as NoKey, without latching.
func TestTerminateEarlyMedia(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo, ModeA: SRTPTerminate, ModeB: SRTPTerminate})
	defer s.Close()
	keyA := newSRTPKey(suiteAES128SHA1x80)
	toB, err := s.Offer(SideA, termSDP(a.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: keyA}.attrValue()))
	if err != nil {
		t.Fatal(err)
	}
	portA, portB := s.Ports(0)
	if portB != mediaPort(t, toB, 0) {
		t.Fatal("Ports and SDP disagree")
	}
	b.send(portB, seal(t, testCtx(t, newSRTPKey(suiteAES128SHA1x80)), rtpPacket(0, 1, 0, 2, 172)))
	waitFor(t, time.Second, "NoKey drop", func() bool { return s.Stats()[0].FromB.Drops.NoKey == 1 })
	a.send(portA, seal(t, testCtx(t, keyA), rtpPacket(0, 1, 0, 1, 172)))
	waitFor(t, time.Second, "NoDestination drop", func() bool { return s.Stats()[0].FromA.Drops.NoDestination == 1 })
	if d := s.Stats()[0].FromA.Drops; d.Auth+d.NoKey != 0 {
		t.Fatalf("A's early packet was not decrypted: %+v", d)
	}
	b.expectNothing(30 * time.Millisecond) // B was not latched by its unauthenticated packet
}

// TestTerminateLatchesOnlyAuthentic: a forged packet from another address
// is dropped and does not move the destination toward A.
func TestTerminateLatchesOnlyAuthentic(t *testing.T) {
	e := testEngine(t, nil)
	tc := newTermCall(t, e, suiteAES128SHA1x80, suiteAES128SHA1x80)
	attacker := newPeer(t)
	forged := seal(t, testCtx(t, newSRTPKey(suiteAES128SHA1x80)), rtpPacket(0, 1, 0, 1, 172))
	attacker.send(tc.portA, forged)
	waitFor(t, time.Second, "auth drop", func() bool { return tc.s.Stats()[0].FromA.Drops.Auth == 1 })
	back := rtpPacket(0, 1, 0, 2, 172)
	tc.b.send(tc.portB, seal(t, testCtx(t, tc.keyB), back))
	if dec, err := open(testCtx(t, tc.sbcToA), mustRecv(tc.a)); err != nil || !bytes.Equal(dec, back) {
		t.Fatalf("B->A after a forged packet: %v", err)
	}
	attacker.expectNothing(30 * time.Millisecond)
}

// TestTerminateNeverForwardsPeerKeys: no a=crypto of one leg reaches the
// other, in active, rejected or re-offered m-lines.
func TestTerminateNeverForwardsPeerKeys(t *testing.T) {
	e := testEngine(t, nil)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo, ModeA: SRTPTerminate, ModeB: SRTPTerminate})
	defer s.Close()
	kAudio, kVideo := newSRTPKey(suiteAES128SHA1x80), newSRTPKey(suiteAES128SHA1x80)
	offer := string(termSDP(5000, "RTP/SAVP", nil, cryptoLine{tag: 1, key: kAudio}.attrValue())) +
		"m=video 0 RTP/SAVP 97\r\na=crypto:1 " + cryptoLine{tag: 1, key: kVideo}.attrValue()[2:] + "\r\n"
	toB, err := s.Offer(SideA, []byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(k srtpKey) string {
		return strings.TrimPrefix(cryptoLine{key: k}.attrValue()[len("0 AES_CM_128_HMAC_SHA1_80 "):], "inline:")
	}
	for _, k := range []srtpKey{kAudio, kVideo} {
		if strings.Contains(string(toB), b64(k)) {
			t.Fatalf("A's key forwarded to B:\n%s", redact(string(toB)))
		}
	}
	if sd := mustParse(t, toB); hasAttr(sd.MediaDescriptions[1].Attributes, "crypto") {
		t.Fatal("rejected m-line still carries a=crypto")
	}
}
