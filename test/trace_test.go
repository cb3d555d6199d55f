package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

// traceBed is one SBC (mutual TLS listener) between a sipp caller and a
// sipp callee, with extra keys under tls: and at the top level.
type traceBed struct {
	sbc      *harness.SBC
	pki      map[string]harness.TLSFiles
	mtlsPort int // the SBC's listener (leg A)
	calleeTL int // the callee's TLS port (leg B)
	metrics  int
}

// traceOpts are the keys a traceBed adds to its configuration.
type traceOpts struct {
	tls    string   // more keys under tls:, indented by two spaces
	top    string   // more top-level sections
	inside string   // more keys of the callee trunk, e.g. ", trace: false"
	media  string   // media.port_range; default "41000-41999"
	uas    []string // more sipp arguments of the callee
}

func newTraceBed(t *testing.T, o traceOpts) *traceBed {
	t.Helper()
	harness.LookTools(t)
	b := &traceBed{}
	if o.media == "" {
		o.media = "41000-41999"
	}
	b.pki = harness.DevPKI(t, t.TempDir(), "sbc.test", "caller.test", "callee.test")
	uas := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_basic.xml", Timeout: 60 * time.Second, Extra: o.uas})
	b.calleeTL = harness.StartTLSServerProxy(t, b.pki["callee.test"], uas.Port(), true)
	b.mtlsPort = harness.FreePort(t)
	b.metrics = harness.FreePort(t)
	cfg := fmt.Sprintf(`
node: { fqdn: sbc.test }
tls:
  cert: %s
  key: %s
  ca: %s
%s
listen:
  - { addr: "127.0.0.1:%d", client_auth: required }
trunks:
  - { name: outside, identity: caller.test }
  - { name: inside, uri: "sips:127.0.0.1:%d", identity: callee.test%s }
routes:
  - { from: outside, to: inside }
sip: { provisional_timeout: 1s }
media: { port_range: "%s", bind: 127.0.0.1 }
log: { level: debug, format: json }
shutdown: { drain_timeout: 2s }
limits: { max_connections_per_ip: 1000, handshakes_per_ip: 1000 }
metrics: { listen: "127.0.0.1:%d" }
%s
`, b.pki["sbc.test"].Cert, b.pki["sbc.test"].Key, b.pki["sbc.test"].CA, o.tls, b.mtlsPort, b.calleeTL, o.inside, o.media, b.metrics, o.top)
	b.sbc = harness.StartSBC(t, cfg)
	return b
}

// call places one basic call (INVITE, 200, ACK, BYE, 200) through the SBC
// and waits for its CDR.
func (b *traceBed) call(t *testing.T) {
	t.Helper()
	b.callWhile(t, 0, nil)
}

// callWhile places the call with the callee's answer lasting pause (0:
// sipp's default) and runs during (when not nil) once it is answered.
func (b *traceBed) callWhile(t *testing.T, pause time.Duration, during func()) {
	t.Helper()
	local := harness.StartTLSClientProxy(t, fmt.Sprintf("127.0.0.1:%d", b.mtlsPort), b.pki["caller.test"], true, "sbc.test")
	done := make(chan harness.SippResult, 1)
	go func() {
		done <- harness.RunSippUAC(t, harness.SippOptions{
			Scenario: "uac_basic.xml", RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local),
			RURIHost: "sbc.test", Service: "alice", Calls: 1, Pause: pause, Timeout: pause + 40*time.Second,
		})
	}()
	if during != nil {
		if !b.sbc.WaitLog(`"event":"call_answer"`, 10*time.Second) {
			t.Fatal("call not answered")
		}
		during()
	}
	harness.RequireOK(t, "call", <-done, 1)
	if !b.sbc.WaitLog(`"event":"call_end"`, 5*time.Second) {
		t.Fatal("no call_end CDR line")
	}
}

