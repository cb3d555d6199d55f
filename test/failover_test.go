package test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

// dnsZone is an in-process authoritative DNS server on loopback UDP.
type dnsZone struct {
	mu      sync.Mutex
	records map[string][]dns.RR // by "name type"
	queries map[string]int
	addr    string
}

func startDNS(t *testing.T, rrs ...string) *dnsZone {
	t.Helper()
	z := &dnsZone{records: map[string][]dns.RR{}, queries: map[string]int{}}
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad RR %q: %v", s, err)
		}
		k := strings.ToLower(rr.Header().Name) + " " + dns.TypeToString[rr.Header().Rrtype]
		z.records[k] = append(z.records[k], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return z
}

func (z *dnsZone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) == 1 {
		q := r.Question[0]
		k := strings.ToLower(q.Name) + " " + dns.TypeToString[q.Qtype]
		z.mu.Lock()
		z.queries[k]++
		m.Answer = append(m.Answer, z.records[k]...)
		known := false
		for key := range z.records {
			if strings.HasPrefix(key, strings.ToLower(q.Name)+" ") {
				known = true
			}
		}
		z.mu.Unlock()
		if !known {
			m.Rcode = dns.RcodeNameError
		}
	}
	_ = w.WriteMsg(m)
}

// silentTLS is a TLS server (socat) in front of a TCP listener that reads
// and never answers: a target that accepts the call and stays mute.
func silentTLS(t *testing.T, files harness.TLSFiles) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					if _, err := c.Read(buf); err != nil {
						if ne, ok := err.(net.Error); ok && ne.Timeout() {
							select {
							case <-done:
								return
							default:
								continue
							}
						}
						return
					}
				}
			}()
		}
	}()
	return harness.StartTLSServerProxy(t, files, ln.Addr().(*net.TCPAddr).Port, true)
}

// failoverBed is an SBC whose inside trunk is "sips:inside.test",
// resolved through SRV records served by an in-process DNS server.
func failoverBed(t *testing.T, port1, port2 int, pki map[string]harness.TLSFiles) (*harness.SBC, int) {
	t.Helper()
	z := startDNS(t,
		fmt.Sprintf("_sips._tcp.inside.test. 60 IN SRV 10 10 %d t1.inside.test.", port1),
		fmt.Sprintf("_sips._tcp.inside.test. 60 IN SRV 20 10 %d t2.inside.test.", port2),
		"t1.inside.test. 60 IN A 127.0.0.1",
		"t2.inside.test. 60 IN A 127.0.0.1",
	)
	mtls := harness.FreePort(t)
	cfg := fmt.Sprintf(`
node: { fqdn: sbc.test }
tls: { cert: %[1]s, key: %[2]s, ca: %[3]s, handshake_timeout: 2s }
listen:
  - { addr: "127.0.0.1:%[4]d", client_auth: required }
trunks:
  - { name: outside, identity: caller.test }
  - { name: inside, uri: "sips:inside.test", identity: callee.test }
routes:
  - { from: outside, to: inside }
dns: { servers: ["%[5]s"], timeout: 1s }
sip: { provisional_timeout: 1s }
media: { port_range: "41000-41999", bind: 127.0.0.1 }
log: { level: debug, format: json }
shutdown: { drain_timeout: 2s }
`, pki["sbc.test"].Cert, pki["sbc.test"].Key, pki["sbc.test"].CA, mtls, z.addr)
	sbc := harness.StartSBC(t, cfg)
	local := harness.StartTLSClientProxy(t, fmt.Sprintf("127.0.0.1:%d", mtls), pki["caller.test"], true, "sbc.test")
	return sbc, local
}

func callOnce(t *testing.T, local int, scenario string) harness.SippResult {
	return harness.RunSippUAC(t, harness.SippOptions{
		Scenario: scenario, RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local),
		RURIHost: "sbc.test", Service: "bob", Calls: 1, Timeout: 30 * time.Second,
	})
}

