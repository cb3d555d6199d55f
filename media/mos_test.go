package media

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
)

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

// TestMOSFromR: the R to MOS mapping of ITU-T G.107 Annex B, against the
// values G.107 publishes (Table B.1, user satisfaction categories, and the
// default rating R = 93.2 → MOS 4.41).
func TestMOSFromR(t *testing.T) {
	for _, c := range []struct{ r, mos float64 }{
		{-5, 1}, {0, 1}, {50, 2.58}, {60, 3.10}, {70, 3.60}, {80, 4.03}, {90, 4.34}, {93.2, 4.41}, {100, 4.5}, {120, 4.5},
	} {
		if got := MOSFromR(c.r); !near(got, c.mos, 0.01) {
			t.Errorf("MOSFromR(%v) = %.3f, want %.2f", c.r, got, c.mos)
		}
	}
}

// TestRFactorTable checks the E-model rating against published values:
// G.107's default (93.2: zero-loss G.711, no delay), the Ie,eff that
// ITU-T G.113 Appendix I tabulates at 2 % random loss (G.711 with PLC 7,
// G.729A+VAD 19, G.723.1+VAD 24, so R = 93.2 − Ie,eff), codecs' base
// ratings (G.729A 82.2), and Id at 150 ms (3.6: R 89.6) and beyond
// 177.3 ms, where the delay impairment steepens (300 ms: 20.7).
func TestRFactorTable(t *testing.T) {
	g711, g729, g723 := CodecByName("PCMU"), CodecByName("G729"), CodecByName("G723")
	noPLC := Codec{Name: "PCMU", Ie: 0, Bpl: 4.3}
	for _, c := range []struct {
		name         string
		codec        Codec
		delay, loss  float64
		wantR, tolR  float64
		wantMOS, tol float64
	}{
		{"G.711 ideal (G.107 default)", g711, 0, 0, 93.2, 0.001, 4.41, 0.005},
		{"G.711 PLC 1 %", g711, 0, 1, 89.56, 0.01, 4.33, 0.01},
		{"G.711 PLC 2 % (G.113: Ie,eff 7)", g711, 0, 2, 86.2, 0.5, 4.24, 0.02},
		{"G.711 PLC 3 % (G.113: Ie,eff 10)", g711, 0, 3, 83.2, 0.5, 4.15, 0.02},
		{"G.711 PLC 5 % (G.113: Ie,eff 15)", g711, 0, 5, 78.2, 1, 3.93, 0.05},
		{"G.711 no PLC 1 % (Bpl 4.3)", noPLC, 0, 1, 75.28, 0.01, 3.83, 0.01},
		{"G.729A+VAD 0 % (Ie 11)", g729, 0, 0, 82.2, 0.001, 4.10, 0.01},
		{"G.729A+VAD 2 % (G.113: Ie,eff 19)", g729, 0, 2, 74.2, 0.5, 3.79, 0.03},
		{"G.723.1+VAD 2 % (G.113: Ie,eff 24)", g723, 0, 2, 69.2, 0.5, 3.56, 0.03},
		{"G.711 150 ms (Id 3.6)", g711, 150, 0, 89.6, 0.001, 4.33, 0.01},
		{"G.711 177.3 ms (Id 4.26)", g711, 177.3, 0, 88.94, 0.01, 4.31, 0.01},
		{"G.711 300 ms (Id 20.7)", g711, 300, 0, 72.50, 0.01, 3.71, 0.01},
		{"G.711 total loss", g711, 0, 100, 17.26, 0.01, 1.18, 0.01},
	} {
		r := RFactor(c.codec, c.delay, c.loss)
		if !near(r, c.wantR, c.tolR) {
			t.Errorf("%s: R = %.2f, want %.2f ± %.2f", c.name, r, c.wantR, c.tolR)
		}
		if m := MOSFromR(r); !near(m, c.wantMOS, c.tol) {
			t.Errorf("%s: MOS = %.3f, want %.2f ± %.2f", c.name, m, c.wantMOS, c.tol)
		}
	}
}

// TestEstimateJitterBuffer: the jitter buffer (2 × jitter) adds to the
// delay, and the Webex limits sit where they should: G.711 at the
// thresholds (1 % loss, 30 ms jitter) still scores ≥ 4.0, 10 % loss is
// below 3.5.
func TestEstimateJitterBuffer(t *testing.T) {
	g711 := CodecByName("pcmu")
	s := Estimate(g711, DefaultOneWayDelayMs, 30, 1)
	if s.DelayMs != 80 || !near(s.R, 93.2-1.92-95.0/26.1, 0.01) || s.MOS < MOSThreshold {
		t.Errorf("G.711 at the Webex thresholds: %+v", s)
	}
	if s := Estimate(g711, DefaultOneWayDelayMs, 0, 0); s.MOS != 4.40 || s.R != 92.72 {
		t.Errorf("G.711 clean, default delay: %+v (want R 92.72, MOS 4.40)", s)
	}
	if s := Estimate(g711, DefaultOneWayDelayMs, 0, 10); s.MOS >= MOSUnacceptable {
		t.Errorf("G.711 10 %% loss: %+v, want MOS < 3.5", s)
	}
	if s := Estimate(g711, 140, 40, 0); s.DelayMs != 220 || !near(s.R, 93.2-0.024*220-0.11*(220-177.3), 0.01) {
		t.Errorf("long path: %+v", s)
	}
}

func TestCodecByName(t *testing.T) {
	for _, c := range []struct {
		name      string
		ie, bpl   float64
		estimated bool
	}{
		{"PCMU", 0, 25.1, false}, {"pcma", 0, 25.1, false}, {"G729", 11, 19, false}, {"G723", 15, 16.1, false},
		{"G722", 0, 25.1, true}, {"opus", 0, 25.1, true}, {"GSM", 20, 25.1, true},
	} {
		got := CodecByName(c.name)
		if got.Ie != c.ie || got.Bpl != c.bpl || got.Estimated != c.estimated {
			t.Errorf("%s: %+v", c.name, got)
		}
	}
}

