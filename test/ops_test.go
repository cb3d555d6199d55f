package test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

// scrape returns the Prometheus text exposition as name{labels} -> value.
func scrape(t *testing.T, port int) map[string]float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

func longCall(t *testing.T, local int, pause time.Duration) chan harness.SippResult {
	ch := make(chan harness.SippResult, 1)
	go func() {
		ch <- harness.RunSippUAC(t, harness.SippOptions{
			Scenario: "uac_basic.xml", RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local),
			RURIHost: "sbc.test", Service: "long", Calls: 1, Pause: pause, Timeout: pause + 30*time.Second,
		})
	}()
	return ch
}

// TestMetricsAndLeaks scrapes /metrics after scripted calls and checks that
// calls, dialogs and goroutines return to their baseline when calls end.
func TestMetricsAndLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	mport := harness.FreePort(t)
	b, uas := newBed(t, bedOptions{uasScenario: "uas_basic.xml", metrics: mport})
	local := b.caller(t, true, "caller.test")
	// The first call opens the TLS connections on both sides.
	harness.RequireOK(t, "warm-up call", b.uac(t, local, "uac_basic.xml", "sbc.test", 1), 1)
	time.Sleep(500 * time.Millisecond)
	base := scrape(t, mport)
	harness.RequireOK(t, "calls", b.uac(t, local, "uac_basic.xml", "sbc.test", 5), 5)
	_ = uas
	var after map[string]float64
	deadline := time.Now().Add(5 * time.Second)
	for {
		after = scrape(t, mport)
		if after["edge_sbc_calls_active"] == 0 && after["go_goroutines"] <= base["go_goroutines"]+2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	want := map[string]float64{
		`edge_sbc_calls_total{from="outside",outcome="answered",to="inside"}`: 6,
		`edge_sbc_calls_active`:                                                     0,
		`edge_sbc_dialogs`:                                                          0,
		`edge_sbc_sip_requests_total{method="INVITE"}`:                              6,
		`edge_sbc_sip_requests_total{method="BYE"}`:                                 6,
		`edge_sbc_sip_responses_total{code="200",method="INVITE"}`:                  6,
		`edge_sbc_tls_handshakes_total{direction="inbound",reason="",result="ok"}`:  2, // socat opens one per sipp run
		`edge_sbc_tls_handshakes_total{direction="outbound",reason="",result="ok"}`: 1,
	}
	for k, v := range want {
		if after[k] != v {
			t.Errorf("%s = %v, want %v", k, after[k], v)
		}
	}
	if after["edge_sbc_call_setup_seconds_count"] != 6 {
		t.Errorf("setup histogram count = %v", after["edge_sbc_call_setup_seconds_count"])
	}
	if g0, g1 := base["go_goroutines"], after["go_goroutines"]; g1 > g0+2 {
		t.Errorf("goroutines %v -> %v after the calls ended (leak)", g0, g1)
	}
	if c0, c1 := base["edge_sbc_tls_connections"], after["edge_sbc_tls_connections"]; c1 != c0 {
		t.Errorf("TLS connections %v -> %v (connections are reused, none should be added)", c0, c1)
	}
	if after["edge_sbc_media_ports_in_use"] != 0 {
		t.Errorf("media ports still in use: %v", after["edge_sbc_media_ports_in_use"])
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", mport, path))
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", path, err, resp)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	t.Logf("goroutines %v -> %v, TLS connections %v", base["go_goroutines"], after["go_goroutines"], after["edge_sbc_tls_connections"])
}

// TestDrain: during drain a new INVITE gets 503, an established call
// completes normally, and the process exits 0.
func TestDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	mport := harness.FreePort(t)
	b, _ := newBed(t, bedOptions{uasScenario: "uas_basic.xml", drain: 20 * time.Second, metrics: mport})
	local := b.caller(t, true, "caller.test")
	long := longCall(t, local, 5*time.Second)
	if !b.sbc.WaitLog(`"event":"call_answer"`, 10*time.Second) {
		t.Fatal("long call not answered")
	}
	if err := b.sbc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !b.sbc.WaitLog("shutting down", 5*time.Second) {
		t.Fatal("no drain")
	}
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", mport)); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	res := b.uac(t, local, harness.ExpectScenario(t, 503), "sbc.test", 1)
	harness.RequireOK(t, "new call during drain gets 503", res, 1)
	harness.RequireOK(t, "established call completes", <-long, 1)
	select {
	case <-b.sbc.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("SBC did not exit after its last call")
	}
	if err := b.sbc.Stop(); err != nil {
		t.Fatalf("exit status: %v", err)
	}
	if !strings.Contains(b.sbc.Logs(), `"hangup_by":"a"`) {
		t.Errorf("the established call was not ended by its caller")
	}
}

