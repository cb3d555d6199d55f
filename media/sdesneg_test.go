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
