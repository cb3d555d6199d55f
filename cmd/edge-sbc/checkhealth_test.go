package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// healthResult is one object of `edge-sbc check --json`.
type healthResult struct{ ID, Level, Verdict, Evidence string }

// runCheckJSON runs the check command on path and returns its results by
// ID (the command fails here anyway: the fixture's DNS server is a closed
// port, so the must checks of our own name fail).
func runCheckJSON(t *testing.T, path string) map[string]healthResult {
	t.Helper()
	var out bytes.Buffer
	start := time.Now()
	if err := cmdCheck([]string{"--config", path, "--json", "--timeout", "2s"}, &out); err != nil && !errors.Is(err, errCheckFailed) {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	t.Logf("check ran in %s", time.Since(start).Round(time.Millisecond))
	var rs []healthResult
	if err := json.Unmarshal(out.Bytes(), &rs); err != nil {
		t.Fatalf("check --json: %v\n%s", err, out.String())
	}
	m := map[string]healthResult{}
	for _, r := range rs {
		m[r.ID] = r
	}
	return m
}

// metricsText returns GET http://addr/metrics, "" when it fails.
func metricsText(addr string) string {
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// TestCheckReportsLiveTargetHealth: a running edge-sbc monitors trunk
// inside (a peer answering OPTIONS) and trunk spare (a port where nothing
// listens). check, which cannot see the running process's monitor, reads
// its /metrics and prints one line per target: inside's up with the round
// trip of its last ping, spare's down (a warning: every target of the
// trunk is down). Once the SBC has stopped, check says it is not running;
// with no trunk monitored, that monitoring is off.
func TestCheckReportsLiveTargetHealth(t *testing.T) {
	f := newFixture(t)
	servePeerOn(t, f.callee, f.pki.Leaves["inside.test"])
	spare, metrics := freeTCP(t), freeTCP(t)
	// No DNS is needed (trunk URIs are IPs); a closed port makes the
	// check's own-name lookups fail at once.
	extra := fmt.Sprintf("dns: {servers: [%q], timeout: 200ms, attempts: 1}\nmetrics: {listen: %q}\n", freeTCP(t), metrics)
	const inside = "{name: inside, uri: \"sips:%s\", identity: inside.test, allow_plain_rtp: true}"
	const health = "health: {interval: 1s, timeout: 500ms, down_after: 1, up_after: 1}"
	plain := f.yaml(extra)
	monitored := strings.Replace(plain, fmt.Sprintf(inside, f.callee),
		fmt.Sprintf("{name: inside, uri: \"sips:%s\", identity: inside.test, allow_plain_rtp: true, %s}\n", f.callee, health)+
			fmt.Sprintf("  - {name: spare, uri: \"sips:%s\", identity: inside.test, %s}", spare, health), 1)
	if monitored == plain {
		t.Fatal("the fixture's inside trunk line changed: update this test")
	}
	path := filepath.Join(f.dir, "monitored.yaml")
	if err := os.WriteFile(path, []byte(monitored), 0o600); err != nil {
		t.Fatal(err)
	}
	p := f.start(t, path)
	started := time.Now()
	upLine := fmt.Sprintf(`edge_sbc_trunk_target_up{target=%q,trunk="inside"} 1`, f.callee)
	downLine := fmt.Sprintf(`edge_sbc_trunk_target_up{target=%q,trunk="spare"} 0`, spare)
	for {
		m := metricsText(metrics)
		if strings.Contains(m, upLine) && strings.Contains(m, downLine) {
			break
		}
		if time.Since(started) > 10*time.Second {
			t.Fatalf("targets not judged within 10s:\n%s", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("both targets judged %s after ready", time.Since(started).Round(time.Millisecond))

	rs := runCheckJSON(t, path)
	up := rs["trunk.health/inside/"+f.callee]
	if up.Level != "should" || up.Verdict != "ok" || !strings.Contains(up.Evidence, "up: last answered ping took ") {
		t.Errorf("inside's target: %+v", up)
	}
	down := rs["trunk.health/spare/"+spare]
	if down.Verdict != "warn" || !strings.HasPrefix(down.Evidence, "down:") || !strings.Contains(down.Evidence, "calls get 503") {
		t.Errorf("spare's target: %+v", down)
	}
	if r, ok := rs["trunk.health"]; ok {
		t.Errorf("a summary line while the service runs: %+v", r)
	}
	t.Logf("%s: %s %s", "trunk.health/inside/"+f.callee, up.Verdict, up.Evidence)
	t.Logf("%s: %s %s", "trunk.health/spare/"+spare, down.Verdict, down.Evidence)

	// The table says the same, one line per target.
	var table bytes.Buffer
	_ = cmdCheck([]string{"--config", path, "--timeout", "2s"}, &table)
	for _, id := range []string{"trunk.health/inside/" + f.callee, "trunk.health/spare/" + spare} {
		if n := strings.Count(table.String(), id+" "); n != 1 {
			t.Errorf("table: %d lines for %s\n%s", n, id, table.String())
		}
	}

	p.signal(syscall.SIGTERM)
	if _, err := p.wait(20 * time.Second); err != nil {
		t.Fatalf("edge-sbc exit: %v", err)
	}
	rs = runCheckJSON(t, path)
	if r := rs["trunk.health"]; r.Verdict != "warn" || !strings.Contains(r.Evidence, "not running") || !strings.Contains(r.Evidence, "inside, spare") {
		t.Errorf("stopped service: %+v", r)
	}
	t.Logf("stopped: %s", rs["trunk.health"].Evidence)

	off := filepath.Join(f.dir, "off.yaml")
	if err := os.WriteFile(off, []byte(plain), 0o600); err != nil {
		t.Fatal(err)
	}
	rs = runCheckJSON(t, off)
	if r := rs["trunk.health"]; r.Verdict != "ok" || !strings.Contains(r.Evidence, "monitoring is off") {
		t.Errorf("no trunk monitored: %+v", r)
	}
}
