package media

import (
	"bytes"
	"testing"
	"time"
)

// TestTerminateBestEffortSRTPAnswer: CUCM and Polycom offer best-effort
// SRTP, RTP/AVP(F) with a=crypto. The answer must carry the offer's
// transport (RFC 3264 section 6) with the SBC's a=crypto, and media is
// SRTP both ways. The same holds for the feedback profile of RTP/SAVPF.
func TestTerminateBestEffortSRTPAnswer(t *testing.T) {
	for _, transport := range []string{"RTP/AVP", "RTP/AVPF", "RTP/SAVPF"} {
		t.Run(transport, func(t *testing.T) {
			e := testEngine(t, nil)
			a, b := newPeer(t), newPeer(t)
			s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo, ModeA: SRTPTerminate, ModeB: SRTPTerminate})
			defer s.Close()
			keyA, keyB := newSRTPKey(suiteAES128SHA1x80), newSRTPKey(suiteAES128SHA1x80)
			toB, err := s.Offer(SideA, termSDP(a.port(), transport, nil, cryptoLine{tag: 1, key: keyA}.attrValue()))
			if err != nil {
				t.Fatal(err)
			}
			trB, offered := sdpCrypto(t, toB)
			if trB != "RTP/SAVP" && trB != "RTP/SAVPF" {
				t.Fatalf("offer to B: %s", trB)
			}
			// B answers without feedback whatever it was offered: the answer
			// to A still follows A's offer.
			toA, err := s.Answer(SideB, termSDP(b.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: keyB}.attrValue()))
			if err != nil {
				t.Fatal(err)
			}
			tr, lines := sdpCrypto(t, toA)
			if tr != transport || len(lines) != 1 || lines[0].tag != 1 {
				t.Fatalf("answer to A: %s with %v, want %s with our tag 1", tr, lines, transport)
			}
			portA, portB := mediaPort(t, toA, 0), mediaPort(t, toB, 0)
			plain := rtpPacket(0, 1, 160, 1, 172)
			a.send(portA, seal(t, testCtx(t, keyA), plain))
			if dec, err := open(testCtx(t, offered[0].key), mustRecv(b)); err != nil || !bytes.Equal(dec, plain) {
				t.Fatalf("A->B: %v", err)
			}
			b.send(portB, seal(t, testCtx(t, keyB), plain))
			got, _ := a.recv(time.Second)
			if dec, err := open(testCtx(t, lines[0].key), got); err != nil || !bytes.Equal(dec, plain) {
				t.Fatalf("B->A: %v", err)
			}
		})
	}
}

// TestTerminateReofferOffersAgreedSuite: a caller that offered (and so
// agreed) a single 256-bit suite later gets the SBC's re-offer, when the
// callee re-INVITEs. The re-offer lists the agreed suite first, with the
// key the SBC used on that leg, and includes the 256-bit suites, so the
// caller can answer without a 488.
func TestTerminateReofferOffersAgreedSuite(t *testing.T) {
	for _, id := range []suiteID{suiteAEADAES256GCM, suiteAES256SHA1x80, suiteAES256SHA1x32} {
		t.Run(id.String(), func(t *testing.T) {
			e := testEngine(t, nil)
			tc := newTermCall(t, e, id, suiteAES128SHA1x80)
			toA, err := tc.s.Offer(SideB, termSDP(tc.b.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: tc.keyB}.attrValue()))
			if err != nil {
				t.Fatal(err)
			}
			_, lines := sdpCrypto(t, toA)
			if len(lines) == 0 || lines[0].key.suite != id || !lines[0].key.equal(tc.sbcToA) {
				t.Fatalf("re-offer to A does not start with the agreed %v and its key: %v", id, lines)
			}
			var suites []suiteID
			tags := map[int]bool{}
			for _, l := range lines {
				suites = append(suites, l.key.suite)
				if tags[l.tag] {
					t.Fatalf("tag %d twice", l.tag)
				}
				tags[l.tag] = true
			}
			for _, want := range []suiteID{suiteAES128SHA1x80, suiteAES128SHA1x32, suiteAEADAES128GCM, suiteAES256SHA1x80, suiteAEADAES256GCM} {
				found := false
				for _, s := range suites {
					found = found || s == want
				}
				if !found {
					t.Fatalf("re-offer to A lacks %v: %v", want, suites)
				}
			}
			// A only does its 256-bit suite: it answers that line.
			keyA2 := newSRTPKey(id)
			toB, err := tc.s.Answer(SideA, termSDP(tc.a.port(), "RTP/SAVP", nil, cryptoLine{tag: lines[0].tag, key: keyA2}.attrValue()))
			if err != nil {
				t.Fatalf("A's answer with the agreed suite: %v", err)
			}
			if _, l := sdpCrypto(t, toB); len(l) != 1 || !l[0].key.equal(tc.sbcToB) {
				t.Fatalf("answer to B: %v", l)
			}
			plain := rtpPacket(0, 1, 160, 1, 172)
			tc.a.send(tc.portA, seal(t, testCtx(t, keyA2), plain))
			if dec, err := open(testCtx(t, tc.sbcToB), mustRecv(tc.b)); err != nil || !bytes.Equal(dec, plain) {
				t.Fatalf("A->B: %v", err)
			}
			tc.b.send(tc.portB, seal(t, testCtx(t, tc.keyB), plain))
			if dec, err := open(testCtx(t, tc.sbcToA), mustRecv(tc.a)); err != nil || !bytes.Equal(dec, plain) {
				t.Fatalf("B->A: %v", err)
			}
		})
	}
}

// TestOurOfferSuites: the SBC's first offer toward a leg lists the three
// 128-bit suites, then AES_256_CM_HMAC_SHA1_80 and AEAD_AES_256_GCM.
func TestOurOfferSuites(t *testing.T) {
	var keys [numSuites]srtpKey
	for id := range numSuites {
		keys[id] = newSRTPKey(id)
	}
	want := []suiteID{suiteAES128SHA1x80, suiteAES128SHA1x32, suiteAEADAES128GCM, suiteAES256SHA1x80, suiteAEADAES256GCM}
	got := ourOffer(&keys, secAgreed{})
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i, l := range got {
		if l.tag != i+1 || l.key.suite != want[i] || !l.key.equal(keys[want[i]]) {
			t.Fatalf("line %d: %v, want tag %d %v", i, l, i+1, want[i])
		}
	}
	// An answer must pick a line as offered: tag and suite.
	if _, ok := matchAnswer([]cryptoLine{{tag: 4, key: keys[suiteAEADAES256GCM]}}, got); ok {
		t.Fatal("tag 4 with the wrong suite accepted")
	}
	if c, ok := matchAnswer([]cryptoLine{{tag: 5, key: newSRTPKey(suiteAEADAES256GCM)}}, got); !ok || c.tag != 5 {
		t.Fatal("tag 5 AEAD_AES_256_GCM refused")
	}
}