// hepLine is what test/hep/receiver.js prints for each packet hep-js
// decoded.
type hepLine struct {
	Src           string `json:"src"`
	Dst           string `json:"dst"`
	CorrelationID string `json:"correlation_id"`
	StartLine     string `json:"start_line"`
	Family        int    `json:"family"`
	Protocol      int    `json:"protocol"`
	PayloadType   int    `json:"payload_type"`
	CaptureID     uint32 `json:"capture_id"`
	CapturePass   string `json:"capture_pass"`
	TimeSec       int64  `json:"time_sec"`
	TimeUsec      int64  `json:"time_usec"`
	PayloadLength int    `json:"payload_length"`
	Error         string `json:"error"`
	raw           string
}

// hepReceiverDir makes sure hep-js is installed in test/hep (npm ci, as
// `make test-deps` does) and returns the directory; it skips the test when
// node or the npm registry is not there.
func hepReceiverDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(harness.RepoRoot(), "test", "hep")
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the hep-js receiver cannot run (Node 20 and npm are needed; see make test-deps)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "hep-js", "index.js")); err == nil {
		return dir
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed and test/hep/node_modules is missing: hep-js cannot be installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("hep-js could not be installed with npm ci in test/hep (is the npm registry reachable?): %v\n%s", err, out)
	}
	return dir
}

// hepReceiver runs `node receiver.js transport` and collects its lines.
type hepReceiver struct {
	port  int
	mu    sync.Mutex
	lines []hepLine
}

func startHEPReceiver(t *testing.T, dir, transport string) *hepReceiver {
	t.Helper()
	cmd := exec.Command("node", "receiver.js", transport)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the hep-js receiver: %v", err)
	}
	r := &hepReceiver{}
	listening := make(chan int, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var hello struct {
				Listening int `json:"listening"`
			}
			if json.Unmarshal(sc.Bytes(), &hello) == nil && hello.Listening > 0 {
				listening <- hello.Listening
				continue
			}
			var l hepLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				l.Error = fmt.Sprintf("not JSON: %q", sc.Text())
			}
			l.raw = sc.Text()
			r.mu.Lock()
			r.lines = append(r.lines, l)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		<-done
	})
	select {
	case r.port = <-listening:
	case <-time.After(10 * time.Second):
		t.Fatal("the hep-js receiver did not start")
	}
	return r
}

func (r *hepReceiver) snapshot() []hepLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hepLine(nil), r.lines...)
}

// settle waits until no new line arrived for 500 ms.
func (r *hepReceiver) settle(t *testing.T) []hepLine {
	n, last := -1, time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got := len(r.snapshot()); got != n {
			n, last = got, time.Now()
		} else if time.Since(last) > 500*time.Millisecond {
			break
		}
	}
	return r.snapshot()
}

