// Package test holds the end-to-end tests: the edge-sbc binary between
// real SIP peers (sipp behind socat for TLS) on loopback.
package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

// bed is one SBC with a caller side and a callee side.
type bed struct {
	sbc      *harness.SBC
	pki      map[string]harness.TLSFiles
	tlsPort  int // 5061-like: client certificate optional
	mtlsPort int // 5062-like: client certificate required
	calleeTL int // TLS port of the callee (socat in front of sipp UAS)
	uasPort  int // TCP port of the sipp UAS
}

type bedOptions struct {
	uasScenario string // "" = no callee started
	extraYAML   string
	drain       time.Duration // shutdown.drain_timeout; default 2s
	limits      string        // the limits: mapping; default generous (all tests come from 127.0.0.1)
	uasExtra    []string      // extra sipp arguments for the callee
	mediaRange  string        // media.port_range; default 40000-40999
	insideSRTP  string        // srtp mode of the callee trunk; default passthrough
	sipYAML     string        // the sip: mapping; default { provisional_timeout: 1s }
	metrics     int           // metrics.listen port; 0 = off
}

func newBed(t *testing.T, o bedOptions) (*bed, *harness.Sipp) {
	t.Helper()
	harness.LookTools(t)
	b := &bed{}
	limits := "{ max_connections_per_ip: 1000, handshakes_per_ip: 1000 }"
	if o.limits != "" {
		limits = o.limits
	}
	sipYAML := "{ provisional_timeout: 1s }"
	if o.sipYAML != "" {
		sipYAML = o.sipYAML
	}
	insideSRTP := "passthrough"
	if o.insideSRTP != "" {
		insideSRTP = o.insideSRTP
	}
	mediaRange := "40000-40999"
	if o.mediaRange != "" {
		mediaRange = o.mediaRange
	}
	drain := "2s"
	if o.drain > 0 {
		drain = o.drain.String()
	}
	if o.metrics > 0 {
		o.extraYAML += fmt.Sprintf("\nmetrics: { listen: \"127.0.0.1:%d\" }\n", o.metrics)
	}
	b.pki = harness.DevPKI(t, t.TempDir(), "sbc.test", "caller.test", "callee.test", "rogue.test")
	b.tlsPort = harness.FreePort(t)
	b.mtlsPort = harness.FreePort(t)
	var uas *harness.Sipp
	if o.uasScenario != "" {
		uas = harness.StartSippUAS(t, harness.SippOptions{Scenario: o.uasScenario, Timeout: 60 * time.Second, Extra: o.uasExtra})
		b.uasPort = uas.Port()
		b.calleeTL = harness.StartTLSServerProxy(t, b.pki["callee.test"], b.uasPort, true)
	} else {
		b.calleeTL = harness.FreePort(t) // nothing listens here
	}
	cfg := fmt.Sprintf(`
node:
  fqdn: sbc.test
  domains: [sbc.test]
tls:
  cert: %[1]s
  key: %[2]s
  ca: %[3]s
listen:
  - { addr: "127.0.0.1:%[4]d", client_auth: optional, unauthenticated_trunk: public }
  - { addr: "127.0.0.1:%[5]d", client_auth: required }
trunks:
  - { name: outside, identity: caller.test }
  - { name: public }
  - { name: inside, uri: "sips:127.0.0.1:%[6]d", identity: callee.test, srtp: %[11]s }
routes:
  - { from: outside, to: inside }
  - { from: public, to: inside }
sip: %[12]s
media:
  port_range: "%[10]s"
  bind: 127.0.0.1
log: { level: debug, format: json }
shutdown: { drain_timeout: %[8]s }
limits: %[9]s
%[7]s`, b.pki["sbc.test"].Cert, b.pki["sbc.test"].Key, b.pki["sbc.test"].CA,
		b.tlsPort, b.mtlsPort, b.calleeTL, o.extraYAML, drain, limits, mediaRange, insideSRTP, sipYAML)
	b.sbc = harness.StartSBC(t, cfg)
	return b, uas
}

// caller returns the local TCP port of a socat that speaks TLS to the SBC.
func (b *bed) caller(t *testing.T, mutual bool, cert string) int {
	port := b.mtlsPort
	if !mutual {
		port = b.tlsPort
	}
	files := b.pki["sbc.test"]
	withCert := cert != ""
	if withCert {
		files = b.pki[cert]
	}
	return harness.StartTLSClientProxy(t, fmt.Sprintf("127.0.0.1:%d", port), files, withCert, "sbc.test")
}

