package sip

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/sip/cluster"
)

func planConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"c.pem", "k.pem", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	y := `
node: { fqdn: sbc.test, domains: [sbc.test], public_ipv4: 192.0.2.1 }
tls: { cert: ` + filepath.Join(dir, "c.pem") + `, key: ` + filepath.Join(dir, "k.pem") + `, ca: ` + filepath.Join(dir, "ca.pem") + ` }
listen:
  - { addr: "127.0.0.1:5061", unauthenticated_trunk: public }
trunks:
  - { name: webex, uri: "sips:example.webex.com", identity: callservice.ciscospark.com, max_calls: 2, cps: 1 }
  - { name: public }
  - { name: pbx, uri: "sips:10.0.0.5:5061", media_address: 10.0.0.1, srtp: terminate }
routes:
  - { from: webex, to: pbx }
  - { from: public, to: pbx }
  - { from: pbx, to: webex }
` + extra
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestPlanner: the plan of a new call without sockets: the route, the
// media parameters of both legs, and admission (per-trunk calls and rate,
// unauthenticated caps, the stream cap, draining), with release giving the
// slot back exactly once.
func TestPlanner(t *testing.T) {
	cfg := planConfig(t, "limits: { unauthenticated_max_calls: 1, unauthenticated_cps: 100 }\n")
	s, err := newSnapshot(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newPlanner()
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }

	pl, r, why := p.plan(s, inbound{trunk: "webex", user: "alice", host: "sbc.test", streams: 2})
	if pl == nil {
		t.Fatalf("refused: %+v %s", r, why)
	}
	if pl.to.name != "pbx" || pl.media.SRTPB != "terminate" || pl.media.AdvertiseB.String() != "10.0.0.1" ||
		pl.media.AdvertiseA.String() != "192.0.2.1" || !pl.trusted {
		t.Fatalf("plan %+v", pl)
	}
	// cps 1: a second call in the same second is refused, without taking
	// a slot.
	if _, r, why := p.plan(s, inbound{trunk: "webex", user: "a", host: "sbc.test"}); r.code != 503 || why != "trunk_cps" {
		t.Fatalf("second call in a second: %+v %q", r, why)
	}
	now = now.Add(time.Second)
	pl2, _, _ := p.plan(s, inbound{trunk: "webex", user: "a", host: "sbc.test"})
	now = now.Add(time.Second)
	if _, r, why := p.plan(s, inbound{trunk: "webex", user: "a", host: "sbc.test"}); r.code != 503 || why != "trunk_max_calls" {
		t.Fatalf("third concurrent call: %+v %q", r, why)
	}
	p.release(pl)
	p.release(pl) // once only
	if total, per := p.counts(); total != 1 || per["webex"] != 1 || per["pbx"] != 1 {
		t.Fatalf("after one release: total %d per trunk %v", total, per)
	}
	p.release(pl2)
	// Unauthenticated: own domains only, one call at most.
	if _, r, _ := p.plan(s, inbound{trunk: "public", unauth: true, user: "a", host: "elsewhere.test"}); r.code != 403 {
		t.Fatalf("unauthenticated call to a foreign domain: %+v", r)
	}
	u1, _, _ := p.plan(s, inbound{trunk: "public", unauth: true, user: "a", host: "sbc.test"})
	if u1 == nil || u1.trusted {
		t.Fatalf("unauthenticated plan %+v (identity headers must not be trusted)", u1)
	}
	if _, r, why := p.plan(s, inbound{trunk: "public", unauth: true, user: "a", host: "sbc.test"}); r.code != 503 || why != "unauthenticated_max_calls" {
		t.Fatalf("second unauthenticated call: %+v %q", r, why)
	}
	p.release(u1)
	if _, r, why := p.plan(s, inbound{trunk: "webex", user: "a", host: "sbc.test", streams: 9}); r.code != 488 || why != "max_media_streams" {
		t.Fatalf("9 m-lines: %+v %q", r, why)
	}
	p.setDraining(true)
	if _, r, why := p.plan(s, inbound{trunk: "pbx", user: "a", host: "x"}); r.code != 503 || why != "draining" {
		t.Fatalf("draining: %+v %q", r, why)
	}
	if total, _ := p.counts(); total != 0 {
		t.Fatalf("%d slots held after every release", total)
	}
}

