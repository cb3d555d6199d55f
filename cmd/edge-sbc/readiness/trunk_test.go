package readiness

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// peerCase starts a SIP peer presenting a certificate issued with opt and
// returns a configuration with one trunk "peer" to it, expecting identity.
func peerCase(t *testing.T, opt tlsconf.LeafOptions, identity string) (*fixture, string, []Result) {
	t.Helper()
	f := newFixture(t)
	p := startPeer(t, f.issue(t, opt), 200, "OK")
	rs := run(t, f.config(t, spec{trunks: []trunkSpec{{name: "peer", uri: "sips:" + p.addr, identity: identity}}}))
	return f, p.addr, rs
}

func TestTrunkPeerExpired(t *testing.T) {
	now := time.Now()
	_, addr, rs := peerCase(t, tlsconf.LeafOptions{Names: []string{testPeerName}, ServerAuth: true,
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour), FileBase: "peer-expired"}, testPeerName)
	expect(t, rs, "trunk.resolve/peer", LevelMust, VerdictOK)
	expect(t, rs, "trunk.tls/peer/"+addr, LevelMust, VerdictFail, "reason expired", `subject "CN=`+testPeerName)
	expect(t, rs, "trunk.options/peer/"+addr, LevelShould, VerdictWarn, "not sent")
	if !Failed(rs) {
		t.Error("run did not fail")
	}
}

func TestTrunkPeerWrongName(t *testing.T) {
	_, addr, rs := peerCase(t, tlsconf.LeafOptions{Names: []string{"other.example.test"}, ServerAuth: true, FileBase: "peer-wrong"}, testPeerName)
	expect(t, rs, "trunk.tls/peer/"+addr, LevelMust, VerdictFail, "reason wrong_name", `"other.example.test"`, `expected identity "`+testPeerName+`"`)
}

func TestTrunkPeerUnknownCA(t *testing.T) {
	f := newFixture(t)
	other, err := tlsconf.WriteDevPKI(t.TempDir(), []string{testPeerName}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := startPeer(t, other.Leaves[testPeerName], 200, "OK")
	rs := run(t, f.config(t, spec{trunks: []trunkSpec{{name: "peer", uri: "sips:" + p.addr, identity: testPeerName}}}))
	expect(t, rs, "trunk.tls/peer/"+p.addr, LevelMust, VerdictFail, "reason unknown_ca")
}

func TestTrunkPeerNoServerAuth(t *testing.T) {
	_, addr, rs := peerCase(t, tlsconf.LeafOptions{Names: []string{testPeerName}, ClientAuth: true, FileBase: "peer-client-only"}, testPeerName)
	expect(t, rs, "trunk.tls/peer/"+addr, LevelMust, VerdictFail, "reason bad_usage")
}

func TestTrunkOptionsRefused(t *testing.T) {
	f := newFixture(t)
	p := startPeer(t, f.issue(t, tlsconf.LeafOptions{Names: []string{testPeerName}, ServerAuth: true, FileBase: "peer-403"}), 403, "Forbidden")
	rs := run(t, f.config(t, spec{trunks: []trunkSpec{{name: "peer", uri: "sips:" + p.addr, identity: testPeerName}}}))
	expect(t, rs, "trunk.tls/peer/"+p.addr, LevelMust, VerdictOK)
	expect(t, rs, "trunk.options/peer/"+p.addr, LevelShould, VerdictWarn, "403 Forbidden")
	if Failed(rs) {
		t.Errorf("a refused OPTIONS (a recommendation) failed the run:\n%s", dump(rs))
	}
}

func TestTrunkResolveFails(t *testing.T) {
	f := newFixture(t)
	rs := run(t, f.config(t, spec{trunks: []trunkSpec{{name: "gone", uri: "sips:nowhere.example.test", identity: "x.example.test"}}}))
	expect(t, rs, "trunk.resolve/gone", LevelMust, VerdictFail, "no such domain")
	for _, r := range rs {
		if strings.HasPrefix(r.ID, "trunk.tls/gone") {
			t.Errorf("TLS checked without a target: %+v", r)
		}
	}
}

func TestTrunkTargetsCapped(t *testing.T) {
	f := newFixture(t)
	_, port, _ := net.SplitHostPort(f.peer.addr)
	f.zone.add(t, "_sips._tcp.many.example.test. 60 IN SRV 10 10 "+port+" many.example.test.")
	for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		f.zone.add(t, "many.example.test. 60 IN A "+ip)
	}
	rs := run(t, f.config(t, spec{trunks: []trunkSpec{{name: "many", uri: "sips:many.example.test", identity: testPeerName}}}))
	expect(t, rs, "trunk.resolve/many", LevelMust, VerdictOK, "checking the first 4")
	n := 0
	for _, r := range rs {
		if strings.HasPrefix(r.ID, "trunk.tls/many/") {
			n++
		}
	}
	if n != maxTargets {
		t.Errorf("%d targets checked, want %d:\n%s", n, maxTargets, dump(rs))
	}
	expect(t, rs, "trunk.tls/many/127.0.0.1:"+port, LevelMust, VerdictOK)
	expect(t, rs, "trunk.tls/many/127.0.0.2:"+port, LevelMust, VerdictFail, "TCP connect")
}

// A peer that accepts TCP but never speaks TLS must not hang the check.
func TestTrunkHandshakeTimeout(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never answered
		}
	}()
	defer func() {
		_ = ln.Close()
		<-done
		for _, c := range held {
			_ = c.Close()
		}
	}()
	c := f.config(t, spec{trunks: []trunkSpec{{name: "mute", uri: "sips:" + ln.Addr().String(), identity: testPeerName}}})
	start := time.Now()
	rs := Run(t.Context(), c, Options{Timeout: 300 * time.Millisecond})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("run took %s with a 300ms timeout", d)
	}
	expect(t, rs, "trunk.tls/mute/"+ln.Addr().String(), LevelMust, VerdictFail, "reason handshake", "timed out")
}
