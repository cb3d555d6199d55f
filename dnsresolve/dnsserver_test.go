package dnsresolve

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// qkey identifies a question in the test server.
type qkey struct {
	name  string
	qtype uint16
}

// answerSpec is the test server's canned response to one question.
type answerSpec struct {
	rcode       int
	answer      []dns.RR
	ns          []dns.RR
	extra       []dns.RR
	truncateUDP bool          // UDP gets TC=1 and no records; TCP gets everything
	gate        chan struct{} // if non-nil, the reply waits until it is closed
}

// testServer is an in-process authoritative-ish DNS server on 127.0.0.1,
// UDP and TCP on the same port, answering from a zone map and counting
// queries per (name, type).
type testServer struct {
	addr string

	mu         sync.Mutex
	zone       map[qkey]*answerSpec
	names      map[string]bool // names that exist (NODATA vs NXDOMAIN)
	counts     map[qkey]int
	tcpCounts  map[qkey]int
	forceRcode int // non-zero: answer every query with this rcode
}

func newTestServer(t testing.TB) *testServer {
	t.Helper()
	s := &testServer{
		zone:      make(map[qkey]*answerSpec),
		names:     make(map[string]bool),
		counts:    make(map[qkey]int),
		tcpCounts: make(map[qkey]int),
	}
	pc, l := listenPair(t)
	s.addr = pc.LocalAddr().String()

	udpStarted, tcpStarted := make(chan struct{}), make(chan struct{})
	udp := &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { close(udpStarted) }}
	tcp := &dns.Server{Listener: l, Handler: s, NotifyStartedFunc: func() { close(tcpStarted) }}
	errc := make(chan error, 2)
	go func() { errc <- udp.ActivateAndServe() }()
	go func() { errc <- tcp.ActivateAndServe() }()
	for _, ch := range []chan struct{}{udpStarted, tcpStarted} {
		select {
		case <-ch:
		case err := <-errc:
			t.Fatalf("test dns server: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("test dns server did not start")
		}
	}
	t.Cleanup(func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	})
	return s
}

// listenPair binds UDP and TCP sockets on the same 127.0.0.1 port.
func listenPair(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l
		}
		pc.Close()
	}
	t.Fatal("cannot bind UDP and TCP on the same port")
	return nil, nil
}

// newSilentServer returns the address of a UDP+TCP endpoint that accepts
// packets and connections but never answers.
func newSilentServer(t testing.TB) string {
	t.Helper()
	pc, l := listenPair(t)
	t.Cleanup(func() {
		pc.Close()
		l.Close()
	})
	return pc.LocalAddr().String()
}

// add puts records, in zone file syntax, in the answer of their (owner,
// type) question.
func (s *testServer) add(t testing.TB, records ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, txt := range records {
		rr, err := dns.NewRR(txt)
		if err != nil {
			t.Fatalf("bad test record %q: %v", txt, err)
		}
		k := qkey{strings.ToLower(rr.Header().Name), rr.Header().Rrtype}
		spec := s.zone[k]
		if spec == nil {
			spec = &answerSpec{}
			s.zone[k] = spec
		}
		spec.answer = append(spec.answer, rr)
		s.names[k.name] = true
	}
}

// set replaces the response to (name, qtype).
func (s *testServer) set(name string, qtype uint16, spec *answerSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = strings.ToLower(dns.Fqdn(name))
	s.zone[qkey{name, qtype}] = spec
	s.names[name] = true
}

func (s *testServer) setForceRcode(rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forceRcode = rcode
}

// count returns how many queries for (name, qtype) arrived, over UDP and
// TCP.
func (s *testServer) count(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[qkey{strings.ToLower(dns.Fqdn(name)), qtype}]
}

func (s *testServer) tcpCount(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tcpCounts[qkey{strings.ToLower(dns.Fqdn(name)), qtype}]
}

func (s *testServer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c
	}
	return n
}

func (s *testServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	k := qkey{strings.ToLower(q.Name), q.Qtype}
	isTCP := w.LocalAddr().Network() == "tcp"

	s.mu.Lock()
	s.counts[k]++
	if isTCP {
		s.tcpCounts[k]++
	}
	spec := s.zone[k]
	exists := s.names[k.name]
	force := s.forceRcode
	s.mu.Unlock()

	switch {
	case force != 0:
		m.Rcode = force
	case spec != nil:
		if spec.gate != nil {
			<-spec.gate
		}
		m.Rcode = spec.rcode
		m.Ns = spec.ns
		if spec.truncateUDP && !isTCP {
			m.Truncated = true
		} else {
			m.Answer = spec.answer
			m.Extra = spec.extra
		}
	case exists:
		// NODATA: NOERROR with an empty answer.
	default:
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// fakeClock is a manually advanced clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func mustRR(t testing.TB, txt string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(txt)
	if err != nil {
		t.Fatalf("bad test record %q: %v", txt, err)
	}
	return rr
}