func TestFailoverSRV(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	harness.LookTools(t)
	pki := harness.DevPKI(t, t.TempDir(), "sbc.test", "caller.test", "callee.test")

	t.Run("first target down, call lands on the second; next call skips it", func(t *testing.T) {
		uas := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_basic.xml"})
		second := harness.StartTLSServerProxy(t, pki["callee.test"], uas.Port(), true)
		down := harness.FreePort(t)
		sbc, local := failoverBed(t, down, second, pki)
		harness.RequireOK(t, "first call", callOnce(t, local, "uac_basic.xml"), 1)
		harness.RequireOK(t, "second call", callOnce(t, local, "uac_basic.xml"), 1)
		if u := uas.Wait(10 * time.Second); u.Successful != 2 {
			t.Fatalf("second target: %s", u.Summary())
		}
		if n := strings.Count(sbc.Logs(), "failover: target not reachable"); n != 1 {
			t.Fatalf("failover lines = %d, want 1 (the down target must be skipped by the next call)\n%s", n, sbc.Logs())
		}
	})

	t.Run("first target answers 503, call lands on the second", func(t *testing.T) {
		rej := harness.StartSippUAS(t, harness.SippOptions{Scenario: harness.RejectScenario(t, 503, "Service Unavailable")})
		first := harness.StartTLSServerProxy(t, pki["callee.test"], rej.Port(), true)
		uas := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_basic.xml"})
		second := harness.StartTLSServerProxy(t, pki["callee.test"], uas.Port(), true)
		sbc, local := failoverBed(t, first, second, pki)
		harness.RequireOK(t, "call", callOnce(t, local, "uac_basic.xml"), 1)
		if u := uas.Wait(10 * time.Second); u.Successful != 1 {
			t.Fatalf("second target: %s", u.Summary())
		}
		if r := rej.Stop(); r.ReceivedRequests("INVITE") != 1 {
			t.Fatalf("first target saw %d INVITEs, want 1", r.ReceivedRequests("INVITE"))
		}
		if !strings.Contains(sbc.Logs(), "503") {
			t.Fatalf("503 failover not logged")
		}
	})

	t.Run("first target silent, failover after the provisional timeout", func(t *testing.T) {
		first := silentTLS(t, pki["callee.test"])
		uas := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_basic.xml"})
		second := harness.StartTLSServerProxy(t, pki["callee.test"], uas.Port(), true)
		sbc, local := failoverBed(t, first, second, pki)
		start := time.Now()
		harness.RequireOK(t, "call", callOnce(t, local, "uac_basic.xml"), 1)
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("call took %s with a 1s provisional timeout", d)
		}
		if !strings.Contains(sbc.Logs(), "no response within 1s") {
			t.Fatalf("silent target not logged")
		}
	})

	t.Run("first target abandoned after the provisional timeout gets a CANCEL once it rings", func(t *testing.T) {
		late := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_late_ring.xml"})
		first := harness.StartTLSServerProxy(t, pki["callee.test"], late.Port(), true)
		uas := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_basic.xml"})
		second := harness.StartTLSServerProxy(t, pki["callee.test"], uas.Port(), true)
		_, local := failoverBed(t, first, second, pki)
		harness.RequireOK(t, "call", callOnce(t, local, "uac_basic.xml"), 1)
		if u := uas.Wait(10 * time.Second); u.Successful != 1 {
			t.Fatalf("second target: %s", u.Summary())
		}
		harness.RequireOK(t, "abandoned target (must be CANCELed after its 180)", late.Wait(10*time.Second), 1)
	})

	t.Run("both targets down, 503 to the caller quickly", func(t *testing.T) {
		sbc, local := failoverBed(t, harness.FreePort(t), harness.FreePort(t), pki)
		start := time.Now()
		harness.RequireOK(t, "caller expecting 503", callOnce(t, local, harness.ExpectScenario(t, 503)), 1)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("503 took %s", d)
		}
		if n := strings.Count(sbc.Logs(), "failover: target not reachable"); n != 2 {
			t.Errorf("failover lines = %d, want 2", n)
		}
	})
}
