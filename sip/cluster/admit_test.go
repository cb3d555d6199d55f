package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// admit asks a for callID with reqs' limits and fails t on an error.
func admit(t *testing.T, a *Admitter, callID string, trunks []TrunkLimit, global Limit) (bool, string) {
	t.Helper()
	ok, reason, err := a.Admit(context.Background(), AdmitRequest{CallID: callID, Trunks: trunks, Global: global})
	if err != nil {
		t.Fatalf("admit %s: %v", callID, err)
	}
	return ok, reason
}

func pbx(max int) []TrunkLimit {
	return []TrunkLimit{{Name: "webex"}, {Name: "pbx", Limit: Limit{MaxCalls: max}}}
}

// TestClusterMaxCalls: a trunk limit of 10 holds across two nodes; the
// 11th call is refused on either; Release frees a slot exactly once.
func TestClusterMaxCalls(t *testing.T) {
	r := startRedis(t)
	n1, n2 := node(t, r, "n1", nil, nil), node(t, r, "n2", nil, nil)
	a1, a2 := n1.Admitter(), n2.Admitter()
	for i := range 10 {
		a := a1
		if i%2 == 1 {
			a = a2
		}
		if ok, reason := admit(t, a, fmt.Sprintf("c%d", i), pbx(10), Limit{}); !ok {
			t.Fatalf("call %d refused (%s) below the limit", i, reason)
		}
	}
	for _, a := range []*Admitter{a1, a2} {
		if ok, reason := admit(t, a, "c10", pbx(10), Limit{}); ok || reason != ReasonTrunkMaxCalls {
			t.Fatalf("11th call on %s: ok=%v reason=%q, want refused with %s", a.c.NodeID(), ok, reason, ReasonTrunkMaxCalls)
		}
	}
	// The same call id again is admitted without being counted twice.
	if ok, _ := admit(t, a1, "c0", pbx(10), Limit{}); !ok {
		t.Fatal("an admitted call asked again is refused")
	}
	raw := raw(t, r, "")
	ctx := context.Background()
	if got := raw.HGet(ctx, "edge-sbc:node:n1:count", "t:pbx").Val(); got != "5" {
		t.Fatalf("n1 counts %s calls on pbx, want 5", got)
	}

	// Release on n2 frees one slot, usable from n1; a second Release of
	// the same call frees nothing more.
	for range 2 {
		if err := a2.Release(ctx, "c1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := raw.HGet(ctx, "edge-sbc:node:n2:count", "t:pbx").Val(); got != "4" {
		t.Fatalf("after releasing c1 twice n2 counts %s calls on pbx, want 4", got)
	}
	if ok, reason := admit(t, a1, "c11", pbx(10), Limit{}); !ok {
		t.Fatalf("refused (%s) after a release", reason)
	}
	if ok, _ := admit(t, a2, "c12", pbx(10), Limit{}); ok {
		t.Fatal("a double release freed two slots")
	}
	// Releasing a call of the other node, or an unknown one, is nothing.
	if err := a2.Release(ctx, "c0"); err != nil {
		t.Fatal(err)
	}
	if err := a1.Release(ctx, "never-admitted"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := admit(t, a2, "c13", pbx(10), Limit{}); ok {
		t.Fatal("releasing another node's call freed a slot")
	}

	// The global limit counts every call of every node.
	for i := range 10 {
		a := []*Admitter{a1, a2}[i%2]
		if err := a.Release(ctx, fmt.Sprintf("c%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// c11 is left (n1): two more fit under a global limit of 3.
	g := Limit{MaxCalls: 3}
	if ok, _ := admit(t, a2, "g1", nil, g); !ok {
		t.Fatal("global: g1 refused")
	}
	if ok, _ := admit(t, a1, "g2", pbx(0), g); !ok {
		t.Fatal("global: g2 refused")
	}
	if ok, reason := admit(t, a2, "g3", nil, g); ok || reason != ReasonMaxCalls {
		t.Fatalf("global: 4th call ok=%v reason=%q, want %s", ok, reason, ReasonMaxCalls)
	}
	if a1.Calls() != 2 || a2.Calls() != 1 {
		t.Fatalf("nodes count %d and %d calls, want 2 and 1", a1.Calls(), a2.Calls())
	}
}

// TestDeadNodeFreesSlots: a node that stops without releasing (Close:
// its heartbeat stops, its counts stay, as after SIGKILL) stops counting
// within 10 s. Default heartbeat: every 2 s, TTL 6 s.
func TestDeadNodeFreesSlots(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	n1 := node(t, r, "n1", nil, nil)
	n2 := node(t, r, "n2", nil, nil)
	a1, a2 := n1.Admitter(), n2.Admitter()
	for i := range 5 {
		admit(t, a1, fmt.Sprintf("a%d", i), pbx(10), Limit{})
		admit(t, a2, fmt.Sprintf("b%d", i), pbx(10), Limit{})
	}
	if ok, _ := admit(t, a1, "x", pbx(10), Limit{}); ok {
		t.Fatal("11th call admitted")
	}
	// Let n2 refresh its heartbeat at least once more, as a live node does.
	time.Sleep(2500 * time.Millisecond)
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if ok, _ := admit(t, a1, "x", pbx(10), Limit{}); ok {
		t.Fatal("the stopped node's calls stopped counting at once: they should until its heartbeat expires")
	}
	if got := raw(t, r, "").HGet(context.Background(), "edge-sbc:node:n2:count", "t:pbx").Val(); got != "5" {
		t.Fatalf("the stopped node's count is %q, want 5 (kept)", got)
	}
	var freed time.Duration
	for {
		ok, _, err := a1.Admit(context.Background(), AdmitRequest{CallID: "x", Trunks: pbx(10)})
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			freed = time.Since(killed)
			break
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatal("the stopped node's slots are not free 10 s after it stopped")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("a stopped node's slots were free %s after it stopped (heartbeat %s, TTL %s)",
		freed.Round(10*time.Millisecond), DefaultHeartbeatInterval, DefaultHeartbeatTTL)
	if freed > DefaultHeartbeatTTL+500*time.Millisecond {
		t.Fatalf("freed after %s: longer than the heartbeat TTL %s", freed, DefaultHeartbeatTTL)
	}
	for i := range 4 {
		if ok, _ := admit(t, a1, fmt.Sprintf("y%d", i), pbx(10), Limit{}); !ok {
			t.Fatalf("call %d of the freed slots refused", i)
		}
	}
	if ok, _ := admit(t, a1, "z", pbx(10), Limit{}); ok {
		t.Fatal("a 11th call admitted after the takeover")
	}

	// n2 comes back (a new run, same node id): its old records are
	// replaced by its (empty) own, and do not count again.
	n2b := node(t, r, "n2", nil, nil)
	if ok, _ := admit(t, n2b.Admitter(), "z", pbx(10), Limit{}); ok {
		t.Fatal("the restarted node admitted a 11th call")
	}
	if got := raw(t, r, "").HGet(context.Background(), "edge-sbc:node:n2:count", "t:pbx").Val(); got != "" && got != "0" {
		t.Fatalf("the restarted node's count of pbx is %q, want none", got)
	}
	if err := a1.Release(context.Background(), "y0"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := admit(t, n2b.Admitter(), "z", pbx(10), Limit{}); !ok {
		t.Fatal("the restarted node cannot use a free slot")
	}
}

// TestClusterCPS: a rate limit holds across nodes, as a token bucket of
// burst max(cps, 1); a refused call takes no token.
func TestClusterCPS(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	a1, a2 := node(t, r, "n1", nil, nil).Admitter(), node(t, r, "n2", nil, nil).Admitter()
	// 2 per second: a burst of 2, then a token every 500 ms (wide margins
	// for a loaded machine).
	trunk := []TrunkLimit{{Name: "pstn", Limit: Limit{CPS: 2}}, {Name: "pbx"}}
	for i := range 2 {
		a := []*Admitter{a1, a2}[i%2]
		if ok, reason := admit(t, a, fmt.Sprintf("r%d", i), trunk, Limit{}); !ok {
			t.Fatalf("call %d of the burst of 2 refused (%s)", i, reason)
		}
	}
	for _, a := range []*Admitter{a1, a2} {
		if ok, reason := admit(t, a, "r2", trunk, Limit{}); ok || reason != ReasonTrunkCPS {
			t.Fatalf("3rd call at once: ok=%v reason=%q, want %s", ok, reason, ReasonTrunkCPS)
		}
	}
	time.Sleep(600 * time.Millisecond) // one token back, not two
	if ok, reason := admit(t, a2, "r3", trunk, Limit{}); !ok {
		t.Fatalf("refused (%s) after a token came back", reason)
	}
	if ok, _ := admit(t, a1, "r4", trunk, Limit{}); ok {
		t.Fatal("two calls admitted on one returned token")
	}

	// Global CPS.
	g := Limit{CPS: 2}
	if ok, _ := admit(t, a1, "g0", nil, g); !ok {
		t.Fatal("global cps: g0 refused")
	}
	if ok, _ := admit(t, a2, "g1", nil, g); !ok {
		t.Fatal("global cps: g1 refused")
	}
	if ok, reason := admit(t, a1, "g2", nil, g); ok || reason != ReasonCPS {
		t.Fatalf("global cps: 3rd call ok=%v reason=%q, want %s", ok, reason, ReasonCPS)
	}

	// A call refused by a concurrency limit takes no rate token; a rate
	// below 1 per second still admits one call at a time.
	slow := []TrunkLimit{{Name: "slow", Limit: Limit{CPS: 0.5}}, {Name: "full", Limit: Limit{MaxCalls: 1}}}
	if ok, reason := admit(t, a1, "s0", slow, Limit{}); !ok {
		t.Fatalf("s0 refused (%s)", reason)
	}
	if ok, reason := admit(t, a2, "s1", slow, Limit{}); ok || reason != ReasonTrunkMaxCalls {
		t.Fatalf("s1: ok=%v reason=%q, want %s", ok, reason, ReasonTrunkMaxCalls)
	}
	time.Sleep(2100 * time.Millisecond) // 0.5/s: one token back
	if err := a1.Release(context.Background(), "s0"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := admit(t, a2, "s2", slow[:1], Limit{}); !ok {
		t.Fatal("s2 refused: the call refused by max_calls took the token")
	}
	if ok, reason := admit(t, a1, "s3", slow[:1], Limit{}); ok || reason != ReasonTrunkCPS {
		t.Fatalf("s3: ok=%v reason=%q, want %s", ok, reason, ReasonTrunkCPS)
	}
}

// TestAdopt: a call taken over is counted without a limit check, and is
// released like any other.
func TestAdopt(t *testing.T) {
	r := startRedis(t)
	a1, a2 := node(t, r, "n1", nil, nil).Admitter(), node(t, r, "n2", nil, nil).Admitter()
	ctx := context.Background()
	for i := range 2 {
		admit(t, a1, fmt.Sprintf("c%d", i), pbx(2), Limit{})
	}
	if err := a2.Adopt(ctx, AdmitRequest{CallID: "taken", Trunks: pbx(2)}); err != nil {
		t.Fatal(err)
	}
	if err := a2.Adopt(ctx, AdmitRequest{CallID: "taken", Trunks: pbx(2)}); err != nil { // twice: once
		t.Fatal(err)
	}
	raw := raw(t, r, "")
	if got := raw.HGet(ctx, "edge-sbc:node:n2:count", "t:pbx").Val(); got != "1" {
		t.Fatalf("adopted call counted %s times, want 1", got)
	}
	if err := a1.Release(ctx, "c0"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := admit(t, a1, "c2", pbx(2), Limit{}); ok {
		t.Fatal("the adopted call does not count")
	}
	if err := a2.Release(ctx, "taken"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := admit(t, a1, "c2", pbx(2), Limit{}); !ok {
		t.Fatal("releasing the adopted call freed nothing")
	}
}

func TestAdmitBadRequest(t *testing.T) {
	r := startRedis(t)
	a := node(t, r, "n1", nil, nil).Admitter()
	for _, req := range []AdmitRequest{
		{},
		{CallID: string(make([]byte, MaxCallIDLen+1))},
		{CallID: "x", Trunks: []TrunkLimit{{}}},
	} {
		if _, _, err := a.Admit(context.Background(), req); err == nil {
			t.Errorf("%d-byte call id, %d trunks: accepted", len(req.CallID), len(req.Trunks))
		}
	}
}

// TestUnauthenticatedPool: the calls of peers without a certificate share
// a pool of their own, across nodes, with its own reasons.
func TestUnauthenticatedPool(t *testing.T) {
	r := startRedis(t)
	a1, a2 := node(t, r, "n1", nil, nil).Admitter(), node(t, r, "n2", nil, nil).Admitter()
	ctx := context.Background()
	unauth := &Limit{MaxCalls: 2, CPS: 10}
	req := func(id string, u *Limit) AdmitRequest {
		return AdmitRequest{CallID: id, Unauthenticated: u, Trunks: []TrunkLimit{{Name: "public"}, {Name: "pbx"}}}
	}
	for i, a := range []*Admitter{a1, a2} {
		if ok, reason, err := a.Admit(ctx, req(fmt.Sprintf("u%d", i), unauth)); !ok || err != nil {
			t.Fatalf("u%d: %v %s %v", i, ok, reason, err)
		}
	}
	if ok, reason, err := a1.Admit(ctx, req("u2", unauth)); ok || err != nil || reason != ReasonUnauthMax {
		t.Fatalf("3rd unauthenticated call: ok=%v reason=%q err=%v, want %s", ok, reason, err, ReasonUnauthMax)
	}
	if ok, _, err := a1.Admit(ctx, req("a0", nil)); !ok || err != nil {
		t.Fatal("an authenticated call is refused by the unauthenticated pool")
	}
	// Adopted calls count in the pool too, and leave it on release.
	if err := a2.Release(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if err := a2.Adopt(ctx, req("taken", &Limit{})); err != nil {
		t.Fatal(err)
	}
	if ok, reason, _ := a1.Admit(ctx, req("u3", unauth)); ok || reason != ReasonUnauthMax {
		t.Fatalf("the adopted call is not in the pool: ok=%v reason=%q", ok, reason)
	}
	if got := raw(t, r, "").HGet(ctx, "edge-sbc:node:n2:count", "u").Val(); got != "1" {
		t.Fatalf("n2's unauthenticated count is %q, want 1", got)
	}
	if err := a2.Release(ctx, "taken"); err != nil {
		t.Fatal(err)
	}
	if ok, reason, _ := a1.Admit(ctx, req("u3", unauth)); !ok {
		t.Fatalf("refused (%s) after the release", reason)
	}
	// Its rate.
	fast := &Limit{CPS: 1}
	if ok, _, _ := a1.Admit(ctx, req("f0", fast)); !ok {
		t.Fatal("f0 refused")
	}
	if ok, reason, _ := a2.Admit(ctx, req("f1", fast)); ok || reason != ReasonUnauthCPS {
		t.Fatalf("f1: ok=%v reason=%q, want %s", ok, reason, ReasonUnauthCPS)
	}
}
