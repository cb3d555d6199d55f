package readiness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestRunAllGood(t *testing.T) {
	f := newFixture(t)
	p := f.peer
	c := f.config(t, spec{trunks: []trunkSpec{
		{name: "byip", uri: "sips:" + p.addr, identity: testPeerName},
		{name: "bysrv", uri: "sips:" + testPeerName, identity: testPeerName},
	}})
	rs := run(t, c)
	t.Log("\n" + dump(rs))
	for _, r := range rs {
		if r.Verdict != VerdictOK {
			t.Errorf("%s: %s: %s", r.ID, r.Verdict, r.Evidence)
		}
	}
	if Failed(rs) {
		t.Errorf("Failed = true for a good setup")
	}
	listen := fmt.Sprintf("127.0.0.1:%d", f.listenPort)
	expect(t, rs, "dns.a", LevelMust, VerdictOK, "127.0.0.1")
	expect(t, rs, "dns.ptr/127.0.0.1", LevelShould, VerdictOK, testFQDN)
	expect(t, rs, "dns.srv/"+testDomain, LevelShould, VerdictOK, fmt.Sprintf("port %d is listener %s", f.listenPort, listen))
	expect(t, rs, "cert.expiry", LevelMust, VerdictOK, "days left")
	expect(t, rs, "cert.name", LevelMust, VerdictOK, testFQDN)
	expect(t, rs, "cert.eku.server", LevelMust, VerdictOK, "serverAuth")
	expect(t, rs, "cert.eku.client", LevelShould, VerdictOK, "clientAuth")
	expect(t, rs, "cert.chain", LevelShould, VerdictOK, "leaf + 1 CA", "cannot be checked offline")
	expect(t, rs, "tls.min_version", LevelMust, VerdictOK, "TLS 1.2")
	expect(t, rs, "local.listen/"+listen, LevelMust, VerdictOK)
	expect(t, rs, "local.media_ports/"+f.mediaRange, LevelMust, VerdictOK)
	expect(t, rs, "local.dscp", LevelShould, VerdictOK, "audio 46", "video 34")
	expect(t, rs, "trunk.resolve/byip", LevelMust, VerdictOK, p.addr)
	expect(t, rs, "trunk.tls/byip/"+p.addr, LevelMust, VerdictOK, "TLS 1.3", testPeerName)
	expect(t, rs, "trunk.options/byip/"+p.addr, LevelShould, VerdictOK, "200 OK")
	expect(t, rs, "trunk.resolve/bysrv", LevelMust, VerdictOK, "SRV 10 10")
	expect(t, rs, "trunk.tls/bysrv/"+p.addr, LevelMust, VerdictOK)
	expect(t, rs, "trunk.options/bysrv/"+p.addr, LevelShould, VerdictOK, "200 OK")
}

func TestWriteJSON(t *testing.T) {
	rs := []Result{
		checkCertExpiry.ok("valid"),
		checkPTR.on("192.0.2.1").miss("no PTR record"),
		checkFQDNA.miss("no A record"),
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, rs); err != nil {
		t.Fatal(err)
	}
	var got []map[string]string
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("output is not a JSON array of objects: %v\n%s", err, buf.String())
	}
	if len(got) != 3 {
		t.Fatalf("got %d objects, want 3", len(got))
	}
	for _, o := range got {
		for _, k := range []string{"id", "requirement", "level", "verdict", "evidence"} {
			if o[k] == "" {
				t.Errorf("object %v: field %q missing or empty", o, k)
			}
		}
	}
	if got[1]["id"] != "dns.ptr/192.0.2.1" || got[1]["level"] != "should" || got[1]["verdict"] != "warn" {
		t.Errorf("should-level miss: %v", got[1])
	}
	if got[2]["level"] != "must" || got[2]["verdict"] != "fail" {
		t.Errorf("must-level miss: %v", got[2])
	}

	buf.Reset()
	if err := WriteJSON(&buf, nil); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(buf.String()) != "[]" {
		t.Errorf("no results: got %q, want []", buf.String())
	}
}

func TestWriteTable(t *testing.T) {
	rs := []Result{checkCertExpiry.ok("valid until 2030-01-01"), checkFQDNA.miss("no A record\nfor x")}
	var buf bytes.Buffer
	if err := WriteTable(&buf, rs); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"VERDICT", "EVIDENCE", "OK", "cert.expiry", "FAIL", "no A record for x", "2 checks: 1 ok, 0 warn, 1 fail (1 must failed)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestFailed(t *testing.T) {
	for _, tc := range []struct {
		name string
		rs   []Result
		want bool
	}{
		{"none", nil, false},
		{"all ok", []Result{checkFQDNA.ok("x"), checkPTR.ok("x")}, false},
		{"should missed", []Result{checkPTR.miss("x")}, false},
		{"must warned", []Result{checkCertExpiry.warn("x")}, false},
		{"must failed", []Result{checkPTR.miss("x"), checkFQDNA.miss("x")}, true},
	} {
		if got := Failed(tc.rs); got != tc.want {
			t.Errorf("%s: Failed = %v, want %v", tc.name, got, tc.want)
		}
	}
}