// TestPlannerCount: the parts a cluster admission uses: route plans
// without counting, release of a plan never counted gives nothing back,
// count counts without checking (once), a plan released before its
// admission finished is neither counted nor admitted, and the cluster's
// request mirrors the limits admit checks.
func TestPlannerCount(t *testing.T) {
	cfg := planConfig(t, "limits: { max_calls: 5, cps: 7, unauthenticated_max_calls: 1, unauthenticated_cps: 2 }\n")
	s, err := newSnapshot(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newPlanner()
	pl, _, _ := p.route(s, inbound{trunk: "webex", user: "a", host: "sbc.test"})
	if pl == nil || pl.counted {
		t.Fatalf("route: %+v", pl)
	}
	if total, _ := p.counts(); total != 0 {
		t.Fatalf("route counted the call: %d", total)
	}
	for range 3 { // beyond webex's max_calls 2: count does not check
		q, _, _ := p.route(s, inbound{trunk: "webex", user: "a", host: "sbc.test"})
		p.count(s, q)
		p.count(s, q)
	}
	if total, per := p.counts(); total != 3 || per["webex"] != 3 || per["pbx"] != 3 {
		t.Fatalf("after 3 counts: %d %v", total, per)
	}
	p.release(pl) // never counted
	if total, _ := p.counts(); total != 3 {
		t.Fatalf("releasing an uncounted plan changed the count: %d", total)
	}
	p.count(s, pl)
	if r, why := p.admit(s, pl); why != "ended" || r.code != 503 {
		t.Fatalf("admit of a released plan: %+v %q", r, why)
	}
	if total, _ := p.counts(); total != 3 {
		t.Fatalf("a released plan was counted: %d", total)
	}

	u, _, _ := p.route(s, inbound{trunk: "public", unauth: true, user: "a", host: "sbc.test"})
	req := callAdmitRequest(s, "k", u)
	if req.CallID != "k" || req.Global.MaxCalls != 5 || req.Global.CPS != 7 || req.Unauthenticated == nil ||
		req.Unauthenticated.MaxCalls != 1 || req.Unauthenticated.CPS != 2 || len(req.Trunks) != 2 ||
		req.Trunks[0].Name != "public" || req.Trunks[1].Name != "pbx" || req.Trunks[1].CPS != 0 {
		t.Fatalf("cluster request %+v", req)
	}
	w, _, _ := p.route(s, inbound{trunk: "webex", user: "a", host: "sbc.test"})
	req = callAdmitRequest(s, "k", w)
	if req.Unauthenticated != nil || req.Trunks[0].MaxCalls != 2 || req.Trunks[0].CPS != 1 {
		t.Fatalf("cluster request %+v", req)
	}
	mv := moveAdmitRequest("k", w.from, w.to, false, w.to)
	if mv.Global != (cluster.Limit{}) || len(mv.Trunks) != 2 || mv.Trunks[0].Name != "pbx" || mv.Trunks[1].MaxCalls != 0 {
		t.Fatalf("move request %+v", mv)
	}
}

// TestRefusalTexts: the refusal of every internal error is generic: no
// address, host name or error text of the other side.
func TestRefusalTexts(t *testing.T) {
	for _, err := range []error{ErrUnreachable, ErrTLS, ErrIdentity, ErrAllTargets, ErrResolve, ErrMedia, ErrNoRoute} {
		r := statusFor(err)
		if r.code < 400 || r.warning == "" {
			t.Errorf("%v: %+v", err, r)
		}
		for _, bad := range []string{"10.", "127.", "dial", ":"} {
			if contains(r.warning, bad) {
				t.Errorf("%v: warning %q", err, r.warning)
			}
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
