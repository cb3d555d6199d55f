package sip

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edge-sbc/edge-sbc/media"
)

// Metrics are the B2BUA's Prometheus collectors. They are registered on
// the Registerer given to NewMetrics (never the global registry). Safe for
// concurrent use.
type Metrics struct {
	CallsTotal    *prometheus.CounterVec
	SetupSeconds  prometheus.Histogram
	Requests      *prometheus.CounterVec
	Responses     *prometheus.CounterVec
	RequestsSent  *prometheus.CounterVec
	TLSHandshakes *prometheus.CounterVec
	DNSLookups    *prometheus.CounterVec
	Failovers     *prometheus.CounterVec
	Admission     *prometheus.CounterVec
	SetupQueued   prometheus.Counter
	RelayPackets  *prometheus.CounterVec
	RelayBytes    *prometheus.CounterVec
	RelayDrops    *prometheus.CounterVec
	JitterMs      *prometheus.HistogramVec
	LossPercent   *prometheus.HistogramVec
	TargetUp      *prometheus.GaugeVec
	TargetPing    *prometheus.GaugeVec
	PingSeconds   *prometheus.HistogramVec
	reg           prometheus.Registerer
}

// NewMetrics creates the collectors and registers them on reg (nil: a
// private registry, i.e. not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		reg: reg,
		CallsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_sbc_calls_total", Help: "Calls by trunk pair and outcome (answered, rejected, cancelled, failed).",
		}, []string{"from", "to", "outcome"}),
		SetupSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "edge_sbc_call_setup_seconds", Help: "Time from INVITE to answer of answered calls.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30},
		}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_sbc_sip_requests_total", Help: "SIP requests received, by method.",
		}, []string{"method"}),
		Responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_sbc_sip_responses_total", Help: "Final and provisional SIP responses sent, by method and code.",
		}, []string{"method", "code"}),
		RequestsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_sbc_sip_requests_sent_total", Help: "SIP requests the SBC sent, by method.",
		}, []string{"method"}),
		TLSHandshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_sbc_tls_handshakes_total", Help: "TLS handshakes by direction, result and refusal reason.",
		}, []string{"direction", "result", "reason"}),
		DNSLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_sbc_dns_lookups_total", Help: "RFC 3263 resolutions of trunk destinations by result.",
		}, []string{"result"}),
		Failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_sbc_failovers_total", Help: "Targets abandoned for the next one, by cause.",
		}, []string{"cause"}),
		Admission: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_sbc_admission_refused_total", Help: "New calls refused by admission control, by reason.",
		}, []string{"reason"}),
		SetupQueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_sbc_setup_queued_total", Help: "New calls that waited for the calls in progress while the SBC was behind (limits.setup_queue_timeout).",
		}),
		RelayPackets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_sbc_relay_packets_total", Help: "Relayed media packets of ended calls, by kind (rtp, rtcp).",
		}, []string{"kind"}),
		RelayBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_sbc_relay_bytes_total", Help: "Relayed media bytes of ended calls, by kind.",
		}, []string{"kind"}),
		RelayDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_sbc_relay_drops_total", Help: "Media packets not relayed, by reason.",
		}, []string{"reason"}),
		JitterMs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "edge_sbc_media_jitter_ms", Help: "Maximum RFC 3550 jitter per stream direction at call end.",
			Buckets: []float64{1, 5, 10, 20, 30, 50, 100, 200},
		}, []string{"media"}),
		LossPercent: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "edge_sbc_media_loss_percent", Help: "Packet loss per stream direction at call end.",
			Buckets: []float64{0.1, 0.5, 1, 2, 5, 10, 50},
		}, []string{"media"}),
	}
	m.TargetUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "edge_sbc_trunk_target_up", Help: "1 while a monitored trunk target answers OPTIONS pings (trunks[].health).",
	}, []string{"trunk", "target"})
	m.TargetPing = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "edge_sbc_trunk_target_ping_seconds", Help: "Round-trip time of the last answered OPTIONS ping of a monitored trunk target.",
	}, []string{"trunk", "target"})
	m.PingSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "edge_sbc_trunk_ping_seconds", Help: "Round-trip time of answered OPTIONS pings, by trunk.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
	}, []string{"trunk"})
	reg.MustRegister(m.TargetUp, m.TargetPing, m.PingSeconds)
	reg.MustRegister(m.CallsTotal, m.SetupSeconds, m.Requests, m.Responses, m.RequestsSent, m.TLSHandshakes,
		m.DNSLookups, m.Failovers, m.Admission, m.SetupQueued, m.RelayPackets, m.RelayBytes, m.RelayDrops, m.JitterMs, m.LossPercent)
	return m
}

// gauges registers the live gauges read from the B2BUA on each scrape.
func (m *Metrics) gauges(b *B2BUA) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_sbc_calls_active", Help: "Calls in progress."},
			func() float64 { c, _, _ := b.Counts(); return float64(c) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_sbc_dialogs", Help: "Dialog entries held (two per call)."},
			func() float64 { _, d, _ := b.Counts(); return float64(d) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_sbc_tls_connections", Help: "Established SIP TLS connections."},
			func() float64 { _, _, n := b.Counts(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_sbc_setup_queue", Help: "New calls waiting for the calls in progress (the SBC is behind)."},
			func() float64 { return float64(b.gate.queued()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_sbc_overloaded", Help: "1 while more goroutines wait for a processor than the SBC runs in a few milliseconds: new calls then wait (limits.setup_queue_timeout)."},
			func() float64 {
				if b.gate.observe() {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_sbc_draining", Help: "1 while the SBC refuses new calls."},
			func() float64 {
				if b.Draining() {
					return 1
				}
				return 0
			}),
	)
}

// observeMedia adds an ended call's media statistics.
func (m *Metrics) observeMedia(st []media.StreamStats) {
	for _, s := range st {
		for _, d := range []media.DirectionStats{s.FromA, s.FromB} {
			m.RelayPackets.WithLabelValues("rtp").Add(float64(d.Packets))
			m.RelayBytes.WithLabelValues("rtp").Add(float64(d.Bytes))
			m.RelayPackets.WithLabelValues("rtcp").Add(float64(d.RTCPPackets))
			m.RelayBytes.WithLabelValues("rtcp").Add(float64(d.RTCPBytes))
			m.RelayDrops.WithLabelValues("stranger").Add(float64(d.Drops.Stranger))
			m.RelayDrops.WithLabelValues("no_destination").Add(float64(d.Drops.NoDestination))
			m.RelayDrops.WithLabelValues("oversize").Add(float64(d.Drops.Oversize))
			m.RelayDrops.WithLabelValues("send_error").Add(float64(d.Drops.SendError))
			if d.Packets > 0 {
				m.JitterMs.WithLabelValues(s.Media).Observe(d.MaxJitterMs)
				m.LossPercent.WithLabelValues(s.Media).Observe(d.LossPercent())
			}
		}
	}
}

// outcome classifies a finished call for edge_sbc_calls_total.
func outcome(answered bool, code int, reason string) string {
	switch {
	case answered:
		return "answered"
	case code == 487 || reason == "cancelled":
		return "cancelled"
	case code >= 400 && code < 500, code >= 600:
		return "rejected"
	default:
		return "failed"
	}
}

func codeLabel(code int) string { return strconv.Itoa(code) }
