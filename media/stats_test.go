package media

import (
	"testing"
	"time"
)

func TestSeqTrackerLossAndReorder(t *testing.T) {
	var tr seqTracker
	// Across the 16-bit wrap: 65532 arrives late, 2 is missing.
	for _, s := range []uint16{65530, 65531, 65533, 65532, 65534, 65535, 0, 1, 3, 4} {
		tr.update(s, 0, 1, 0, 0)
	}
	exp, lost := tr.expectedLost()
	if exp != 11 || lost != 1 {
		t.Fatalf("expected %d lost %d, want 11 and 1", exp, lost)
	}
	if tr.outOfOrder != 1 {
		t.Fatalf("out of order %d, want 1", tr.outOfOrder)
	}
	// A duplicate counts as received (RFC 3550 A.3), hiding one loss.
	tr.update(4, 0, 1, 0, 0)
	if _, lost := tr.expectedLost(); lost != 0 || tr.outOfOrder != 2 {
		t.Fatalf("after duplicate: lost %d out of order %d", lost, tr.outOfOrder)
	}
	// A jump beyond MAX_DROPOUT is ignored until confirmed by the next
	// sequence number, then restarts the sequence.
	tr.update(30000, 0, 1, 0, 0)
	if e, _ := tr.expectedLost(); e != 11 {
		t.Fatalf("unconfirmed jump counted: expected %d", e)
	}
	tr.update(30001, 0, 1, 0, 0)
	tr.update(30002, 0, 1, 0, 0)
	if e, l := tr.expectedLost(); e != 13 || l != 0 {
		t.Fatalf("after restart: expected %d lost %d, want 13 and 0", e, l)
	}
}

func TestSeqTrackerNewSSRCKeepsTotals(t *testing.T) {
	var tr seqTracker
	for s := uint16(0); s < 10; s += 2 { // 5 of 9 received
		tr.update(s, 0, 1, 0, 0)
	}
	for s := uint16(500); s < 510; s++ { // new SSRC, no loss
		tr.update(s, 0, 2, 0, 0)
	}
	exp, lost := tr.expectedLost()
	if exp != 19 || lost != 4 {
		t.Fatalf("expected %d lost %d, want 19 and 4", exp, lost)
	}
}

func TestSeqTrackerJitter(t *testing.T) {
	// 20 ms packets at 8 kHz, arrival alternately +0/+10 ms late:
	// |D| = 80 ticks each time, jitter converges towards 80 ticks = 10 ms.
	var tr seqTracker
	for i := range 2000 {
		late := uint64(0)
		if i%2 == 1 {
			late = 10000
		}
		tr.update(uint16(i), uint32(i*160), 7, uint64(i)*20000+late, 8000)
	}
	j := float64(tr.jitterUs()) / 1000
	if j < 9 || j > 10.5 {
		t.Fatalf("jitter %.2f ms, want ~10", j)
	}
	// Perfect pacing: jitter decays to ~0.
	var p seqTracker
	for i := range 500 {
		p.update(uint16(i), uint32(i*960), 7, uint64(i)*20000, 48000)
	}
	if p.jitterUs() != 0 {
		t.Fatalf("jitter %d us on perfect pacing", p.jitterUs())
	}
}

func TestDegradedThresholds(t *testing.T) {
	cases := []struct {
		d    DirectionStats
		want bool
	}{
		{DirectionStats{Expected: 1000, Lost: 10, JitterMs: 30}, false},
		{DirectionStats{Expected: 1000, Lost: 11}, true},
		{DirectionStats{Expected: 1000, JitterMs: 30.5}, true},
		{DirectionStats{}, false},
	}
	for _, c := range cases {
		if got := c.d.Degraded(); got != c.want {
			t.Errorf("%+v: Degraded = %v", c.d, got)
		}
		if got := (StreamStats{FromB: c.d}).Degraded(); got != c.want {
			t.Errorf("stream %+v: Degraded = %v", c.d, got)
		}
	}
}

// TestRelayStatsLossOverWire sends a stream with gaps through the relay and
// checks the loss reported by Close.
func TestRelayStatsLossOverWire(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, _ := call(t, e, a, b, SessionConfig{})
	sent := 0
	for i := range 100 {
		if i%10 == 5 { // 10 % loss
			continue
		}
		a.send(portA, rtpPacket(0, uint16(1000+i), uint32(i*160), 0x1234, 172))
		sent++
		b.recv(time.Second)
	}
	st := s.Close()[0]
	if st.FromA.Packets != uint64(sent) || st.FromA.Expected != 100 || st.FromA.Lost != 10 {
		t.Fatalf("stats %+v", st.FromA)
	}
	if !st.Degraded() || st.FromA.LossPercent() != 10 {
		t.Fatalf("10%% loss not flagged: %+v", st.FromA)
	}
}

