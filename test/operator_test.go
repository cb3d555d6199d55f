package test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

// The operator features of issue 15 end to end, with sipp (behind socat
// for TLS) as every far end: OPTIONS health pings of trunk targets,
// Request-URI transforms, blind transfer (REFER) and sip: URIs from one
// trunk. Each test logs what it measured.

// opSBC is one SBC for an operator test: a TLS listener (client
// certificate optional, unauthenticated callers on trunk "public"), a
// mutual-TLS listener, the metrics listener, and the trunks and routes
// given (YAML list items, indented by four spaces).
type opSBC struct {
	sbc      *harness.SBC
	pki      map[string]harness.TLSFiles
	tlsPort  int
	mtlsPort int
	metrics  int
}

func startOpSBC(t *testing.T, pki map[string]harness.TLSFiles, trunks, routes, extra string) *opSBC {
	t.Helper()
	s := &opSBC{pki: pki, tlsPort: harness.FreePort(t), mtlsPort: harness.FreePort(t), metrics: harness.FreePort(t)}
	cfg := fmt.Sprintf(`
node: { fqdn: sbc.test, domains: [sbc.test] }
tls: { cert: %[1]s, key: %[2]s, ca: %[3]s, handshake_timeout: 2s }
listen:
  - { addr: "127.0.0.1:%[4]d", client_auth: optional, unauthenticated_trunk: public }
  - { addr: "127.0.0.1:%[5]d", client_auth: required }
trunks:
  - { name: outside, identity: caller.test }
  - { name: public }
%[6]s
routes:
%[7]s
sip: { provisional_timeout: 1s }
media: { port_range: "47400-47599", bind: 127.0.0.1 }
metrics: { listen: "127.0.0.1:%[8]d" }
log: { level: debug, format: json }
shutdown: { drain_timeout: 2s }
limits: { max_connections_per_ip: 1000, handshakes_per_ip: 1000 }
%[9]s
`, pki["sbc.test"].Cert, pki["sbc.test"].Key, pki["sbc.test"].CA, s.tlsPort, s.mtlsPort, trunks, routes, s.metrics, extra)
	s.sbc = harness.StartSBC(t, cfg)
	return s
}

// caller is the local TCP port of a socat that speaks TLS to the SBC: to
// the mutual-TLS listener with cert's certificate, or with cert "" to the
// other listener without a certificate.
func (s *opSBC) caller(t *testing.T, cert string) int {
	t.Helper()
	if cert == "" {
		return harness.StartTLSClientProxy(t, fmt.Sprintf("127.0.0.1:%d", s.tlsPort), s.pki["sbc.test"], false, "sbc.test")
	}
	return harness.StartTLSClientProxy(t, fmt.Sprintf("127.0.0.1:%d", s.mtlsPort), s.pki[cert], true, "sbc.test")
}

func (s *opSBC) call(t *testing.T, local int, scenario, service string, pause time.Duration) harness.SippResult {
	t.Helper()
	return harness.RunSippUAC(t, harness.SippOptions{
		Scenario: scenario, RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local),
		RURIHost: "sbc.test", Service: service, Calls: 1, Pause: pause, Timeout: 30 * time.Second,
	})
}

// metric reads one sample of the SBC's /metrics (0 when absent).
func (s *opSBC) metric(t *testing.T, key string) float64 { return scrape(t, s.metrics)[key] }

