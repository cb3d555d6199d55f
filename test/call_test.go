package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

// callReport is the part of `edge-sbc call --json` the test reads.
type callReport struct {
	Answered  bool `json:"answered"`
	FinalCode int  `json:"final_code"`
	Responses []struct {
		Code int `json:"code"`
	} `json:"responses"`
	Targets []struct {
		Addr, Result string
	} `json:"targets"`
	Media *struct {
		SentRTP      uint64  `json:"sent_rtp"`
		SentRTCP     uint64  `json:"sent_rtcp"`
		ReceivedRTP  uint64  `json:"received_rtp"`
		ReceivedRTCP uint64  `json:"received_rtcp"`
		Echo         bool    `json:"echo"`
		AuthFailures uint64  `json:"auth_failures"`
		LossPercent  float64 `json:"loss_percent"`
		JitterMs     float64 `json:"jitter_ms"`
		RTTMs        float64 `json:"rtt_ms"`
		DelayAssumed bool    `json:"delay_assumed"`
		MOS          float64 `json:"mos"`
	} `json:"media"`
	Hangup   string   `json:"hangup"`
	Result   string   `json:"result"`
	Failures []string `json:"failures"`
}

// callBed is a sipp callee behind socat (TLS, client certificate
// required) and a configuration whose trunk "far" points at it.
func callBed(t *testing.T, scenario string, sippExtra ...string) (cfgPath string, uas *harness.Sipp) {
	t.Helper()
	pki := harness.DevPKI(t, t.TempDir(), "sbc.test", "callee.test")
	uas = harness.StartSippUAS(t, harness.SippOptions{Scenario: scenario, Calls: 1, Timeout: 40 * time.Second, Extra: sippExtra})
	tlsPort := harness.StartTLSServerProxy(t, pki["callee.test"], uas.Port(), true)
	cfg := fmt.Sprintf(`
node: { fqdn: sbc.test }
tls: { cert: %q, key: %q, ca: %q }
listen:
  - { addr: "127.0.0.1:%d", client_auth: required }
trunks:
  - { name: near, identity: caller.test }
  - { name: far, uri: "sips:127.0.0.1:%d", identity: callee.test }
routes:
  - { from: near, to: far }
media: { port_range: "42000-42099", bind: 127.0.0.1 }
`, pki["sbc.test"].Cert, pki["sbc.test"].Key, pki["sbc.test"].CA, harness.FreePort(t), tlsPort)
	cfgPath = filepath.Join(t.TempDir(), "edge-sbc.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, uas
}

// runCall runs `edge-sbc call` and returns its exit code and output.
func runCall(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(harness.Binary(t), append([]string{"call"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("edge-sbc call: %v", err)
	}
	t.Logf("edge-sbc call %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return code, out.String()
}

func parseCallReport(t *testing.T, out string) callReport {
	t.Helper()
	var r callReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("edge-sbc call --json: %v\n%s", err, out)
	}
	return r
}

// TestCallCommand places test calls with `edge-sbc call` directly to a
// trunk's target, sipp behind socat: an SRTP call to a far end that echoes
// (media both ways, RTT from our echoed RTCP sender reports, MOS), a busy
// far end (exit 1, 486), one that only rings (CANCEL at --timeout, 487
// ACKed, exit 1) and one that answers but sends nothing back (exit 1).
func TestCallCommand(t *testing.T) {
	t.Run("echo", func(t *testing.T) {
		cfg, uas := callBed(t, "uas_echo_srtp.xml", "-rtp_echo")
		code, out := runCall(t, "--config", cfg, "--trunk", "far", "sips:echo@callee.test", "--duration", "3s", "--json")
		r := parseCallReport(t, out)
		if code != 0 || r.Result != "pass" || !r.Answered || r.FinalCode != 200 {
			t.Fatalf("exit %d, report %+v\n%s", code, r, uas.Stop().Diagnostics())
		}
		var codes []int
		for _, x := range r.Responses {
			codes = append(codes, x.Code)
		}
		if fmt.Sprint(codes) != "[100 180 200]" {
			t.Errorf("responses %v, want [100 180 200]", codes)
		}
		m := r.Media
		// 3 s at 20 ms: about 150 packets; a loaded machine may lose a few
		// ticks, never most of them.
		if m == nil || m.SentRTP < 100 || m.ReceivedRTP < m.SentRTP*9/10 || !m.Echo || m.SentRTCP < 2 || m.ReceivedRTCP < 1 {
			t.Fatalf("media %+v", m)
		}
		if m.AuthFailures != 0 || m.LossPercent > 1 || m.RTTMs <= 0 || m.DelayAssumed || m.MOS < 4.0 {
			t.Errorf("media quality %+v", m)
		}
		if !strings.Contains(r.Hangup, "200") {
			t.Errorf("hangup %q", r.Hangup)
		}
		harness.RequireOK(t, "sipp callee", uas.Wait(10*time.Second), 1)

		// The same call, reported as a table.
		cfg, uas = callBed(t, "uas_echo_srtp.xml", "-rtp_echo")
		code, out = runCall(t, "--config", cfg, "--trunk", "far", "sips:echo@callee.test", "--duration", "2s")
		for _, want := range []string{"responses   100 Trying", "200 OK", "SRTP AES_CM_128_HMAC_SHA1_80", "(an echo of ours", "MOS ", "result: PASS"} {
			if !strings.Contains(out, want) {
				t.Errorf("table output lacks %q", want)
			}
		}
		if code != 0 {
			t.Errorf("exit %d", code)
		}
		harness.RequireOK(t, "sipp callee", uas.Wait(10*time.Second), 1)
	})
	t.Run("busy", func(t *testing.T) {
		cfg, uas := callBed(t, "uas_busy.xml")
		code, out := runCall(t, "--config", cfg, "--trunk", "far", "sips:busy@callee.test", "--duration", "2s", "--json")
		r := parseCallReport(t, out)
		if code != 1 || r.Result != "fail" || r.Answered || r.FinalCode != 486 || r.Media != nil {
			t.Fatalf("exit %d, report %+v\n%s", code, r, uas.Stop().Diagnostics())
		}
		harness.RequireOK(t, "sipp callee", uas.Wait(10*time.Second), 1)
	})
	t.Run("no answer", func(t *testing.T) {
		cfg, uas := callBed(t, "uas_ring_cancel.xml")
		code, out := runCall(t, "--config", cfg, "--trunk", "far", "sips:ringing@callee.test", "--timeout", "1s", "--json")
		r := parseCallReport(t, out)
		if code != 1 || r.Result != "fail" || r.Answered || !strings.Contains(strings.Join(r.Failures, ";"), "CANCEL sent, 487") {
			t.Fatalf("exit %d, report %+v\n%s", code, r, uas.Stop().Diagnostics())
		}
		harness.RequireOK(t, "sipp callee (CANCEL, ACK of the 487)", uas.Wait(10*time.Second), 1)
	})
	t.Run("no media back", func(t *testing.T) {
		cfg, uas := callBed(t, "uas_echo_srtp.xml") // no -rtp_echo
		code, out := runCall(t, "--config", cfg, "--trunk", "far", "sips:silent@callee.test", "--duration", "2s", "--json")
		r := parseCallReport(t, out)
		if code != 1 || r.Result != "fail" || !r.Answered || r.Media == nil || r.Media.ReceivedRTP != 0 ||
			!strings.Contains(strings.Join(r.Failures, ";"), "no media back") {
			t.Fatalf("exit %d, report %+v\n%s", code, r, uas.Stop().Diagnostics())
		}
		harness.RequireOK(t, "sipp callee", uas.Wait(10*time.Second), 1)
	})
}
