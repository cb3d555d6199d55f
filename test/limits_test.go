package test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

// TestCallLimit: limits.max_calls 1 — a second concurrent call gets 503
// while the first completes.
func TestCallLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, _ := newBed(t, bedOptions{uasScenario: "uas_basic.xml",
		limits: "{ max_calls: 1, max_connections_per_ip: 1000, handshakes_per_ip: 1000 }"})
	local := b.caller(t, true, "caller.test")
	long := longCall(t, local, 4*time.Second)
	if !b.sbc.WaitLog(`"event":"call_answer"`, 10*time.Second) {
		t.Fatal("first call not answered")
	}
	harness.RequireOK(t, "second call refused", b.uac(t, local, harness.ExpectScenario(t, 503), "sbc.test", 1), 1)
	harness.RequireOK(t, "first call", <-long, 1)
	if !strings.Contains(b.sbc.Logs(), `"admission":"max_calls"`) {
		t.Error("refusal not logged with its reason")
	}
	// Once the first call ended, calls are admitted again.
	harness.RequireOK(t, "call after", b.uac(t, local, "uac_basic.xml", "sbc.test", 1), 1)
}

// TestConnectionCapPerIP: max_connections_per_ip 2 — a third concurrent
// TLS connection from the same address is refused, logged once. The
// stranger dials from 127.0.0.2: 127.0.0.1 is a trunk target here, and
// trunk targets are exempt from the per-address caps.
func TestConnectionCapPerIP(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, _ := newBed(t, bedOptions{uasScenario: "uas_basic.xml",
		limits: "{ max_connections_per_ip: 2, handshakes_per_ip: 1000 }"})
	pem, err := os.ReadFile(b.pki["sbc.test"].CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conf := &tls.Config{RootCAs: pool, ServerName: "sbc.test"}
	addr := fmt.Sprintf("127.0.0.1:%d", b.tlsPort)
	stranger := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	var open []*tls.Conn
	for i := 0; i < 2; i++ {
		c, err := tls.DialWithDialer(stranger, "tcp", addr, conf)
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		open = append(open, c)
	}
	for i := 0; i < 3; i++ {
		if c, err := tls.DialWithDialer(stranger, "tcp", addr, conf); err == nil {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			if _, rerr := c.Read(make([]byte, 1)); rerr == nil {
				t.Fatalf("connection beyond the cap was served")
			}
			c.Close()
		}
	}
	if n := strings.Count(b.sbc.Logs(), "connection refused (logged once"); n != 1 {
		t.Errorf("refusal logged %d times, want once", n)
	}
	for _, c := range open {
		c.Close()
	}
	// The trunk target's address (127.0.0.1) is not capped.
	var trusted []*tls.Conn
	for i := 0; i < 4; i++ {
		c, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			t.Fatalf("trusted connection %d: %v", i+1, err)
		}
		trusted = append(trusted, c)
	}
	for _, c := range trusted {
		c.Close()
	}
	// Closing frees the slots.
	time.Sleep(200 * time.Millisecond)
	c, err := tls.DialWithDialer(stranger, "tcp", addr, conf)
	if err != nil {
		t.Fatalf("after closing: %v", err)
	}
	c.Close()
}

// TestLoopDetected: a route that sends calls back to this SBC is caught by
// its own Via and answered 482, not relayed again and again.
func TestLoopDetected(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	harness.LookTools(t)
	pki := harness.DevPKI(t, t.TempDir(), "sbc.test", "caller.test")
	mtls := harness.FreePort(t)
	cfg := fmt.Sprintf(`
node: { fqdn: sbc.test }
tls: { cert: %[1]s, key: %[2]s, ca: %[3]s }
listen:
  - { addr: "127.0.0.1:%[4]d", client_auth: required }
trunks:
  - { name: outside, identity: caller.test }
  - { name: self, uri: "sips:127.0.0.1:%[4]d", identity: sbc.test }
  - { name: back, uri: "sips:127.0.0.1:%[4]d", identity: sbc.test }
routes:
  # self: this SBC's own certificate, so its own INVITE maps to trunk self
  # and is routed again: a loop.
  - { from: outside, to: self }
  - { from: self, to: back }
media: { port_range: "42000-42999", bind: 127.0.0.1 }
log: { level: debug, format: json }
shutdown: { drain_timeout: 1s }
`, pki["sbc.test"].Cert, pki["sbc.test"].Key, pki["sbc.test"].CA, mtls)
	sbc := harness.StartSBC(t, cfg)
	local := harness.StartTLSClientProxy(t, fmt.Sprintf("127.0.0.1:%d", mtls), pki["caller.test"], true, "sbc.test")
	res := harness.RunSippUAC(t, harness.SippOptions{Scenario: harness.ExpectScenario(t, 482),
		RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local), RURIHost: "sbc.test", Service: "loop", Calls: 1, Timeout: 20 * time.Second})
	harness.RequireOK(t, "caller expecting 482", res, 1)
	if n := strings.Count(sbc.Logs(), `"event":"call_start"`); n != 1 {
		t.Errorf("call_start lines = %d, want 1 (the looped INVITE must not start a call)", n)
	}
}

// TestKeepaliveAndIdle: the SBC pings idle TLS connections with CRLF-CRLF
// (RFC 5626 §4.4.1) and closes a connection that sends nothing for
// limits.idle_timeout when no call uses it.
func TestKeepaliveAndIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, _ := newBed(t, bedOptions{uasScenario: "uas_basic.xml",
		sipYAML: "{ provisional_timeout: 1s, keepalive_interval: 500ms }",
		limits:  "{ max_connections_per_ip: 1000, handshakes_per_ip: 1000, idle_timeout: 2s }"})
	pem, err := os.ReadFile(b.pki["sbc.test"].CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.tlsPort), &tls.Config{RootCAs: pool, ServerName: "sbc.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "\r\n\r\n" {
		t.Fatalf("no CRLF-CRLF keepalive within 1.5s: %q %v", buf[:n], err)
	}
	// We never answer: the connection must be closed after ~2s of silence.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err = c.Read(buf); err != nil {
			break
		}
	}
	if d := time.Since(start); d < 1500*time.Millisecond || d > 4500*time.Millisecond {
		t.Fatalf("idle connection closed after %s (idle_timeout 2s): %v", d, err)
	}
	// A connection that carries a call is kept past the idle timeout.
	local := b.caller(t, true, "caller.test")
	harness.RequireOK(t, "call longer than idle_timeout", harness.RunSippUAC(t, harness.SippOptions{
		Scenario: "uac_basic.xml", RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local), RURIHost: "sbc.test",
		Service: "idle", Calls: 1, Pause: 4 * time.Second, Timeout: 30 * time.Second}), 1)
}