// waitMetric polls /metrics every 50 ms until key has value want and
// returns when that was seen; it fails the test after timeout.
func (s *opSBC) waitMetric(t *testing.T, key string, want float64, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := scrape(t, s.metrics)
		if v, ok := m[key]; ok && v == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not %v within %s (now %v)\n%s", key, want, timeout, m[key], s.sbc.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitMetricAtLeast is waitMetric for a value of at least want.
func (s *opSBC) waitMetricAtLeast(t *testing.T, key string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for s.metric(t, key) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s below %v after %s", key, want, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func targetUp(port int) string {
	return fmt.Sprintf(`edge_sbc_trunk_target_up{target="127.0.0.1:%d",trunk="inside"}`, port)
}

// received returns the messages sipp received whose start line begins
// with prefix ("OPTIONS ", "INVITE ", "SIP/2.0 202").
func received(r harness.SippResult, prefix string) []harness.TracedMessage {
	var out []harness.TracedMessage
	for _, m := range r.TracedMessages() {
		if m.Received && strings.HasPrefix(m.StartLine, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// sent is received for the messages sipp sent.
func sent(r harness.SippResult, prefix string) []harness.TracedMessage {
	var out []harness.TracedMessage
	for _, m := range r.TracedMessages() {
		if !m.Received && strings.HasPrefix(m.StartLine, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// setupTime is, in a UAC's trace, the time from its first INVITE to the
// first final response.
func setupTime(t *testing.T, r harness.SippResult) time.Duration {
	t.Helper()
	inv := sent(r, "INVITE ")
	for _, m := range r.TracedMessages() {
		if m.Received && !m.IsRequest() && m.StatusCode() >= 200 && len(inv) > 0 {
			return m.Time.Sub(inv[0].Time)
		}
	}
	t.Fatalf("no INVITE and final response in the trace: %s", r.Diagnostics())
	return 0
}

// intervals returns the gaps between consecutive messages, their mean,
// minimum and maximum.
func intervals(ms []harness.TracedMessage) (gaps []time.Duration, mean, lo, hi time.Duration) {
	for i := 1; i < len(ms); i++ {
		gaps = append(gaps, ms[i].Time.Sub(ms[i-1].Time))
	}
	if len(gaps) == 0 {
		return nil, 0, 0, 0
	}
	lo, hi = gaps[0], gaps[0]
	var sum time.Duration
	for _, g := range gaps {
		sum += g
		lo, hi = min(lo, g), max(hi, g)
	}
	return gaps, sum / time.Duration(len(gaps)), lo, hi
}

var pingContact = regexp.MustCompile(`(?mi)^Contact:\s*<sips:[^@>;]+@sbc\.test[:;>]`)

// TestOperatorHealthPings: trunk "inside" has three SRV targets, pinged
// every second: priority 5 accepts TLS and never answers; 10 and 20 are
// sipp (uas_health.xml: answers OPTIONS only when they carry a sips:
// Contact on sbc.test, and takes calls). The pings arrive at the interval;
// the silent target is down from its first ping and the call goes to
// target 1; when that sipp stops, target 1 is down after down_after pings
// and the next call goes to target 2 without any INVITE toward the
// others (no failover, nothing in the traces); when a sipp answers on
// target 1 again, it is up after up_after answered pings and takes the
// next call.
func TestOperatorHealthPings(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	harness.LookTools(t)
	pki := harness.DevPKI(t, t.TempDir(), "sbc.test", "caller.test", "callee.test")
	const downAfter, upAfter, interval = 2, 2, time.Second
	uas1 := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_health.xml", Timeout: 60 * time.Second})
	tls1 := harness.StartTLSServerProxy(t, pki["callee.test"], uas1.Port(), true)
	uas2 := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_health.xml", Timeout: 60 * time.Second})
	tls2 := harness.StartTLSServerProxy(t, pki["callee.test"], uas2.Port(), true)
	// The most preferred target accepts TLS and never answers.
	silent := silentTLS(t, pki["callee.test"])
	z := startDNS(t,
		fmt.Sprintf("_sips._tcp.inside.test. 60 IN SRV 5 10 %d t0.inside.test.", silent),
		fmt.Sprintf("_sips._tcp.inside.test. 60 IN SRV 10 10 %d t1.inside.test.", tls1),
		fmt.Sprintf("_sips._tcp.inside.test. 60 IN SRV 20 10 %d t2.inside.test.", tls2),
		"t0.inside.test. 60 IN A 127.0.0.1",
		"t1.inside.test. 60 IN A 127.0.0.1",
		"t2.inside.test. 60 IN A 127.0.0.1",
	)
	s := startOpSBC(t, pki,
		fmt.Sprintf(`  - { name: inside, uri: "sips:inside.test", identity: callee.test,
      health: { interval: %s, timeout: 500ms, down_after: %d, up_after: %d } }`, interval, downAfter, upAfter),
		"  - { from: outside, to: inside }",
		fmt.Sprintf(`dns: { servers: ["%s"], timeout: 1s }`, z.addr))
	ready := time.Now()
	s.waitMetric(t, targetUp(tls1), 1, 10*time.Second)
	both := s.waitMetric(t, targetUp(tls2), 1, 10*time.Second)
	t.Logf("targets 1 and 2 up %s after the SBC was ready", both.Sub(ready).Round(time.Millisecond))
	mute := s.waitMetric(t, targetUp(silent), 0, 10*time.Second)
	t.Logf("the silent target down %s after the SBC was ready (its first ping timed out)", mute.Sub(ready).Round(time.Millisecond))
	local := s.caller(t, "caller.test")

	// 1. The call skips the silent target (priority 5) and takes target
	// 1 (priority 10). Then each target answers a few more pings
	// (counted by the SBC).
	r := s.call(t, local, "uac_basic.xml", "bob", 500*time.Millisecond)
	harness.RequireOK(t, "call 1 (targets 1 and 2 up, the silent one down)", r, 1)
	t.Logf("call 1 set up in %s, the silent target skipped", setupTime(t, r).Round(time.Millisecond))
	s.waitMetricAtLeast(t, `edge_sbc_trunk_ping_seconds_count{trunk="inside"}`, 10, 20*time.Second)

	// 2. The first target's sipp stops (socat still accepts TLS there,
	// but nothing answers): down after down_after failed pings.
	r1 := uas1.Stop()
	stopped := time.Now()
	down := s.waitMetric(t, targetUp(tls1), 0, 10*time.Second)
	t.Logf("target 1 down %s after its sipp stopped (down_after %d, interval %s, timeout 500ms)",
		down.Sub(stopped).Round(time.Millisecond), downAfter, interval)

	// 3. The next call goes to target 2, with no attempt on target 1 or
	// the silent one: no failover (which is logged and counted), no
	// INVITE in the trace of what listened there.
	failovers := s.metric(t, `edge_sbc_failovers_total{cause="unreachable"}`)
	r = s.call(t, local, "uac_basic.xml", "bob", 500*time.Millisecond)
	harness.RequireOK(t, "call 2 (target 1 down)", r, 1)
	t.Logf("call 2 set up in %s with target 1 down", setupTime(t, r).Round(time.Millisecond))
	if got := s.metric(t, `edge_sbc_failovers_total{cause="unreachable"}`); got != failovers {
		t.Errorf("failovers %v -> %v: call 2 tried the down target", failovers, got)
	}
	if logs := s.sbc.Logs(); strings.Contains(logs, "failover: target not reachable") || strings.Contains(logs, "no response within") {
		t.Errorf("a call attempted a target that was down")
	}
	if !strings.Contains(s.sbc.Logs(), "target down (health pings): skipped") {
		t.Errorf("the SBC did not log that it skipped the down target")
	}

	// 4. A sipp answers on the first target again: up after up_after
	// answered pings; the next call takes it again.
	uas1b := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_health.xml", LocalPort: uas1.Port(), Timeout: 60 * time.Second})
	restarted := time.Now()
	up := s.waitMetric(t, targetUp(tls1), 1, 10*time.Second)
	t.Logf("target 1 up %s after its sipp answered again (up_after %d, interval %s)",
		up.Sub(restarted).Round(time.Millisecond), upAfter, interval)
	r = s.call(t, local, "uac_basic.xml", "bob", 500*time.Millisecond)
	harness.RequireOK(t, "call 3 (target 1 back)", r, 1)
	t.Logf("call 3 set up in %s", setupTime(t, r).Round(time.Millisecond))
	r1b := uas1b.Stop()
	r2 := uas2.Stop()

	// What each target received.
	for _, c := range []struct {
		name    string
		r       harness.SippResult
		invites int
	}{{"target 1 before it stopped", r1, 1}, {"target 2", r2, 1}, {"target 1 back", r1b, 1}} {
		pings := received(c.r, "OPTIONS ")
		if n := len(received(c.r, "INVITE ")); n != c.invites {
			t.Errorf("%s: %d INVITEs, want %d", c.name, n, c.invites)
		}
		if c.r.Failed != 0 {
			t.Errorf("%s: %d failed sipp calls (a ping without a sips: Contact on sbc.test fails one): %s", c.name, c.r.Failed, c.r.Diagnostics())
		}
		for _, p := range pings {
			if !pingContact.MatchString(p.Text) {
				t.Errorf("%s: OPTIONS without a sips: Contact on sbc.test:\n%s", c.name, p.Text)
			}
		}
		_, mean, lo, hi := intervals(pings)
		t.Logf("%s: %d pings, interval mean %s (min %s, max %s), %d INVITE(s)", c.name, len(pings),
			mean.Round(time.Millisecond), lo.Round(time.Millisecond), hi.Round(time.Millisecond), c.invites)
		if len(pings) >= 3 && (mean < interval*7/10 || mean > interval*2) {
			t.Errorf("%s: pings every %s on average, configured %s", c.name, mean, interval)
		}
	}
	if n := len(received(r1, "OPTIONS ")); n < 4 {
		t.Errorf("target 1 got %d pings before it stopped, want at least 4 (10 answered pings counted)", n)
	}
	// Up only after up_after answered pings: the ones sipp received
	// before the SBC said up.
	answered := 0
	for _, p := range received(r1b, "OPTIONS ") {
		if !p.Time.After(up) {
			answered++
		}
	}
	if answered < upAfter {
		t.Errorf("target 1 up after %d answered ping(s), want up_after = %d", answered, upAfter)
	}
	t.Logf("target 1 came back after %d answered pings", answered)
}

// TestOperatorTransformedRequestURI: the route's transforms turn
// sips:1234@sbc.test into sips:+15551234@callee.test and the From
// sips:uac@uac.test into sips:+15550100@sbc.test, and its header
// operation adds X-Edge-Route; uas_transformed.xml fails the call unless
// it receives exactly that. A second call to a user the transform does
// not match shows the check failing (the control).
func TestOperatorTransformedRequestURI(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	harness.LookTools(t)
	pki := harness.DevPKI(t, t.TempDir(), "sbc.test", "caller.test", "callee.test")
	uas := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_transformed.xml", Timeout: 60 * time.Second})
	callee := harness.StartTLSServerProxy(t, pki["callee.test"], uas.Port(), true)
	s := startOpSBC(t, pki,
		fmt.Sprintf(`  - { name: inside, uri: "sips:127.0.0.1:%d", identity: callee.test }`, callee),
		`  - { from: outside, to: inside,
      transforms: [
        { field: ruri, match: 'sips:(\d{4})@sbc\.test', replace: 'sips:+1555\1@callee.test' },
        { field: from, match: '^sips:uac@uac\.test$', replace: 'sips:+15550100@sbc.test' } ],
      headers: [ { op: add, name: X-Edge-Route, value: transformed } ] }`, "")
	local := s.caller(t, "caller.test")
	r := s.call(t, local, "uac_basic.xml", "1234", 200*time.Millisecond)
	harness.RequireOK(t, "call to 1234", r, 1)
	t.Logf("call to sips:1234@sbc.test set up in %s", setupTime(t, r).Round(time.Millisecond))
	// The control: not four digits, so no Request-URI transform.
	harness.RequireOK(t, "call to alice", s.call(t, local, "uac_basic.xml", "alice", 200*time.Millisecond), 1)
	u := uas.Stop()
	if u.Successful != 1 || u.Failed != 1 {
		t.Errorf("callee: %d calls passed its checks and %d failed, want 1 and 1 (the control): %s", u.Successful, u.Failed, u.Diagnostics())
	}
	inv := received(u, "INVITE ")
	if len(inv) != 2 {
		t.Fatalf("callee got %d INVITEs, want 2", len(inv))
	}
	if got := inv[0].StartLine; got != "INVITE sips:+15551234@callee.test SIP/2.0" {
		t.Errorf("callee's Request-URI: %q, want INVITE sips:+15551234@callee.test", got)
	}
	if got := inv[1].StartLine; strings.Contains(got, "+1555") {
		t.Errorf("the control call was transformed: %q", got)
	}
	t.Logf("the callee received %q (control: %q)", inv[0].StartLine, inv[1].StartLine)
}

// TestOperatorBlindTransfer: caller A (uac_transferee.xml, trunk
// outside) calls B (uas_referrer.xml, trunk inside); B REFERs A to
// sips:carol@sbc.test, which routing from A's trunk sends to trunk carol
// (uas_transfer_target.xml, a third sipp, with -rtp_echo). The SBC answers
// 202, calls carol with a delayed offer, re-INVITEs A with carol's offer,
// NOTIFYs B (sipfrag 100, then 200 terminated), BYEs B, and media flows
// between A's side and carol through the relay.
//
// sipp cannot check received RTP, and A's sipp sends none without raw
// sockets (play_pcap_audio), so A's RTP comes from a Go UDP socket sent to
// the relay port the SBC offered A (read from /calls and checked against
// A's re-INVITE), as in TestMediaThroughRelay: carol echoes it, and it
// must come back byte for byte from that port. B does not echo, so before
// the transfer nothing comes back (the control).
func TestOperatorBlindTransfer(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	harness.LookTools(t)
	pki := harness.DevPKI(t, t.TempDir(), "sbc.test", "caller.test", "callee.test", "carol.test")
	b := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_referrer.xml", Calls: 1, Pause: 2 * time.Second, Timeout: 60 * time.Second})
	bTLS := harness.StartTLSServerProxy(t, pki["callee.test"], b.Port(), true)
	c := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_transfer_target.xml", Calls: 1, Timeout: 60 * time.Second, Extra: []string{"-rtp_echo"}})
	cTLS := harness.StartTLSServerProxy(t, pki["carol.test"], c.Port(), true)
	s := startOpSBC(t, pki,
		fmt.Sprintf(`  - { name: inside, uri: "sips:127.0.0.1:%d", identity: callee.test }
  - { name: carol, uri: "sips:127.0.0.1:%d", identity: carol.test }`, bTLS, cTLS),
		`  - { from: outside, to: carol, ruri_user_prefix: carol }
  - { from: outside, to: inside }`, "")
	local := s.caller(t, "caller.test")
	// A's sipp runs in a goroutine the test always waits for (its run is
	// bounded by the sipp timeout), also when it fails early.
	var ra harness.SippResult
	doneA := make(chan struct{})
	go func() {
		defer close(doneA)
		ra = s.call(t, local, "uac_transferee.xml", "bob", 4*time.Second)
	}()
	defer func() { <-doneA }()

	if !s.sbc.WaitLog(`"event":"call_answer"`, 15*time.Second) {
		t.Fatal("A->B not answered")
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	before := callerFacingPort(t, s.metrics)
	if back, _ := rtpRoundTrips(t, conn, before, 10, 0x0a0a0a0a); back != 0 {
		t.Errorf("%d packets came back before the transfer (B does not echo)", back)
	}

	if !s.sbc.WaitLog("blind transfer completed", 15*time.Second) {
		t.Fatal("the transfer did not complete")
	}
	after := callerFacingPort(t, s.metrics)
	const n = 50
	back, rtt := rtpRoundTrips(t, conn, after, n, 0x0c0c0c0c)
	if back < n*9/10 {
		t.Errorf("after the transfer %d of %d packets made the round trip A side -> relay -> carol (echo) -> relay", back, n)
	}
	t.Logf("media after the transfer: %d/%d packets A->relay->carol->relay->A, mean round trip %s (relay port %d, %d before)",
		back, n, rtt.Round(time.Microsecond), after, before)

	<-doneA
	harness.RequireOK(t, "A (transferee)", ra, 1)
	rb := b.Wait(10 * time.Second)
	harness.RequireOK(t, "B (referrer: 202, NOTIFY 100, NOTIFY 200 terminated, BYE)", rb, 1)
	rc := c.Wait(10 * time.Second)
	harness.RequireOK(t, "carol (delayed offer, answer in the ACK, BYE from A)", rc, 1)

	// A's re-INVITE offered the relay port the media went to.
	if re := received(ra, "INVITE "); len(re) != 1 || !strings.Contains(re[0].Text, fmt.Sprintf("m=audio %d ", after)) {
		t.Errorf("A's re-INVITE does not offer relay port %d: %v", after, re)
	}
	if n := len(received(rc, "INVITE ")); n != 1 {
		t.Errorf("carol got %d INVITEs, want 1", n)
	}
	refer, ok202, notifies := sent(rb, "REFER "), received(rb, "SIP/2.0 202"), received(rb, "NOTIFY ")
	if len(refer) != 1 || len(ok202) != 1 || len(notifies) != 2 {
		t.Fatalf("referrer: %d REFER, %d 202, %d NOTIFY; want 1, 1, 2", len(refer), len(ok202), len(notifies))
	}
	for i, want := range []string{"SIP/2.0 100", "SIP/2.0 200"} {
		if !strings.Contains(notifies[i].Text, "message/sipfrag") || !strings.Contains(notifies[i].Text, want) {
			t.Errorf("NOTIFY %d is not a sipfrag %q:\n%s", i+1, want, notifies[i].Text)
		}
	}
	t.Logf("REFER -> 202 in %s, -> NOTIFY 100 in %s, -> NOTIFY 200 (transfer done) in %s",
		ok202[0].Time.Sub(refer[0].Time).Round(time.Millisecond), notifies[0].Time.Sub(refer[0].Time).Round(time.Millisecond),
		notifies[1].Time.Sub(refer[0].Time).Round(time.Millisecond))
}

// rtpRoundTrips sends n RTP packets (PCMU, 20 ms apart) from conn to the
// SBC's relay port and counts the ones that come back unchanged from that
// port; it returns them and their mean round trip.
func rtpRoundTrips(t *testing.T, conn *net.UDPConn, port, n int, ssrc uint32) (int, time.Duration) {
	t.Helper()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	sentPkts := map[uint16][]byte{}
	sentAt := map[uint16]time.Time{}
	got := map[uint16]bool{}
	var total time.Duration
	buf := make([]byte, 2048)
	for i := range n {
		pkt := make([]byte, 172)
		pkt[0], pkt[1] = 0x80, 0
		seq := uint16(i)
		binary.BigEndian.PutUint16(pkt[2:], seq)
		binary.BigEndian.PutUint32(pkt[4:], uint32(i*160))
		binary.BigEndian.PutUint32(pkt[8:], ssrc)
		copy(pkt[12:], bytes.Repeat([]byte{byte(i)}, 160))
		sentPkts[seq], sentAt[seq] = pkt, time.Now()
		if _, err := conn.WriteToUDP(pkt, dst); err != nil {
			t.Fatal(err)
		}
		wait := 20 * time.Millisecond
		if i == n-1 {
			wait = 300 * time.Millisecond
		}
		deadline := time.Now().Add(wait)
		for {
			_ = conn.SetReadDeadline(deadline)
			m, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				break
			}
			if m < 12 || from.Port != port || !from.IP.Equal(dst.IP) || binary.BigEndian.Uint32(buf[8:]) != ssrc {
				continue // from elsewhere, or of an earlier run
			}
			s := binary.BigEndian.Uint16(buf[2:])
			if p, ok := sentPkts[s]; ok && bytes.Equal(p, buf[:m]) && !got[s] {
				got[s] = true
				total += time.Since(sentAt[s])
			}
		}
	}
	if len(got) == 0 {
		return 0, 0
	}
	return len(got), total / time.Duration(len(got))
}

// TestOperatorSIPSchemeFromUCM: trunk ucm (accept_sip_scheme, identified by
// its certificate on the mutual-TLS listener) sends an INVITE with sip:
// URIs (uac_sip_ucm.xml): carried, answered with a sip: Contact, and the
// callee gets sips:. The same sip: INVITE from trunk outside (certificate)
// and from an unauthenticated caller gets 416, and never reaches the
// callee.
func TestOperatorSIPSchemeFromUCM(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	harness.LookTools(t)
	pki := harness.DevPKI(t, t.TempDir(), "sbc.test", "caller.test", "callee.test", "ucm.test")
	uas := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_basic.xml", Timeout: 60 * time.Second})
	callee := harness.StartTLSServerProxy(t, pki["callee.test"], uas.Port(), true)
	s := startOpSBC(t, pki,
		fmt.Sprintf(`  - { name: ucm, identity: ucm.test, accept_sip_scheme: true }
  - { name: inside, uri: "sips:127.0.0.1:%d", identity: callee.test }`, callee),
		`  - { from: ucm, to: inside }
  - { from: outside, to: inside }
  - { from: public, to: inside }`, "")
	r := s.call(t, s.caller(t, "ucm.test"), "uac_sip_ucm.xml", "2001", 200*time.Millisecond)
	harness.RequireOK(t, "sip: INVITE from ucm (accept_sip_scheme)", r, 1)
	t.Logf("sip: call from ucm set up in %s", setupTime(t, r).Round(time.Millisecond))
	for _, c := range []struct{ what, cert string }{
		{"trunk outside (certificate)", "caller.test"},
		{"an unauthenticated caller", ""},
	} {
		r := s.call(t, s.caller(t, c.cert), "uac_sip_scheme.xml", "2001", 200*time.Millisecond)
		harness.RequireOK(t, "sip: INVITE from "+c.what+" refused with 416", r, 1)
		t.Logf("sip: INVITE from %s: 416 in %s", c.what, setupTime(t, r).Round(10*time.Microsecond))
	}
	u := uas.Stop()
	if u.Successful != 1 || u.Failed != 0 {
		t.Errorf("callee: %s, want the one call from ucm", u.Summary())
	}
	inv := received(u, "INVITE ")
	if len(inv) != 1 {
		t.Fatalf("callee got %d INVITEs, want 1 (the refused ones must not cross)", len(inv))
	}
	if !strings.HasPrefix(inv[0].StartLine, "INVITE sips:") {
		t.Errorf("toward the inside trunk the SBC must use sips:, got %q", inv[0].StartLine)
	}
	if got := s.metric(t, `edge_sbc_sip_responses_total{code="416",method="INVITE"}`); got != 2 {
		t.Errorf("416 responses counted: %v, want 2", got)
	}
}
