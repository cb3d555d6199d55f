package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/test/syncbuf"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// startConfig writes a configuration with two SIP listeners, a metrics
// server and a CDR file, and returns its path.
func startConfig(t *testing.T, listen1, listen2, metrics string) string {
	t.Helper()
	return startConfigWith(t, listen1, listen2, metrics, "")
}

// startConfigWith is startConfig with extra YAML (top-level keys) added.
func startConfigWith(t *testing.T, listen1, listen2, metrics, extra string) string {
	t.Helper()
	dir := t.TempDir()
	pki, err := tlsconf.WriteDevPKI(filepath.Join(dir, "pki"), []string{"sbc.start.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	us := pki.Leaves["sbc.start.test"]
	yaml := fmt.Sprintf(`node: {fqdn: sbc.start.test}
tls: {cert: %q, key: %q, ca: %q}
listen:
  - {addr: %q, client_auth: required}
  - {addr: %q, client_auth: optional}
trunks:
  - {name: a, identity: a.start.test}
  - {name: b, uri: "sips:127.0.0.1:15081", identity: b.start.test}
routes:
  - {from: a, to: b}
media: {bind: 127.0.0.1, port_range: "41000-41019"}
metrics: {listen: %q}
cdr: {file: %q}
dns: {servers: ["127.0.0.1:53"]}
log: {level: debug, format: json}
%s
`, us.Cert, us.Key, pki.CA, listen1, listen2, metrics, filepath.Join(dir, "cdr.jsonl"), extra)
	path := filepath.Join(dir, "edge-sbc.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// settled waits until no more goroutines run than base, and fails the
// test with the goroutine dump otherwise.
func settled(t *testing.T, base int, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			var b strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%s: %d goroutines, %d before start:\n%s", what, runtime.NumGoroutine(), base, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// free fails the test unless addr (TCP) can be bound again.
func free(t *testing.T, addr, what string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s %s still held: %v", what, addr, err)
	}
	_ = ln.Close()
}

// TestStartUnwindsWhenTheSecondListenerFails: the second listen address is
// taken, so start fails after it opened the media relay, the CDR file, the
// metrics server and the first listener; it returns the error and leaves
// no socket open and no goroutine running. Then, the address freed, the
// same configuration starts and closes cleanly too.
func TestStartUnwindsWhenTheSecondListenerFails(t *testing.T) {
	first, metrics := freeTCP(t), freeTCP(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	second := taken.Addr().String()
	path := startConfig(t, first, second, metrics)

	base := runtime.NumGoroutine()
	var logs syncbuf.Buffer
	s, err := build(path, "", &logs)
	if err != nil {
		t.Fatal(err)
	}
	err = s.start()
	if err == nil || !strings.Contains(err.Error(), "listen[1] "+second) {
		t.Fatalf("start = %v, want the listen[1] %s error", err, second)
	}
	free(t, first, "first SIP listener")
	free(t, metrics, "metrics listener")
	settled(t, base, "after the failed start")
	if len(s.closers.fns) != 0 {
		t.Errorf("%d closers left on the stack", len(s.closers.fns))
	}
	if err := s.eng.Alive(); err == nil {
		t.Error("the media relay was left running")
	}

	_ = taken.Close()
	base = runtime.NumGoroutine()
	s, err = build(path, "", &logs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.start(); err != nil {
		t.Fatalf("start with both addresses free: %v\n%s", err, logs.String())
	}
	if err := s.b2b.Alive(); err != nil {
		t.Errorf("started, but %v", err)
	}
	s.close()
	for _, a := range []string{first, second, metrics} {
		free(t, a, "after close:")
	}
	settled(t, base, "after close")
	if !strings.Contains(logs.String(), "edge-sbc stopped") || strings.Contains(logs.String(), "close failed") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestMediaConfigDSCP: main and content video take media.dscp.video; the
// application streams (BFCP) take media.dscp.signalling; 0 is best effort.
func TestMediaConfigDSCP(t *testing.T) {
	path := startConfig(t, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Media.DSCP = config.DSCP{Audio: 46, Video: 34, Signalling: 26}
	mc, err := mediaConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if mc.DSCPAudio != 46 || mc.DSCPVideo != 34 || mc.DSCPApplication != 26 {
		t.Errorf("media DSCP audio %d video %d application %d, want 46 34 26", mc.DSCPAudio, mc.DSCPVideo, mc.DSCPApplication)
	}
	cfg.Media.DSCP.Signalling = 0
	if mc, _ := mediaConfig(cfg); mc.DSCPApplication >= 0 {
		t.Errorf("signalling 0 (best effort): application DSCP %d, want negative (off)", mc.DSCPApplication)
	}
}
