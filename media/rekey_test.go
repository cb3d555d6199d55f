package media

import (
	"bytes"
	"testing"

	"github.com/pion/srtp/v3"
)

// TestTerminateRekeyKeepsROC: A's sequence numbers wrap (ROC 1), then A
// re-keys with a re-offer. Its new packets must authenticate whether A
// keeps the ROC across the re-key (RFC 3711, libsrtp's srtp_update) or
// resets it, also when the re-key falls on the wrap, and reach B, whose
// context runs on.
func TestTerminateRekeyKeepsROC(t *testing.T) {
	const ssrc = 0x77
	for _, c := range []struct {
		name     string
		oldUntil uint16 // last sequence number sent with the old key
		newROC   uint32 // the ROC A's new context starts with
		setROC   bool   // false: a fresh context (ROC 0)
	}{
		{"ROC kept", 5, 1, true},
		{"ROC reset by the peer", 5, 0, false},
		{"re-key on the wrap", 65535, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := testEngine(t, nil)
			tc := newTermCall(t, e, suiteAES128SHA1x80, suiteAES128SHA1x80)
			encA, atB := testCtx(t, tc.keyA), testCtx(t, tc.sbcToB)
			seq := uint16(65530)
			send := func(enc *srtp.Context) {
				t.Helper()
				plain := rtpPacket(0, seq, uint32(seq)*160, ssrc, 172)
				tc.a.send(tc.portA, seal(t, enc, plain))
				if dec, err := open(atB, mustRecv(tc.b)); err != nil || !bytes.Equal(dec, plain) {
					t.Fatalf("seq %d: %v", seq, err)
				}
				seq++
			}
			for {
				send(encA)
				if seq-1 == c.oldUntil {
					break
				}
			}
			keyA2 := newSRTPKey(suiteAES128SHA1x80)
			if _, err := tc.s.Offer(SideA, termSDP(tc.a.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: keyA2}.attrValue())); err != nil {
				t.Fatal(err)
			}
			if _, err := tc.s.Answer(SideB, termSDP(tc.b.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: tc.keyB}.attrValue())); err != nil {
				t.Fatal(err)
			}
			encA2 := testCtx(t, keyA2)
			if c.setROC {
				encA2.SetROC(ssrc, c.newROC)
			}
			for range 20 {
				send(encA2)
			}
			st := statsWhen(t, tc.s, "counters", func(st StreamStats) bool { return st.FromA.Packets >= 20 }).FromA
			if st.Drops.Total() != 0 || st.Lost != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestTerminateRekeyKeepsLocalROC: B's sequence numbers wrap, then A
// re-offers another suite, so the SBC's key toward A changes. The SBC's
// new context continues the ROC, as A's receiver (keeping the ROC across
// the re-key) expects.
func TestTerminateRekeyKeepsLocalROC(t *testing.T) {
	const ssrc = 0xB0B
	e := testEngine(t, nil)
	tc := newTermCall(t, e, suiteAES128SHA1x80, suiteAES128SHA1x80)
	encB, atA := testCtx(t, tc.keyB), testCtx(t, tc.sbcToA)
	seq := uint16(65533)
	send := func(at *srtp.Context) {
		t.Helper()
		plain := rtpPacket(0, seq, uint32(seq)*160, ssrc, 172)
		tc.b.send(tc.portB, seal(t, encB, plain))
		if dec, err := open(at, mustRecv(tc.a)); err != nil || !bytes.Equal(dec, plain) {
			t.Fatalf("seq %d: %v", seq, err)
		}
		seq++
	}
	for range 6 { // 65533..65535, 0..2
		send(atA)
	}
	keyA2 := newSRTPKey(suiteAEADAES128GCM)
	toB, err := tc.s.Offer(SideA, termSDP(tc.a.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: keyA2}.attrValue()))
	if err != nil {
		t.Fatal(err)
	}
	_ = toB
	toA, err := tc.s.Answer(SideB, termSDP(tc.b.port(), "RTP/SAVP", nil, cryptoLine{tag: 1, key: tc.keyB}.attrValue()))
	if err != nil {
		t.Fatal(err)
	}
	_, lines := sdpCrypto(t, toA)
	if len(lines) != 1 || lines[0].key.suite != suiteAEADAES128GCM {
		t.Fatalf("answer to A: %v", lines)
	}
	atA2 := testCtx(t, lines[0].key)
	atA2.SetROC(ssrc, 1)
	for range 5 {
		send(atA2)
	}
}

// TestRekeyTransitionZeroAllocs: while a sender still uses its old key
// after a re-key, and after it switched, decrypting a packet allocates
// nothing (pion allocates the error of a failed AEAD open, so the context
// that authenticated the sender's last packet is tried first).
func TestRekeyTransitionZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, id := range []suiteID{suiteAES128SHA1x80, suiteAEADAES128GCM} {
		t.Run(id.String(), func(t *testing.T) {
			k1, k2 := newSRTPKey(id), newSRTPKey(id)
			old, err := newCryptoCtx(k1, true)
			if err != nil {
				t.Fatal(err)
			}
			cur, err := newCryptoCtx(k2, true)
			if err != nil {
				t.Fatal(err)
			}
			cur.succeed(old, true)
			const n = 300
			gen := func(k srtpKey, from uint16) [][]byte {
				enc := testCtx(t, k)
				out := make([][]byte, n)
				for i := range out {
					s := from + uint16(i)
					out[i] = seal(t, enc, rtpPacket(0, s, uint32(s)*160, 5, 172))
				}
				return out
			}
			var x srtpXform
			buf := make([]byte, slotSize)
			run := func(what string, pkts [][]byte) {
				t.Helper()
				i := 0
				step := func() {
					p := buf[:copy(buf, pkts[i])]
					i++
					if _, why := x.unprotect(p, false, SRTPTerminate, cur); why != dropNone {
						t.Fatalf("%s: packet %d dropped (%d)", what, i, why)
					}
				}
				step() // the first packet may allocate (scratch, a failed try)
				if allocs := testing.AllocsPerRun(n-2, step); allocs != 0 {
					t.Fatalf("%s: %.2f allocations per packet", what, allocs)
				}
			}
			run("old key in flight", gen(k1, 1))
			run("new key", gen(k2, n+1))
			if cur.prev.Load() != nil {
				t.Fatal("old key not retired after the new one authenticated")
			}
		})
	}
}
