package main

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/sip"
	"github.com/edge-sbc/edge-sbc/sip/hep"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

func traceStore(t *testing.T) *tlsconf.Store {
	t.Helper()
	dir := t.TempDir()
	files, err := tlsconf.WriteDevPKI(dir, []string{"sbc.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lf := files.Leaves["sbc.test"]
	s, err := tlsconf.LoadStore(lf.Cert, lf.Key, files.CA)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTracingOff(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	tr := startTracing(&config.Config{}, reg, traceStore(t), zerolog.New(&logs))
	defer tr.Close()
	if tr.Tracer() != nil {
		t.Fatal("a Tracer without trace.hep.addr")
	}
	if got := hepSeries(t, reg); got["edge_sbc_hep_packets_total"] != 1 || got["edge_sbc_hep_dropped_total"] != 3 {
		t.Fatalf("HEP series at zero: %v, want 1 packets and 3 dropped (by reason)", got)
	}
	if logs.Len() != 0 {
		t.Fatalf("logged while off: %s", logs.String())
	}
}

// TestTracingOn: the key log warns loudly and is wired into the Store; a
// received message goes out with the peer as source, a sent one with the
// SBC as source, both with the call's correlation id.
func TestTracingOn(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	keys := filepath.Join(t.TempDir(), "keys.log")
	cfg := &config.Config{}
	cfg.TLS.KeylogFile = keys
	cfg.Trace.HEP = config.HEP{Addr: pc.LocalAddr().String(), Transport: "udp", NodeID: 9, Password: "hunter2"}
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	store := traceStore(t)
	tr := startTracing(cfg, reg, store, zerolog.New(&logs))
	if !strings.Contains(logs.String(), "TLS key log is on: anyone who reads "+keys+" can decrypt every call's signalling") {
		t.Fatalf("no key log warning: %s", logs.String())
	}
	if strings.Contains(logs.String(), "hunter2") {
		t.Fatal("the HEP password is logged")
	}
	if fi, err := os.Stat(keys); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key log file: %v %v", fi, err)
	}
	if tlsconf.NewClientConfig(store, "x.test", "", 0).KeyLogWriter == nil {
		t.Fatal("the key log is not wired into the Store")
	}
	sbc, peer := netip.MustParseAddrPort("127.0.0.1:5061"), netip.MustParseAddrPort("127.0.0.2:40000")
	tracer := tr.Tracer()
	data := []byte("INVITE sips:bob@sbc.test SIP/2.0\r\n\r\n")
	tracer.Trace(sip.TraceEvent{Time: time.Now(), Received: true, Local: sbc, Remote: peer, Data: data, Call: "call-1"})
	copy(data, "XXXXXX") // Trace must not keep Data
	tracer.Trace(sip.TraceEvent{Time: time.Now(), Received: false, Local: sbc, Remote: peer, Data: []byte("SIP/2.0 100 Trying\r\n\r\n"), Call: "call-1"})
	buf := make([]byte, 65536)
	for i, want := range []struct {
		src, dst netip.AddrPort
		start    string
	}{{peer, sbc, "INVITE "}, {sbc, peer, "SIP/2.0 100"}} {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		p, _, err := hep.Decode(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if p.Src != want.src || p.Dst != want.dst || !strings.HasPrefix(string(p.Payload), want.start) ||
			p.CorrelationID != "call-1" || p.NodeID != 9 || p.Password != "hunter2" || p.Protocol != hep.ProtocolTCP || p.ProtoType != hep.TypeSIP {
			t.Fatalf("packet %d: %+v", i, p)
		}
	}
	tr.Close()
	if got := hepValues(t, reg); got["edge_sbc_hep_packets_total"] != 2 || got["edge_sbc_hep_dropped_total"] != 0 {
		t.Fatalf("HEP counters %v, want 2 sent, 0 dropped", got)
	}
	if tlsconf.NewClientConfig(store, "x.test", "", 0).KeyLogWriter != nil {
		t.Fatal("key log still wired after Close")
	}
}

// hepSeries counts the series of each edge_sbc_hep_ family.
func hepSeries(t *testing.T, reg *prometheus.Registry) map[string]int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "edge_sbc_hep_") {
			out[mf.GetName()] = len(mf.GetMetric())
		}
	}
	return out
}

// hepValues sums the series of each edge_sbc_hep_ family.
func hepValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if strings.HasPrefix(mf.GetName(), "edge_sbc_hep_") {
				out[mf.GetName()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}
