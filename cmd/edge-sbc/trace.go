package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/sip"
	"github.com/edge-sbc/edge-sbc/sip/hep"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// tracing is what lets an operator see inside the encrypted calls: the HEP
// export of every SIP message (trace.hep) and the TLS key log
// (tls.keylog_file). startTracing never fails: trouble with either is
// logged and calls go on without it.
type tracing struct {
	hep    *hep.Exporter   // nil: off
	keylog *tlsconf.KeyLog // nil: off
	store  *tlsconf.Store
	log    zerolog.Logger
}

// startTracing opens the key log (before any handshake: call it before the
// B2BUA starts), starts the HEP exporter, and registers the HEP metrics on
// reg (at zero when HEP is off). Close it after the B2BUA.
func startTracing(cfg *config.Config, reg prometheus.Registerer, store *tlsconf.Store, log zerolog.Logger) *tracing {
	t := &tracing{store: store, log: log}
	if f := cfg.TLS.KeylogFile; f != "" {
		kl, err := tlsconf.OpenKeyLog(f)
		if err != nil {
			log.Error().Err(err).Str("file", f).Msg("tls.keylog_file cannot be opened: the TLS key log stays off")
		} else {
			t.keylog = kl
			store.SetKeyLog(kl)
			log.Warn().Str("file", f).Msgf("TLS key log is on: anyone who reads %s can decrypt every call's signalling", f)
		}
	}
	if h := cfg.Trace.HEP; h.Addr != "" {
		e, err := hep.NewExporter(hep.ExporterConfig{
			Addr:      h.Addr,
			Transport: h.Transport,
			NodeID:    uint32(h.NodeID),
			Password:  h.Password,
			Log:       log.With().Str("part", "hep").Logger(),
		})
		if err != nil {
			log.Error().Err(err).Msg("trace.hep: the HEP export stays off")
		} else {
			t.hep = e
			log.Info().Str("collector", h.Addr).Str("transport", h.Transport).Int("node_id", h.NodeID).
				Bool("password", h.Password != "").Msg("HEP export on: every SIP message, decrypted, goes to the collector")
		}
	}
	reg.MustRegister(hepCollector{t})
	return t
}

// Tracer is what sip.Options.Tracer takes: nil when HEP is off.
func (t *tracing) Tracer() sip.Tracer {
	if t.hep == nil {
		return nil
	}
	return hepTracer{t.hep}
}

// Close stops the exporter (sending what is queued for at most a second)
// and closes the key log.
func (t *tracing) Close() {
	if t.hep != nil {
		_ = t.hep.Close()
		st := t.hep.Stats()
		t.log.Info().Uint64("sent", st.Sent).Uint64("dropped", st.Dropped()).Msg("HEP export stopped")
	}
	if t.keylog != nil {
		t.store.SetKeyLog(nil)
		if err := t.keylog.Close(); err != nil {
			t.log.Error().Err(err).Msg("TLS key log")
		}
		if n := t.keylog.Errors(); n > 0 {
			t.log.Error().Uint64("lines", n).Str("file", t.keylog.Path()).Msg("TLS key log: lines could not be written")
		}
	}
}

// hepTracer turns the SIP layer's trace events into HEP packets.
type hepTracer struct{ e *hep.Exporter }

// Trace encodes ev at once (Send copies Data) and never blocks.
func (h hepTracer) Trace(ev sip.TraceEvent) {
	src, dst := ev.Local, ev.Remote
	if ev.Received {
		src, dst = ev.Remote, ev.Local
	}
	h.e.Send(hep.Packet{
		Time:          ev.Time,
		Src:           src,
		Dst:           dst,
		Protocol:      hep.ProtocolTCP, // SIP over TLS over TCP
		ProtoType:     hep.TypeSIP,
		CorrelationID: ev.Call,
		Payload:       ev.Data,
	})
}

var (
	hepPacketsDesc = prometheus.NewDesc("edge_sbc_hep_packets_total",
		"SIP messages sent to the HEP collector (trace.hep).", nil, nil)
	hepDroppedDesc = prometheus.NewDesc("edge_sbc_hep_dropped_total",
		"SIP messages not sent to the HEP collector, by reason: queue_full (collector slow or down), too_large, send_error.",
		[]string{"reason"}, nil)
)

// hepCollector exports the exporter's counters (zero when HEP is off).
type hepCollector struct{ t *tracing }

func (c hepCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- hepPacketsDesc
	ch <- hepDroppedDesc
}

func (c hepCollector) Collect(ch chan<- prometheus.Metric) {
	var st hep.Stats
	if c.t.hep != nil {
		st = c.t.hep.Stats()
	}
	ch <- prometheus.MustNewConstMetric(hepPacketsDesc, prometheus.CounterValue, float64(st.Sent))
	for _, d := range []struct {
		reason string
		n      uint64
	}{{"queue_full", st.QueueFull}, {"too_large", st.TooLarge}, {"send_error", st.SendError}} {
		ch <- prometheus.MustNewConstMetric(hepDroppedDesc, prometheus.CounterValue, float64(d.n), d.reason)
	}
}
