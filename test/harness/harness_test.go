package harness

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// pair is a uac/uas scenario pair run back to back over TLS:
//
//	sipp UAC -TCP-> socat client proxy -TLS(mutual)-> socat server proxy -TCP-> sipp UAS
type pair struct {
	name     string
	uac, uas string
	calls    int
	uacKeys  map[string]string
	uasKeys  map[string]string
	// uacCode != 0: uac = ExpectScenario(uacCode).
	uacCode int
	// rejectCode != 0: uas = RejectScenario(rejectCode, rejectReason).
	rejectCode   int
	rejectReason string
}

var pairs = []pair{
	{name: "basic", uac: "uac_basic.xml", uas: "uas_basic.xml", calls: 3},
	{name: "callee_bye", uac: "uac_wait_bye.xml", uas: "uas_bye.xml", calls: 3},
	{name: "cancel", uac: "uac_cancel.xml", uas: "uas_ring_cancel.xml", calls: 3},
	{name: "busy", uac: "uac_busy.xml", uas: "uas_busy.xml", calls: 3},
	{name: "reinvite", uac: "uac_reinvite.xml", uas: "uas_reinvite.xml", calls: 3},
	{name: "options", uac: "uac_options.xml", uas: "uas_options.xml", calls: 3},
	// No SBC yet: the refusals the SBC will produce itself are simulated
	// by uas_reject.xml on the far side.
	{name: "sip_scheme", uac: "uac_sip_scheme.xml", rejectCode: 416, rejectReason: "Unsupported URI Scheme", calls: 2},
	{name: "expect_403", uac: "uac_expect_403.xml", rejectCode: 403, rejectReason: "Forbidden", calls: 2},
	{name: "expect_404", uac: "uac_expect_404.xml", rejectCode: 404, rejectReason: "Not Found", calls: 2},
	{name: "expect_503", uac: "uac_expect_503.xml", uas: "uas_reject.xml", calls: 2},
	{name: "expect_generated_603", uacCode: 603, rejectCode: 603, rejectReason: "Decline", calls: 2},
}

func TestScenarioPairs(t *testing.T) {
	if testing.Short() {
		t.Skip("sipp/socat self-test skipped in -short mode")
	}
	LookTools(t)
	pki := NewTestPKI(t)
	for _, pc := range pairs {
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			runPair(t, pki, pc)
		})
	}
}

func runPair(t *testing.T, pki TestPKI, pc pair) {
	if pc.uacCode != 0 {
		pc.uac = ExpectScenario(t, pc.uacCode)
	}
	if pc.rejectCode != 0 {
		pc.uas = RejectScenario(t, pc.rejectCode, pc.rejectReason)
	}
	uas := StartSippUAS(t, SippOptions{Scenario: pc.uas, Calls: pc.calls, Keys: pc.uasKeys, Pause: 200 * time.Millisecond, Timeout: 30 * time.Second})
	tlsPort := StartTLSServerProxy(t, pki.Files, uas.Port(), true)
	target := net.JoinHostPort(LoopbackIP, strconv.Itoa(tlsPort))
	cport := StartTLSClientProxy(t, target, pki.Files, true, "uas.test")
	r := RunSippUAC(t, SippOptions{
		Scenario:   pc.uac,
		RemoteAddr: net.JoinHostPort(LoopbackIP, strconv.Itoa(cport)),
		RURIHost:   "sbc.test",
		Service:    "alice",
		Calls:      pc.calls,
		Pause:      200 * time.Millisecond,
		Timeout:    20 * time.Second,
		Keys:       pc.uacKeys,
	})
	RequireOK(t, "uac "+pc.uac, r, pc.calls)
	ur := uas.Wait(10 * time.Second)
	RequireOK(t, "uas "+pc.uas, ur, pc.calls)
}