// TestHEPExportDecodedByHepJS: a call through the real binary with
// trace.hep on; sipcapture's hep-js decodes every packet, and both legs'
// messages arrive with one correlation id, the right addresses, node id,
// auth key and time, over UDP and over TCP.
func TestHEPExportDecodedByHepJS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := hepReceiverDir(t)
	for _, tc := range []struct{ transport, password string }{{"udp", "hep-secret"}, {"tcp", ""}} {
		t.Run(tc.transport, func(t *testing.T) {
			rcv := startHEPReceiver(t, dir, tc.transport)
			const nodeID = 4242
			b := newTraceBed(t, traceOpts{top: fmt.Sprintf(`trace: { hep: { addr: "127.0.0.1:%d", transport: %s, node_id: %d, password: "%s" } }`,
				rcv.port, tc.transport, nodeID, tc.password)})
			if tc.password != "" && strings.Contains(b.sbc.Logs(), tc.password) {
				t.Fatal("the HEP password is in the log")
			}
			start := time.Now()
			b.call(t)
			lines := rcv.settle(t)
			legA, legB := fmt.Sprintf("127.0.0.1:%d", b.mtlsPort), fmt.Sprintf("127.0.0.1:%d", b.calleeTL)
			calls := map[string]bool{}
			seen := map[string]bool{} // "A>INVITE": leg A, toward the SBC
			for _, l := range lines {
				if l.Error != "" {
					t.Fatalf("hep-js: %s", l.Error)
				}
				if l.Family != 2 || l.Protocol != 6 || l.PayloadType != 1 || l.CaptureID != nodeID || l.CapturePass != tc.password {
					t.Errorf("packet header: %s", l.raw)
				}
				if l.TimeSec < start.Unix()-1 || l.TimeSec > time.Now().Unix()+1 || l.TimeUsec < 0 || l.TimeUsec >= 1e6 {
					t.Errorf("packet time %d.%06d outside the call: %s", l.TimeSec, l.TimeUsec, l.raw)
				}
				if l.CorrelationID == "" {
					t.Errorf("a message of the call without correlation id: %s", l.raw)
					continue
				}
				calls[l.CorrelationID] = true
				leg, dir := "?", ""
				switch {
				case l.Dst == legA:
					leg, dir = "A", ">"
				case l.Src == legA:
					leg, dir = "A", "<"
				case l.Dst == legB:
					leg, dir = "B", ">"
				case l.Src == legB:
					leg, dir = "B", "<"
				}
				what := strings.Fields(l.StartLine)
				if len(what) < 2 {
					t.Fatalf("no SIP start line: %s", l.raw)
				}
				key := what[0]
				if key == "SIP/2.0" {
					key = what[1]
				}
				seen[leg+dir+key] = true
			}
			if len(calls) != 1 {
				t.Fatalf("correlation ids %v, want the one call's (%d packets)", calls, len(lines))
			}
			// Leg A: the caller sends to the SBC; leg B: the SBC sends to the
			// callee. ">" is toward the listener of that leg.
			for _, want := range []string{"A>INVITE", "A<200", "A>ACK", "A>BYE", "B>INVITE", "B<200", "B>ACK", "B>BYE"} {
				if !seen[want] {
					t.Errorf("no %s in the HEP export; seen %v", want, seen)
				}
			}
			m := scrape(t, b.metrics)
			if got := m["edge_sbc_hep_packets_total"]; int(got) != len(lines) {
				t.Errorf("edge_sbc_hep_packets_total = %v, the receiver decoded %d", got, len(lines))
			}
			if d := m[`edge_sbc_hep_dropped_total{reason="queue_full"}`] + m[`edge_sbc_hep_dropped_total{reason="send_error"}`] + m[`edge_sbc_hep_dropped_total{reason="too_large"}`]; d != 0 {
				t.Errorf("edge_sbc_hep_dropped_total = %v", d)
			}
			for i, l := range lines {
				if i < 4 || i == len(lines)-1 {
					t.Logf("hep-js: %s", l.raw)
				}
			}
			t.Logf("%d packets, correlation id %v, seen %v", len(lines), calls, seen)
		})
	}
}

// TestHEPTraceOffTrunk: with trace: false on the callee trunk, leg A is
// exported whole and nothing of leg B carries the call's id: no request
// the SBC sends to the callee and no response within the call. (The SIP
// layer forgets a call's Call-IDs when it ends, so a response that arrives
// on leg B after that, the 200 to the BYE, is traced as out of any call:
// it is logged here, not refused; sip/trace.go has to keep ended calls'
// Call-IDs for that.)
func TestHEPTraceOffTrunk(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := hepReceiverDir(t)
	rcv := startHEPReceiver(t, dir, "udp")
	b := newTraceBed(t, traceOpts{top: fmt.Sprintf(`trace: { hep: { addr: "127.0.0.1:%d" } }`, rcv.port), inside: ", trace: false"})
	b.call(t)
	lines := rcv.settle(t)
	legA, legB := fmt.Sprintf("127.0.0.1:%d", b.mtlsPort), fmt.Sprintf("127.0.0.1:%d", b.calleeTL)
	seenA := map[string]bool{}
	for _, l := range lines {
		switch {
		case l.Src == legB || l.Dst == legB:
			if l.CorrelationID != "" || !strings.HasPrefix(l.StartLine, "SIP/2.0 ") {
				t.Errorf("leg B of a trace: false trunk exported: %s", l.raw)
			} else {
				t.Logf("leg B response after the call ended, traced outside the call by the SIP layer: %s", l.raw)
			}
		case l.Dst == legA && l.CorrelationID != "":
			seenA[strings.Fields(l.StartLine)[0]] = true
		}
	}
	for _, m := range []string{"INVITE", "ACK", "BYE"} {
		if !seenA[m] {
			t.Errorf("leg A %s not exported (%d packets)", m, len(lines))
		}
	}
}
