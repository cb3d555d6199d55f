package sip_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

// TestClusterHandoff: n1 hands an answered call over (shutdown.handoff)
// while a second call still rings: the answered one is released without
// a BYE to either peer, without a CDR and with its state left in Redis;
// the ringing one stays for Close, which ends it as a shutdown does. n1
// leaves the cluster, n2 takes the call over on the same media ports and
// the callee's BYE ends it with one CDR, on n2.
func TestClusterHandoff(t *testing.T) {
	c := answeredOnN1(t)
	n1, n2, l, a, b := c.n1, c.n2, c.l, c.a, c.b
	rtpA, rtpB, relayA, relayB, invB, tagB := c.rtpA, c.rtpB, c.relayA, c.relayB, c.invB, c.tagB
	// A second call, ringing: not handed over.
	ring := a.NewInvite("sips:bob@sbc.test", siptest.SDP(rtpA.Port(), 1, ""))
	a.Send(ring)
	ringB := b.Request(wait, sip.INVITE)
	b.Send(b.Reply(ringB, 180, siptest.Tag(), nil))
	a.Response(wait, sip.INVITE, 180)

	ctx := context.Background()
	n1.B2BUA.Drain()
	res := n1.B2BUA.Handoff(ctx)
	if res.HandedOff != 1 || res.Left != 1 || len(res.Failed) != 0 {
		t.Fatalf("handoff: %+v, want 1 handed over and the ringing call left", res)
	}
	if calls := n1.B2BUA.ActiveCalls(); calls != 1 {
		t.Fatalf("%d calls on n1 after the hand-over, want the ringing one", calls)
	}
	if err := n1.Cluster.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	_ = n1.B2BUA.Close() // ends the ringing call: CANCEL toward the callee, an error to the caller
	isBye := func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == sip.BYE
	}
	a.Nothing(300*time.Millisecond, "BYE toward the caller of a call handed over", isBye)
	b.Nothing(100*time.Millisecond, "BYE toward the callee of a call handed over", isBye)
	if c := b.Request(wait, sip.CANCEL); c.CallID().Value() != ringB.CallID().Value() {
		t.Fatal("the ringing call was not cancelled by Close")
	}
	logs := n1.Log.String()
	if n := strings.Count(logs, `"event":"call_end"`); n != 1 || !strings.Contains(logs, "call handed over to the cluster") {
		t.Fatalf("%d CDRs on n1, want 1 (the ringing call's), and the hand-over logged", n)
	}
	_ = n1.Engine.Close()

	states, err := n2.Cluster.StateStore().Load(ctx)
	if err != nil || len(states) != 1 {
		t.Fatalf("states in Redis after the hand-over: %d, %v; want the call's", len(states), err)
	}
	if tr := n2.B2BUA.Takeover(ctx, states); tr.Taken != 1 || len(tr.Failed) != 0 {
		t.Fatalf("takeover: %+v", tr)
	}
	b2 := l.Accept(wait)
	if !rtpA.Flows(relayA, rtpB, wait) || !rtpB.Flows(relayB, rtpA, wait) {
		t.Fatal("no media through n2 on the same ports")
	}
	dB := b.UASDialog(invB, tagB).On(b2)
	b2.Send(dB.Request(sip.BYE, nil))
	b2.Response(wait, sip.BYE, 200)
	(&tkCall{twoNodes: c, b2: b2}).oneCDR(t, "b")
}
