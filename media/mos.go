package media

import (
	"math"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// This file estimates the listening quality of a voice stream from what the
// relay measures, with the ITU-T G.107 E-model in its usual simplified
// form for VoIP monitoring:
//
//	R     = 93.2 − Id − Ie,eff                          (R0 − Is − A at G.107 defaults: 93.2)
//	Id    = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)     (d: one-way mouth-to-ear delay, ms)
//	Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl)  (G.107 eq. 7-29, BurstR = 1: random loss)
//	MOS   = 1 + 0.035·R + R·(R − 60)·(100 − R)·7·10⁻⁶   (G.107 Annex B, 0 < R < 100)
//
// The Id approximation is Cole and Rosenbluth's fit of G.107's Idd and
// Idte at the default echo parameters ("Voice over IP performance
// monitoring", ACM CCR 31(2), 2001). Ie and Bpl are the codec's planning
// values from ITU-T G.113 Appendix I (Codecs below).
//
// The relay does not read RTCP sender or receiver reports (with SRTP
// pass-through their report blocks are encrypted and cannot be read), so
// it has no round-trip time: the one-way network delay is taken as
// DefaultOneWayDelayMs (20 ms, a national path), to which a jitter buffer
// of twice the measured jitter is added. Loss is the direction's RFC 3550
// loss, taken as random (BurstR 1): the relay does not measure burst
// lengths.

// Quality thresholds from the Webex network requirements.
const (
	// MOSThreshold is the MOS below which a direction is degraded.
	MOSThreshold = 4.0
	// MOSUnacceptable is the MOS below which quality is unacceptable for
	// business use.
	MOSUnacceptable = 3.5
	// OneWayDelayThresholdMs is the one-way latency Webex requires to stay
	// below.
	OneWayDelayThresholdMs = 150.0
	// DefaultOneWayDelayMs is the one-way network delay assumed when none
	// is measured (the relay has no RTCP round-trip time).
	DefaultOneWayDelayMs = 20.0
	// JitterBufferFactor: the receiver's jitter buffer is taken as this
	// many times the interarrival jitter, and added to the delay.
	JitterBufferFactor = 2.0
)

// Codec is a voice codec's E-model equipment impairment.
type Codec struct {
	// Name is the encoding name as in a=rtpmap ("PCMU", "G729").
	Name string
	// Ie is the equipment impairment factor without loss, Bpl the packet
	// loss robustness factor (ITU-T G.113 Appendix I).
	Ie, Bpl float64
	// Estimated is set when the codec has no G.113 planning values and
	// those of another codec are used (see CodecByName).
	Estimated bool
}

// CodecByName returns the E-model impairment values of an rtpmap encoding
// name (case-insensitive), from ITU-T G.113 Appendix I (Ie: Table I.1; Bpl:
// Table I.3, random loss). G.711 is rated with packet loss concealment
// (G.711 Appendix I: Bpl 25.1; 4.3 without), as every current endpoint
// conceals loss. A codec whose Bpl G.113 does not tabulate takes G.711's
// (25.1); one without any planning value (opus, iLBC, AMR, ...) takes
// G.711's Ie and Bpl; both are marked Estimated. G.722 is wideband: G.113
// rates it on the extended (G.107.1) scale only, and on the narrowband
// scale used here it is rated as G.711 with PLC, i.e. not worse than
// narrowband telephony (Estimated).
func CodecByName(name string) Codec {
	switch strings.ToUpper(name) {
	case "PCMU", "PCMA":
		return Codec{Name: strings.ToUpper(name), Ie: 0, Bpl: 25.1}
	case "G729", "G729A", "G729B", "G729AB":
		return Codec{Name: "G729", Ie: 11, Bpl: 19} // G.729A + VAD
	case "G723":
		return Codec{Name: "G723", Ie: 15, Bpl: 16.1} // G.723.1 6.3 kbit/s + VAD
	case "G728":
		return Codec{Name: "G728", Ie: 7, Bpl: 25.1, Estimated: true}
	case "G726-32":
		return Codec{Name: "G726-32", Ie: 7, Bpl: 25.1, Estimated: true}
	case "GSM":
		return Codec{Name: "GSM", Ie: 20, Bpl: 25.1, Estimated: true} // GSM 06.10 full rate
	case "GSM-EFR":
		return Codec{Name: "GSM-EFR", Ie: 5, Bpl: 25.1, Estimated: true}
	case "G722":
		return Codec{Name: "G722", Ie: 0, Bpl: 25.1, Estimated: true}
	}
	return Codec{Name: name, Ie: 0, Bpl: 25.1, Estimated: true}
}

// RFactor returns the E-model transmission rating for a codec over a path
// with oneWayDelayMs of mouth-to-ear delay and lossPercent random packet
// loss, clamped to [0, 100].
func RFactor(c Codec, oneWayDelayMs, lossPercent float64) float64 {
	d := max(oneWayDelayMs, 0)
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	ppl := min(max(lossPercent, 0), 100)
	ieEff := c.Ie
	if ppl > 0 {
		ieEff += (95 - c.Ie) * ppl / (ppl + c.Bpl)
	}
	return min(max(93.2-id-ieEff, 0), 100)
}

// MOSFromR converts an R rating to an estimated MOS (G.107 Annex B).
func MOSFromR(r float64) float64 {
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	return 1 + 0.035*r + r*(r-60)*(100-r)*7e-6
}

// Score is the E-model estimate of one direction.
type Score struct {
	R, MOS float64
	// DelayMs is the mouth-to-ear delay used: network one-way delay plus
	// the jitter buffer.
	DelayMs float64
}

// Estimate scores a direction with codec c, a one-way network delay (ms),
// the interarrival jitter (ms) and the loss (percent). R and MOS are
// rounded to two decimals.
func Estimate(c Codec, oneWayDelayMs, jitterMs, lossPercent float64) Score {
	d := oneWayDelayMs + JitterBufferFactor*max(jitterMs, 0)
	r := RFactor(c, d, lossPercent)
	return Score{R: round2(r), MOS: round2(MOSFromR(r)), DelayMs: d}
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// score fills the MOS and R of both directions of an audio stream with
// codec c (nil: not voice, nothing is scored). A direction without
// packets is not scored.
func (s *StreamStats) score(c *Codec) {
	if c == nil {
		return
	}
	s.Codec = c.Name
	for _, d := range []*DirectionStats{&s.FromA, &s.FromB} {
		if d.Packets == 0 {
			continue
		}
		sc := Estimate(*c, DefaultOneWayDelayMs, d.JitterMs, d.LossPercent())
		d.R, d.MOS = sc.R, sc.MOS
	}
}

// staticNames are the encoding names of the static audio payload types
// (RFC 3551) that carry voice.
func staticName(pt int) string {
	switch pt {
	case 0:
		return "PCMU"
	case 3:
		return "GSM"
	case 4:
		return "G723"
	case 8:
		return "PCMA"
	case 9:
		return "G722"
	case 15:
		return "G728"
	case 18:
		return "G729"
	}
	return ""
}

// notVoice are rtpmap names of payloads that accompany a voice codec.
func notVoice(name string) bool {
	switch strings.ToLower(name) {
	case "telephone-event", "cn", "red", "ulpfec", "flexfec", "rtx":
		return true
	}
	return false
}

// codecOf returns the voice codec of an audio m-line: the first payload
// type of its format list (the answer's first is the one used) that is not
// DTMF, comfort noise or redundancy. nil for other media or when there is
// none.
func codecOf(md *sdp.MediaDescription) *Codec {
	if md == nil || md.MediaName.Media != "audio" {
		return nil
	}
	names := map[int]string{}
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		ptStr, enc, ok := strings.Cut(a.Value, " ")
		if !ok {
			continue
		}
		pt, err := strconv.Atoi(ptStr)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(enc), "/")
		names[pt] = name
	}
	for _, f := range md.MediaName.Formats {
		pt, err := strconv.Atoi(f)
		if err != nil || pt < 0 || pt > 127 {
			continue
		}
		name, ok := names[pt]
		if !ok {
			name = staticName(pt)
		}
		if name == "" || notVoice(name) || pt == 13 {
			continue
		}
		c := CodecByName(name)
		return &c
	}
	return nil
}
