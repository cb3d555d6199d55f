package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// wrongNameCallee listens on f.callee (trunk "inside", identity
// inside.test) with a certificate from the fixture's CA for another name.
func wrongNameCallee(t *testing.T, f *fixture) {
	t.Helper()
	lf, err := tlsconf.IssueDevLeaf(filepath.Join(f.dir, "pki"), tlsconf.LeafOptions{
		Names: []string{"elsewhere.test"}, ServerAuth: true, ClientAuth: true, FileBase: "elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	servePeerOn(t, f.callee, lf)
}

// logLine returns the first JSON log line of p whose message is msg.
func logLine(t *testing.T, p *proc, msg string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(p.Logs(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == msg {
			return m
		}
	}
	t.Fatalf("no %q log line", msg)
	return nil
}

// TestCheckRefusesWrongNameAsRunDoes: a trunk target whose certificate
// (from our CA) carries another name than the trunk identity. `edge-sbc
// run` refuses it when a call is routed there and logs the reason;
// `edge-sbc check` on the same configuration fails trunk.tls for that
// target with the same reason, wrong_name, and the same explanation: both
// go through tlsconf.Dial and tlsconf.Classify.
func TestCheckRefusesWrongNameAsRunDoes(t *testing.T) {
	f := newFixture(t)
	wrongNameCallee(t, f)
	// No DNS is needed (the trunk URI is an IP); a closed port makes the
	// check's own-name lookups fail at once.
	path := f.writeConfig(t, fmt.Sprintf("dns: {servers: [%q], timeout: 200ms, attempts: 1}\n", freeTCP(t)))

	p := f.start(t, path)
	caller := dialCaller(t, f)
	if res := caller.invite(t, "wrong-name-1"); res.StatusCode < 400 {
		t.Fatalf("a call to a trunk with the wrong certificate got %d %s", res.StatusCode, res.Reason)
	}
	p.waitLog("outbound TLS refused", 5*time.Second)
	refused := logLine(t, p, "outbound TLS refused")
	runReason, runWhy := refused["reason"], refused["why"]
	if runReason != string(tlsconf.ReasonWrongName) || refused["remote"] != f.callee {
		t.Fatalf("run refused %v for %v, want wrong_name for %s: %v", runReason, refused["remote"], f.callee, refused)
	}

	var out bytes.Buffer
	err := cmdCheck([]string{"--config", path, "--json", "--timeout", "2s"}, &out)
	if !errors.Is(err, errCheckFailed) {
		t.Fatalf("check = %v, want errCheckFailed\n%s", err, out.String())
	}
	var rs []struct{ ID, Level, Verdict, Evidence string }
	if err := json.Unmarshal(out.Bytes(), &rs); err != nil {
		t.Fatalf("check --json: %v\n%s", err, out.String())
	}
	id := "trunk.tls/inside/" + f.callee
	for _, r := range rs {
		if r.ID != id {
			continue
		}
		want := fmt.Sprintf("reason %s: %s;", runReason, runWhy)
		t.Logf("run: %s %q; check: %s", runReason, runWhy, r.Evidence)
		if r.Level != "must" || r.Verdict != "fail" || !strings.Contains(r.Evidence, want) {
			t.Errorf("check %s: %s/%s %q; want a failed must with %q (what run logged)", id, r.Level, r.Verdict, r.Evidence, want)
		}
		return
	}
	t.Fatalf("no %s in\n%s", id, out.String())
}