// TestNeverReached checks the "nothing reached the callee" tooling: an idle
// uas_never.xml passes RequireNotReached, and one that does get an INVITE
// records a failed call and the INVITE.
func TestNeverReached(t *testing.T) {
	if testing.Short() {
		t.Skip("sipp/socat self-test skipped in -short mode")
	}
	LookTools(t)
	pki := NewTestPKI(t)

	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		uas := StartSippUAS(t, SippOptions{Scenario: "uas_never.xml"})
		StartTLSServerProxy(t, pki.Files, uas.Port(), true)
		time.Sleep(200 * time.Millisecond)
		RequireNotReached(t, uas)
	})

	t.Run("reached", func(t *testing.T) {
		t.Parallel()
		uas := StartSippUAS(t, SippOptions{Scenario: "uas_never.xml"})
		tlsPort := StartTLSServerProxy(t, pki.Files, uas.Port(), false)
		// no client certificate, no server name check
		cport := StartTLSClientProxy(t, net.JoinHostPort(LoopbackIP, strconv.Itoa(tlsPort)), pki.Files, false, "")
		r := RunSippUAC(t, SippOptions{
			Scenario:   ExpectScenario(t, 500),
			RemoteAddr: net.JoinHostPort(LoopbackIP, strconv.Itoa(cport)),
			Calls:      1,
			Timeout:    10 * time.Second,
		})
		RequireOK(t, "uac expecting 500", r, 1)
		time.Sleep(100 * time.Millisecond) // let the 1 ms receive timeout fire
		ur := uas.Stop()
		if ur.Failed != 1 || ur.ReceivedRequests("INVITE") != 1 || ur.ReceivedRequests("ACK") != 1 {
			t.Errorf("uas_never: want 1 failed call, 1 INVITE and 1 ACK received, got failed=%d INVITE=%d ACK=%d\n%s",
				ur.Failed, ur.ReceivedRequests("INVITE"), ur.ReceivedRequests("ACK"), ur.Diagnostics())
		}
	})
}

// TestTLSRefused checks that the socat proxies really enforce TLS
// verification: a missing client certificate or a wrong server name makes
// the call fail.
func TestTLSRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("sipp/socat self-test skipped in -short mode")
	}
	LookTools(t)
	pki := NewTestPKI(t)
	cases := []struct {
		name       string
		clientCert bool
		serverName string
	}{
		{"no_client_cert", false, "sbc.test"},
		{"wrong_server_name", true, "other.test"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			uas := StartSippUAS(t, SippOptions{Scenario: "uas_never.xml"})
			tlsPort := StartTLSServerProxy(t, pki.Files, uas.Port(), true)
			cport := StartTLSClientProxy(t, net.JoinHostPort(LoopbackIP, strconv.Itoa(tlsPort)), pki.Files, c.clientCert, c.serverName)
			r := RunSippUAC(t, SippOptions{
				Scenario:   "uac_basic.xml",
				RemoteAddr: net.JoinHostPort(LoopbackIP, strconv.Itoa(cport)),
				Timeout:    5 * time.Second,
			})
			if r.ExitCode == 0 || r.Successful != 0 {
				t.Errorf("call over refused TLS succeeded: %s", r.Diagnostics())
			}
			RequireNotReached(t, uas)
		})
	}
}

func TestParseResults(t *testing.T) {
	screen := "  Successful call        |        0                  |        7                 \n" +
		"  Failed call            |        1                  |        4                 \n"
	if s, f := parseScreen(screen); s != 7 || f != 4 {
		t.Errorf("parseScreen = %d, %d; want 7, 4", s, f)
	}
	r := SippResult{Messages: "Problem EAGAIN on socket  7\n" +
		"----------------------------------------------- 2026-01-01 00:00:00.000000\n" +
		"TCP message received [10] bytes :\n\nINVITE sips:a@b SIP/2.0\nCSeq: 1 INVITE\n\n" +
		"----------------------------------------------- 2026-01-01 00:00:00.000001\n" +
		"TCP message sent (10 bytes):\n\nSIP/2.0 500 Nope\nCSeq: 1 INVITE\n\n" +
		"----------------------------------------------- 2026-01-01 00:00:00.000002\n" +
		"TCP message received [10] bytes :\n\nACK sips:a@b SIP/2.0\nCSeq: 1 ACK\n\n"}
	if n := r.ReceivedRequests(""); n != 2 {
		t.Errorf("ReceivedRequests(\"\") = %d, want 2", n)
	}
	if n := r.ReceivedRequests("INVITE"); n != 1 {
		t.Errorf("ReceivedRequests(INVITE) = %d, want 1", n)
	}
	if n := r.ReceivedResponses(0); n != 0 {
		t.Errorf("ReceivedResponses(0) = %d, want 0 (the 500 was sent)", n)
	}
	msgs := r.TracedMessages()
	want := time.Date(2026, 1, 1, 0, 0, 0, 2000, time.Local)
	if len(msgs) != 3 || !msgs[2].Time.Equal(want) || msgs[1].Time.Sub(msgs[0].Time) != time.Microsecond {
		t.Errorf("trace times: %+v, want the last at %s", msgs, want)
	}
}