func (b *bed) uac(t *testing.T, local int, scenario, ruriHost string, calls int) harness.SippResult {
	return harness.RunSippUAC(t, harness.SippOptions{
		Scenario:   scenario,
		RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local),
		RURIHost:   ruriHost,
		Service:    "alice",
		Calls:      calls,
		Rate:       10,
		Timeout:    40 * time.Second,
	})
}

func TestCallFlows(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	cases := []struct {
		name     string
		uac, uas string
		calls    int
		uasCalls int // calls the callee sees (0: calls)
	}{
		{"basic call, caller hangs up", "uac_basic.xml", "uas_basic.xml", 3, 0},
		{"callee hangs up", "uac_wait_bye.xml", "uas_bye.xml", 2, 0},
		{"CANCEL before answer", "uac_cancel.xml", "uas_ring_cancel.xml", 2, 0},
		{"486 relayed", "uac_busy.xml", "uas_busy.xml", 2, 0},
		{"re-INVITE hold and resume", "uac_reinvite.xml", "uas_reinvite.xml", 2, 0},
		{"early media: 183 with SDP, then 200 with the same SDP", "uac_basic.xml", "uas_early_media.xml", 3, 0},
		{"delayed offer: the offer in the 200, the answer in the ACK", "uac_delayed_offer.xml", "uas_delayed_offer.xml", 2, 0},
		{"re-INVITE rejected 488, the call stays up, the next one works", "uac_reinvite_reject.xml", "uas_reinvite_reject.xml", 2, 0},
		{"302 followed by the SBC", "uac_basic.xml", "uas_redirect.xml", 2, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, uas := newBed(t, bedOptions{uasScenario: tc.uas})
			local := b.caller(t, true, "caller.test")
			res := b.uac(t, local, tc.uac, "sbc.test", tc.calls)
			harness.RequireOK(t, "caller", res, tc.calls)
			want := tc.calls
			if tc.uasCalls > 0 {
				want = tc.uasCalls
			}
			ures := uas.Wait(10 * time.Second)
			if ures.Successful != want {
				t.Fatalf("callee: %s (want %d successful)", ures.Summary(), want)
			}
			checkTopologyHidden(t, ures)
			if !b.sbc.WaitLog(`"event":"call_end"`, 5*time.Second) {
				t.Fatalf("no call_end CDR line")
			}
		})
	}
}

// checkTopologyHidden looks at what the callee received: nothing of the
// caller's signalling path may be there.
func checkTopologyHidden(t *testing.T, r harness.SippResult) {
	t.Helper()
	for _, m := range r.TracedMessages() {
		if !m.Received || !m.IsRequest() {
			continue
		}
		text := m.Text
		if strings.Contains(text, "Contact: <sips:uac@") {
			t.Errorf("caller's Contact reached the callee:\n%s", text)
		}
		if strings.Contains(text, "SIPpTag00") {
			t.Errorf("caller's From tag reached the callee:\n%s", text)
		}
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(strings.ToLower(line), "via:") && !strings.Contains(line, "sbc.test") {
				t.Errorf("foreign Via reached the callee: %s", line)
			}
			if strings.HasPrefix(strings.ToLower(line), "call-id:") && strings.Contains(line, "@127.0.0.1") {
				t.Errorf("caller's Call-ID reached the callee: %s", line)
			}
		}
	}
}

func TestSIPSchemeRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, uas := newBed(t, bedOptions{uasScenario: "uas_never.xml"})
	local := b.caller(t, true, "caller.test")
	res := b.uac(t, local, "uac_sip_scheme.xml", "sbc.test", 1)
	harness.RequireOK(t, "caller expecting 416", res, 1)
	harness.RequireNotReached(t, uas)
}

func TestOptionsAnsweredLocally(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, uas := newBed(t, bedOptions{uasScenario: "uas_never.xml"})
	local := b.caller(t, true, "caller.test")
	res := b.uac(t, local, "uac_options.xml", "sbc.test", 2)
	harness.RequireOK(t, "OPTIONS ping", res, 2)
	harness.RequireNotReached(t, uas)
	if strings.Contains(b.sbc.Logs(), `"event":"call_start"`) {
		t.Fatal("an OPTIONS turned into a call")
	}
}

func TestMutualTLSRefusesNoCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, uas := newBed(t, bedOptions{uasScenario: "uas_never.xml"})
	local := b.caller(t, true, "") // no client certificate on the mutual-TLS port
	res := b.uac(t, local, "uac_basic.xml", "sbc.test", 1)
	if res.Successful != 0 {
		t.Fatalf("a call without client certificate succeeded: %s", res.Summary())
	}
	if !b.sbc.WaitLog(`"reason":"no_certificate"`, 5*time.Second) {
		t.Fatalf("no refusal with reason no_certificate in the log")
	}
	harness.RequireNotReached(t, uas)
}

func TestWrongIdentityRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, uas := newBed(t, bedOptions{uasScenario: "uas_never.xml"})
	// rogue.test has a certificate from the same CA but is no trunk.
	local := b.caller(t, true, "rogue.test")
	res := b.uac(t, local, harness.ExpectScenario(t, 403), "sbc.test", 1)
	harness.RequireOK(t, "caller expecting 403", res, 1)
	harness.RequireNotReached(t, uas)
}

func TestUnauthenticatedOwnDomainOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Run("own domain reaches the inside", func(t *testing.T) {
		b, uas := newBed(t, bedOptions{uasScenario: "uas_basic.xml"})
		local := b.caller(t, false, "")
		res := b.uac(t, local, "uac_basic.xml", "sbc.test", 1)
		harness.RequireOK(t, "unauthenticated caller to sbc.test", res, 1)
		if u := uas.Wait(10 * time.Second); u.Successful != 1 {
			t.Fatalf("callee: %s", u.Summary())
		}
	})
	t.Run("certificate from an unknown CA is served as unauthenticated", func(t *testing.T) {
		b, uas := newBed(t, bedOptions{uasScenario: "uas_basic.xml"})
		foreign := harness.DevPKI(t, t.TempDir(), "partner.example.org")["partner.example.org"]
		files := harness.TLSFiles{Cert: foreign.Cert, Key: foreign.Key, CA: b.pki["sbc.test"].CA}
		local := harness.StartTLSClientProxy(t, fmt.Sprintf("127.0.0.1:%d", b.tlsPort), files, true, "sbc.test")
		res := b.uac(t, local, "uac_basic.xml", "sbc.test", 1)
		harness.RequireOK(t, "B2B caller with a foreign certificate", res, 1)
		if u := uas.Wait(10 * time.Second); u.Successful != 1 {
			t.Fatalf("callee: %s", u.Summary())
		}
		if !strings.Contains(b.sbc.Logs(), "treated as unauthenticated") {
			t.Error("the unverifiable certificate was not logged")
		}
	})
	t.Run("other domain refused", func(t *testing.T) {
		b, uas := newBed(t, bedOptions{uasScenario: "uas_never.xml"})
		local := b.caller(t, false, "")
		res := b.uac(t, local, harness.ExpectScenario(t, 403), "elsewhere.example.com", 1)
		harness.RequireOK(t, "unauthenticated caller to another domain", res, 1)
		harness.RequireNotReached(t, uas)
	})
}

func TestFarSideDown(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, _ := newBed(t, bedOptions{})
	local := b.caller(t, true, "caller.test")
	start := time.Now()
	res := b.uac(t, local, harness.ExpectScenario(t, 503), "sbc.test", 1)
	harness.RequireOK(t, "caller expecting 503", res, 1)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("503 took %s", d)
	}
	if !b.sbc.WaitLog("failover", 2*time.Second) {
		t.Fatalf("the failed target was not logged")
	}
}

