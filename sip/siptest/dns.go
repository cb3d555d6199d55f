package siptest

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNS is an in-process authoritative DNS server on loopback UDP answering
// from zone records ("_sips._tcp.x.test. 5 IN SRV 10 50 5061 a.x.test.").
type DNS struct {
	Addr    string
	mu      sync.Mutex // guards records
	records map[string][]dns.RR
}

// StartDNS starts the server; it stops when the test ends.
func StartDNS(t testing.TB, rrs ...string) *DNS {
	t.Helper()
	z := &DNS{records: map[string][]dns.RR{}}
	for _, s := range rrs {
		z.Add(t, s)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z.Addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("dns server did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
	return z
}

// Add adds a record.
func (z *DNS) Add(t testing.TB, s string) {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("record %q: %v", s, err)
	}
	k := strings.ToLower(rr.Header().Name) + " " + dns.TypeToString[rr.Header().Rrtype]
	z.mu.Lock()
	z.records[k] = append(z.records[k], rr)
	z.mu.Unlock()
}

// ServeDNS answers from the records (NXDOMAIN when none).
func (z *DNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	z.mu.Lock()
	for _, q := range r.Question {
		m.Answer = append(m.Answer, z.records[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]]...)
	}
	z.mu.Unlock()
	if len(m.Answer) == 0 {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}