// TestSeqTrackerInterleavedSSRCs: two SSRCs on one m-line (RTX, FEC,
// simulcast), interleaved packet by packet; only the second has loss and
// jitter. Loss and expected are summed over the SSRCs, the jitter is the
// worst SSRC's, and neither is reset by the switches.
func TestSeqTrackerInterleavedSSRCs(t *testing.T) {
	var tr seqTracker
	now := uint64(0)
	for i := range 1000 {
		now += 10000 // a packet every 10 ms, alternating SSRCs
		// SSRC 1: 20 ms packets, perfectly paced, no loss.
		tr.update(uint16(100+i), uint32(i*160), 1, now, 8000)
		now += 10000
		// SSRC 2: one packet in 10 missing, every other one 10 ms late.
		if i%10 == 3 {
			continue
		}
		late := uint64(0)
		if i%2 == 1 {
			late = 10000
		}
		tr.update(uint16(60000+i), uint32(i*160), 2, now+late, 8000)
	}
	exp, lost := tr.expectedLost()
	if exp != 2000 || lost != 100 {
		t.Fatalf("expected %d lost %d, want 2000 and 100", exp, lost)
	}
	if j := float64(tr.jitterUs()) / 1000; j < 8 || j > 11 {
		t.Fatalf("jitter %.2f ms, want ~10 (SSRC 2's)", j)
	}
	if tr.outOfOrder != 0 {
		t.Fatalf("%d out of order", tr.outOfOrder)
	}
}

// TestSeqTrackerSSRCEviction: beyond maxSSRCs, the least recently seen
// SSRC is replaced; its counts stay in the totals, and it starts a new run
// if it comes back.
func TestSeqTrackerSSRCEviction(t *testing.T) {
	var tr seqTracker
	for s := uint32(1); s <= 5; s++ { // 5 SSRCs, 10 packets each, 1 lost each
		for i := range uint16(11) {
			if i != 5 {
				tr.update(1000+i, 0, s, 0, 0)
			}
		}
	}
	if exp, lost := tr.expectedLost(); exp != 55 || lost != 5 {
		t.Fatalf("expected %d lost %d, want 55 and 5", exp, lost)
	}
	// SSRC 1 was evicted by SSRC 5; SSRCs 2..4 are still tracked: SSRC 2
	// goes on where it was, 1011 missing.
	tr.update(1012, 0, 2, 0, 0)
	if exp, lost := tr.expectedLost(); exp != 57 || lost != 6 {
		t.Fatalf("expected %d lost %d, want 57 and 6", exp, lost)
	}
	tr.update(2000, 0, 1, 0, 0) // back, a new run (evicting SSRC 3)
	if exp, lost := tr.expectedLost(); exp != 58 || lost != 6 {
		t.Fatalf("expected %d lost %d, want 58 and 6", exp, lost)
	}
	tr.update(1011, 0, 4, 0, 0) // SSRC 4 still tracked
	if exp, lost := tr.expectedLost(); exp != 59 || lost != 6 {
		t.Fatalf("expected %d lost %d, want 59 and 6", exp, lost)
	}
}

// TestRelayStatsTwoSSRCs sends two interleaved SSRCs through the relay, one
// with loss and jitter, and checks the stats reported.
func TestRelayStatsTwoSSRCs(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, _ := call(t, e, a, b, SessionConfig{})
	sent := 0
	for i := range 100 {
		// SSRC 0x1: constant timestamp (as the packets of one video frame),
		// no jitter whatever the pacing.
		a.send(portA, rtpPacket(0, uint16(500+i), 4242, 0x1, 172))
		b.recv(time.Second)
		sent++
		if i%10 == 7 { // 10 % loss on SSRC 0x2
			continue
		}
		// SSRC 0x2: timestamps 100 ms apart alternately: ~100 ms jitter.
		a.send(portA, rtpPacket(0, uint16(9000+i), uint32(i%2)*800, 0x2, 172))
		b.recv(time.Second)
		sent++
	}
	st := s.Close()[0].FromA
	if st.Packets != uint64(sent) || st.Expected != 200 || st.Lost != 10 {
		t.Fatalf("stats %+v: want 200 expected, 10 lost", st)
	}
	if st.JitterMs < 50 || st.JitterMs > 150 {
		t.Fatalf("jitter %.1f ms, want ~100 (SSRC 2's)", st.JitterMs)
	}
}