// TestInDialogRequests: INFO, UPDATE and in-dialog OPTIONS cross the SBC;
// the allow-listed P-Asserted-Identity crosses, an unknown header does not.
func TestInDialogRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, uas := newBed(t, bedOptions{uasScenario: "uas_indialog.xml"})
	local := b.caller(t, true, "caller.test")
	harness.RequireOK(t, "caller", b.uac(t, local, "uac_indialog.xml", "sbc.test", 2), 2)
	u := uas.Wait(10 * time.Second)
	if u.Successful != 2 {
		t.Fatalf("callee: %s", u.Summary())
	}
	for _, m := range u.TracedMessages() {
		if !m.Received || !strings.HasPrefix(m.StartLine, "INVITE") {
			continue
		}
		if !strings.Contains(m.Text, "P-Asserted-Identity:") {
			t.Errorf("P-Asserted-Identity did not cross:\n%s", m.Text)
		}
		if strings.Contains(m.Text, "X-Internal-Topology") || strings.Contains(m.Text, "10.9.8.7") {
			t.Errorf("a header off the allow-list crossed:\n%s", m.Text)
		}
	}
	if u.ReceivedRequests("INFO") != 2 || u.ReceivedRequests("UPDATE") != 2 || u.ReceivedRequests("OPTIONS") != 2 {
		t.Errorf("relayed: INFO %d UPDATE %d OPTIONS %d, want 2 each", u.ReceivedRequests("INFO"), u.ReceivedRequests("UPDATE"), u.ReceivedRequests("OPTIONS"))
	}
	checkTopologyHidden(t, u)
}

// TestReliableProvisional: 100rel across the B2BUA; the PRACK's RAck is
// rewritten to the callee leg's INVITE CSeq.
func TestReliableProvisional(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, uas := newBed(t, bedOptions{uasScenario: "uas_100rel.xml"})
	local := b.caller(t, true, "caller.test")
	harness.RequireOK(t, "caller", b.uac(t, local, "uac_100rel.xml", "sbc.test", 1), 1)
	u := uas.Wait(10 * time.Second)
	if u.Successful != 1 {
		t.Fatalf("callee: %s", u.Summary())
	}
	var inviteCSeq, rack string
	for _, m := range u.TracedMessages() {
		if !m.Received {
			continue
		}
		for _, line := range strings.Split(m.Text, "\n") {
			line = strings.TrimSpace(line)
			if m.Method() == "INVITE" && strings.HasPrefix(line, "CSeq:") {
				inviteCSeq = strings.Fields(line)[1]
			}
			if m.Method() == "PRACK" && strings.HasPrefix(line, "RAck:") {
				rack = strings.TrimSpace(strings.TrimPrefix(line, "RAck:"))
			}
		}
	}
	if rack != "1 "+inviteCSeq+" INVITE" {
		t.Fatalf("RAck at the callee = %q, want \"1 %s INVITE\" (the caller's leg used CSeq 7)", rack, inviteCSeq)
	}
}

// TestNoAnswer: a callee that rings past sip.answer_timeout is cancelled
// and the caller gets 408.
func TestNoAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, uas := newBed(t, bedOptions{uasScenario: "uas_ring_cancel.xml", sipYAML: "{ provisional_timeout: 1s, answer_timeout: 2s }"})
	local := b.caller(t, true, "caller.test")
	start := time.Now()
	harness.RequireOK(t, "caller expecting 408", b.uac(t, local, harness.ExpectScenario(t, 408), "sbc.test", 1), 1)
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("408 after %s with answer_timeout 2s", d)
	}
	if u := uas.Wait(10 * time.Second); u.Successful != 1 {
		t.Fatalf("callee was not cancelled cleanly: %s", u.Summary())
	}
}

// TestSessionTimerRefresh: the caller negotiates no session timer, so the
// SBC runs one on the callee leg as refresher (RFC 4028): the callee grants
// 4 s and receives an UPDATE refresh; the caller sees no timer at all.
func TestSessionTimerRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, uas := newBed(t, bedOptions{uasScenario: "uas_timer.xml"})
	local := b.caller(t, true, "caller.test")
	res := harness.RunSippUAC(t, harness.SippOptions{Scenario: "uac_basic.xml", RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local),
		RURIHost: "sbc.test", Service: "timer", Calls: 1, Pause: 3500 * time.Millisecond, Timeout: 30 * time.Second})
	harness.RequireOK(t, "caller", res, 1)
	if u := uas.Wait(10 * time.Second); u.Successful != 1 || u.ReceivedRequests("UPDATE") < 1 {
		t.Fatalf("callee: %s, UPDATEs %d", u.Summary(), u.ReceivedRequests("UPDATE"))
	}
	for _, m := range res.TracedMessages() {
		if m.Received && strings.HasPrefix(m.StartLine, "SIP/2.0 200") && strings.Contains(m.Text, "Session-Expires") {
			t.Fatalf("the SBC's own session timer leaked to the caller:\n%s", m.Text)
		}
	}
}