func peerCertificate(t *testing.T, port int, ca string) *x509.Certificate {
	t.Helper()
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: pool, ServerName: "sbc.test"})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// TestReload: a call established before SIGHUP continues; the next TLS
// handshake serves the new certificate; a broken config is refused and the
// old routes keep working.
func TestReload(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, _ := newBed(t, bedOptions{uasScenario: "uas_basic.xml"})
	local := b.caller(t, true, "caller.test")
	long := longCall(t, local, 6*time.Second)
	if !b.sbc.WaitLog(`"event":"call_answer"`, 10*time.Second) {
		t.Fatal("long call not answered")
	}
	before := peerCertificate(t, b.tlsPort, b.pki["sbc.test"].CA)

	// 1. A broken config is refused; the running one keeps routing.
	good, err := os.ReadFile(b.sbc.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(good), "to: inside", "to: nowhere", 1)
	if err := os.WriteFile(b.sbc.ConfigPath, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = b.sbc.Signal(syscall.SIGHUP)
	if !b.sbc.WaitLog("reload refused", 5*time.Second) {
		t.Fatal("broken config not refused")
	}
	if !strings.Contains(b.sbc.Logs(), "routes[0].to") {
		t.Errorf("refusal does not name the key")
	}
	harness.RequireOK(t, "call after refused reload", b.uac(t, local, "uac_basic.xml", "sbc.test", 1), 1)

	// 2. New certificate files in place + SIGHUP: the next handshake
	// serves the new certificate.
	if err := os.WriteFile(b.sbc.ConfigPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // distinct NotBefore second
	dir := filepath.Dir(b.pki["sbc.test"].Cert)
	newDir := t.TempDir()
	copyFile(t, filepath.Join(dir, "ca.pem"), filepath.Join(newDir, "ca.pem"))
	copyFile(t, filepath.Join(dir, "ca.key"), filepath.Join(newDir, "ca.key"))
	fresh := harness.DevPKI(t, newDir, "sbc.test")
	copyFile(t, fresh["sbc.test"].Key, b.pki["sbc.test"].Key)
	copyFile(t, fresh["sbc.test"].Cert, b.pki["sbc.test"].Cert)
	_ = b.sbc.Signal(syscall.SIGHUP)
	if !b.sbc.WaitLog("reload: configuration and certificates applied", 5*time.Second) {
		t.Fatal("reload not applied")
	}
	after := peerCertificate(t, b.tlsPort, b.pki["sbc.test"].CA)
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatal("the next handshake still serves the old certificate")
	}
	harness.RequireOK(t, "call after reload", b.uac(t, local, "uac_basic.xml", "sbc.test", 1), 1)
	harness.RequireOK(t, "call established before the reloads", <-long, 1)
}

// TestSystemdUnit installs into a temporary root and verifies the unit.
func TestSystemdUnit(t *testing.T) {
	if testing.Short() {
		t.Skip("installs")
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze missing: apt-get install -y systemd (make test-deps installs it)")
	}
	root := t.TempDir()
	cmd := exec.Command("make", "install", "DESTDIR="+root, "PREFIX=/usr")
	cmd.Dir = harness.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/bin/edge-sbc", "lib/systemd/system/edge-sbc.service", "etc/edge-sbc/edge-sbc.yaml.example"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("make install did not install %s", f)
		}
	}
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/edge-sbc.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"Type=notify", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "RestrictAddressFamilies=", "LimitNOFILE=", "User=edge-sbc", "ExecReload="} {
		if !strings.Contains(string(unit), must) {
			t.Errorf("unit lacks %s", must)
		}
	}
	// Point ExecStart at the installed binary so verify can check it.
	bin := filepath.Join(root, "usr/bin/edge-sbc")
	u := strings.ReplaceAll(string(unit), "/usr/bin/edge-sbc", bin)
	u = strings.ReplaceAll(u, "/bin/kill", "/usr/bin/kill")
	path := filepath.Join(t.TempDir(), "edge-sbc.service")
	if err := os.WriteFile(path, []byte(u), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	if len(strings.TrimSpace(string(out))) > 0 {
		t.Logf("systemd-analyze: %s", out)
	}
	// The example config must validate once its files exist: covered in
	// config tests; here, the installed binary must answer.
	v, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(v), "edge-sbc ") {
		t.Fatalf("installed binary: %v %q", err, v)
	}
	_ = io.Discard
}
