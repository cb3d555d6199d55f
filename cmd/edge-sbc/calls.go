package main

import (
	_ "embed"
	"encoding/json"
	"math"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edge-sbc/edge-sbc/media"
	"github.com/edge-sbc/edge-sbc/sip"
)

// This file is the live call view of the metrics listener: GET /calls
// (JSON) and GET / (web/calls.html, which fetches /calls every 2 s), and
// the edge_sbc_media_mos histogram, observed from each call's CDR.

//go:embed web/calls.html
var callsPage []byte

// callsReply is the body of GET /calls.
type callsReply struct {
	Time       time.Time  `json:"time"`
	Thresholds thresholds `json:"thresholds"`
	Calls      []callView `json:"calls"`
}

// thresholds are the Webex limits the flags are computed against.
type thresholds struct {
	JitterMs        float64 `json:"jitter_ms"`
	LossPercent     float64 `json:"loss_percent"`
	MOS             float64 `json:"mos"`
	MOSUnacceptable float64 `json:"mos_unacceptable"`
	// OneWayDelayMs is the delay assumed by the MOS estimate (the relay
	// measures no round-trip time).
	OneWayDelayMs float64 `json:"assumed_one_way_delay_ms"`
}

func webexThresholds() thresholds {
	return thresholds{
		JitterMs: media.JitterThresholdMs, LossPercent: media.LossThresholdPercent,
		MOS: media.MOSThreshold, MOSUnacceptable: media.MOSUnacceptable, OneWayDelayMs: media.DefaultOneWayDelayMs,
	}
}

// callView is a sip.CallInfo (its fields as sip serialises them, the raw
// media statistics included) with a summary of each stream: loss in
// percent and the threshold flags, which StreamStats computes but does
// not serialise.
type callView struct {
	sip.CallInfo
	DurationSec float64      `json:"duration_s"`
	Degraded    bool         `json:"degraded"`
	Streams     []streamView `json:"streams"`
}

type streamView struct {
	Index    int     `json:"index"`
	Media    string  `json:"media"`
	Content  string  `json:"content,omitempty"`
	Codec    string  `json:"codec,omitempty"`
	PortA    int     `json:"port_a"`
	PortB    int     `json:"port_b"`
	RemoteA  string  `json:"remote_a,omitempty"`
	RemoteB  string  `json:"remote_b,omitempty"`
	Degraded bool    `json:"degraded"`
	FromA    dirView `json:"from_a"`
	FromB    dirView `json:"from_b"`
}

type dirView struct {
	Packets     uint64   `json:"packets"`
	Bytes       uint64   `json:"bytes"`
	RTCPPackets uint64   `json:"rtcp_packets"`
	Expected    uint64   `json:"expected"`
	Lost        uint64   `json:"lost"`
	LossPercent float64  `json:"loss_percent"`
	JitterMs    float64  `json:"jitter_ms"`
	MaxJitterMs float64  `json:"max_jitter_ms"`
	R           float64  `json:"r,omitempty"`
	MOS         float64  `json:"mos,omitempty"`
	Dropped     uint64   `json:"dropped"`
	Degraded    []string `json:"degraded,omitempty"`
}

func viewDir(d media.DirectionStats) dirView {
	return dirView{
		Packets: d.Packets, Bytes: d.Bytes, RTCPPackets: d.RTCPPackets, Expected: d.Expected, Lost: d.Lost,
		LossPercent: round3(d.LossPercent()), JitterMs: round3(d.JitterMs), MaxJitterMs: round3(d.MaxJitterMs),
		R: d.R, MOS: d.MOS, Dropped: d.Drops.Total(), Degraded: d.DegradedReasons(),
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func addrString(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.String()
}

// viewCalls builds the /calls reply from the B2BUA's live view.
func viewCalls(calls []sip.CallInfo, now time.Time) callsReply {
	out := callsReply{Time: now.UTC(), Thresholds: webexThresholds(), Calls: make([]callView, 0, len(calls))}
	for _, c := range calls {
		v := callView{CallInfo: c, DurationSec: now.Sub(c.Start).Round(time.Millisecond).Seconds(), Streams: []streamView{}}
		for _, s := range c.Media {
			sv := streamView{
				Index: s.Index, Media: s.Media, Content: s.Content, Codec: s.Codec, PortA: s.PortA, PortB: s.PortB,
				RemoteA: addrString(s.RemoteA), RemoteB: addrString(s.RemoteB), Degraded: s.Degraded(),
				FromA: viewDir(s.FromA), FromB: viewDir(s.FromB),
			}
			v.Degraded = v.Degraded || sv.Degraded
			v.Streams = append(v.Streams, sv)
		}
		out.Calls = append(out.Calls, v)
	}
	return out
}

// registerCallsHandlers adds GET /calls and the page at GET / to the
// metrics listener's mux. calls is the B2BUA's live view
// ((*sip.B2BUA).Calls).
func registerCallsHandlers(mux *http.ServeMux, calls func() []sip.CallInfo) {
	mux.HandleFunc("GET /calls", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(viewCalls(calls(), time.Now()))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		// The page loads nothing from elsewhere, and runs only its own script.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(callsPage)
	})
}

// mosSink is a CDR sink that observes each ended call's MOS per stream
// direction in edge_sbc_media_mos before handing the CDR on.
type mosSink struct {
	next sip.CDRSink // nil: none
	mos  *prometheus.HistogramVec
}

// withMOSMetric registers edge_sbc_media_mos on reg and returns the sink
// to give sip.New in place of next (which may be nil).
func withMOSMetric(reg prometheus.Registerer, next sip.CDRSink) sip.CDRSink {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "edge_sbc_media_mos",
		Help:    "E-model MOS estimate per voice stream direction at call end (Webex: >= 4.0; below 3.5 unacceptable).",
		Buckets: []float64{1, 2, 3, 3.5, 3.8, 4, 4.2, 4.3, 4.4, 4.5},
	}, []string{"media"})
	reg.MustRegister(h)
	return &mosSink{next: next, mos: h}
}

func (m *mosSink) Write(r sip.CDR) {
	if st, ok := r.Media["streams"].([]media.StreamStats); ok {
		for _, s := range st {
			for _, d := range []media.DirectionStats{s.FromA, s.FromB} {
				if d.MOS > 0 {
					m.mos.WithLabelValues(s.Media).Observe(d.MOS)
				}
			}
		}
	}
	if m.next != nil {
		m.next.Write(r)
	}
}