func TestCodecOf(t *testing.T) {
	md := func(media string, formats []string, rtpmaps ...string) *sdp.MediaDescription {
		m := &sdp.MediaDescription{MediaName: sdp.MediaName{Media: media, Formats: formats}}
		for _, r := range rtpmaps {
			m.Attributes = append(m.Attributes, sdp.Attribute{Key: "rtpmap", Value: r})
		}
		return m
	}
	for _, c := range []struct {
		md   *sdp.MediaDescription
		want string
	}{
		{md("audio", []string{"0", "101"}, "0 PCMU/8000", "101 telephone-event/8000"), "PCMU"},
		{md("audio", []string{"8"}), "PCMA"},
		{md("audio", []string{"101", "13", "18"}, "101 telephone-event/8000"), "G729"},
		{md("audio", []string{"9", "0"}), "G722"},
		{md("audio", []string{"111", "0"}, "111 opus/48000/2"), "opus"},
		{md("audio", []string{"96"}, "96 G729/8000"), "G729"},
		{md("audio", []string{"101"}, "101 telephone-event/8000"), ""},
		{md("video", []string{"96"}, "96 H264/90000"), ""},
	} {
		got := ""
		if co := codecOf(c.md); co != nil {
			got = co.Name
		}
		if got != c.want {
			t.Errorf("%v: codec %q, want %q", c.md.MediaName, got, c.want)
		}
	}
}

func TestDegradedReasons(t *testing.T) {
	d := DirectionStats{Packets: 100, Expected: 100, Lost: 5, JitterMs: 31, MOS: 3.9}
	if got := d.DegradedReasons(); !slices.Equal(got, []string{"jitter", "loss", "mos"}) {
		t.Errorf("reasons %v", got)
	}
	if (DirectionStats{Packets: 10, Expected: 10, MOS: 4.0}).Degraded() {
		t.Error("MOS 4.0 is not degraded")
	}
	if (DirectionStats{Packets: 10, Expected: 10}).Degraded() {
		t.Error("an unscored direction (MOS 0) is not degraded")
	}
}

// TestRelayStatsMOS: MOS and R per direction come out of the relay's own
// statistics (live and at Close), for the codec of the SDP; a lossy
// direction is scored and flagged, a clean one is not.
func TestRelayStatsMOS(t *testing.T) {
	e := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	for i := range 100 {
		if i%10 != 5 { // 10 % loss from A
			a.send(portA, rtpPacket(0, uint16(1000+i), uint32(i*160), 0x1234, 172))
			b.recv(time.Second)
		}
		b.send(portB, rtpPacket(0, uint16(7000+i), uint32(i*160), 0x5678, 172))
		a.recv(time.Second)
	}
	// A reader publishes its counters at the end of a batch, after it has
	// forwarded the batch: the last packet can reach its peer before it is
	// counted.
	waitFor(t, time.Second, "every packet counted", func() bool {
		x := s.Stats()[0]
		return x.FromA.Packets == 90 && x.FromA.Expected == 100 && x.FromB.Packets == 100
	})
	live := s.Stats()[0]
	st := s.Close()[0]
	for _, x := range []StreamStats{live, st} {
		if x.Codec != "PCMU" {
			t.Fatalf("codec %q", x.Codec)
		}
		if x.RemoteA.Port() != uint16(a.port()) || x.RemoteB.Port() != uint16(b.port()) {
			t.Errorf("remote addresses %v %v, want ports %d %d", x.RemoteA, x.RemoteB, a.port(), b.port())
		}
		// 10 % random loss, G.711 with PLC (Ie,eff 27.07), 20 ms plus the
		// jitter buffer (the packets go faster than their timestamps).
		want := Estimate(CodecByName("PCMU"), DefaultOneWayDelayMs, x.FromA.JitterMs, 10)
		if x.FromA.LossPercent() != 10 || x.FromA.R != want.R || x.FromA.MOS != want.MOS || x.FromA.MOS >= MOSUnacceptable {
			t.Errorf("lossy direction: loss %.2f %%, R %.2f MOS %.2f, want 10 %% and %+v", x.FromA.LossPercent(), x.FromA.R, x.FromA.MOS, want)
		}
		if !slices.Contains(x.FromA.DegradedReasons(), "mos") {
			t.Errorf("MOS %.2f not flagged", x.FromA.MOS)
		}
		if x.FromB.MOS < MOSThreshold || x.FromB.Degraded() {
			t.Errorf("clean direction: %+v", x.FromB)
		}
	}
}

// TestReceiver: an endpoint's Receiver counts as the relay does.
func TestReceiver(t *testing.T) {
	r := NewReceiver(8000, 101)
	var at time.Duration
	for i := range 100 {
		at += 20 * time.Millisecond
		if i%20 == 3 {
			continue // 5 % loss
		}
		r.RTP(rtpPacket(0, uint16(65500+i), uint32(i*160), 0xabc, 172), at)
	}
	r.RTCP(make([]byte, 28))
	d := r.Stats()
	if d.Packets != 95 || d.Expected != 100 || d.Lost != 5 || d.RTCPPackets != 1 || d.JitterMs != 0 {
		t.Fatalf("stats %+v", d)
	}
	if hs, ok := r.HighestSeq(0xabc); !ok || hs != 1<<16+63 {
		t.Fatalf("highest seq %d %v", hs, ok)
	}
	if _, ok := r.HighestSeq(1); ok {
		t.Fatal("unknown SSRC seen")
	}
}
