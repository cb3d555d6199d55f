package sip_test

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/sip/cluster"
	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

// TestClusterTakeover: a call answered on n1 is taken over by n2 (same
// media port range, one Redis) once n1's media relay and cluster are gone
// as if it was killed: n2 dials the callee, relays media on the same
// ports both ways, refuses an in-dialog request from a connection without
// the caller trunk's identity, relays a re-INVITE from the caller's new
// connection with leg B's CSeq continued, sends the callee's BYE to the
// caller over that connection, writes one CDR with the call's answer time
// and deletes the state.
// twoNodes is two B2BUAs sharing one Redis and one media port range, and
// a call answered on n1 with media flowing both ways.
type twoNodes struct {
	pki            *siptest.PKI
	l              *siptest.Listener // the callee's listener
	n1, n2         *siptest.SBC
	a, b           *siptest.Peer // the caller's and the callee's connections to and from n1
	inv, invB      *sip.Request
	dA             *siptest.Dialog
	tagB           string
	ok             *sip.Response
	rtpA, rtpB     *siptest.RTP
	relayA, relayB netip.AddrPort
}

// answeredOnN1 starts two nodes (heartbeats slowed so that nothing expires
// during the test) and answers a call on n1.
func answeredOnN1(t *testing.T) *twoNodes {
	t.Helper()
	redis := siptest.StartRedis(t)
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test", "other.test")
	quiet := func(o *cluster.Options) { o.HeartbeatInterval, o.HeartbeatTTL = time.Minute, 3*time.Minute }
	l := siptest.Listen(t, pki, "callee.test")
	start := func(id string) *siptest.SBC {
		return siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: l.Addr(),
			Cluster: &siptest.ClusterOptions{NodeID: id, Redis: redis.Addr(), Mod: quiet}})
	}
	n1, n2 := start("n1"), start("n2") // the same media port range (the test's)

	a := siptest.Dial(t, pki, n1.MTLS, "caller.test", true)
	rtpA, rtpB := siptest.NewRTP(t), siptest.NewRTP(t)
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(rtpA.Port(), 1, ""))
	a.Send(inv)
	b := l.Accept(wait)
	invB := b.Request(wait, sip.INVITE)
	tagB := siptest.Tag()
	b.Send(b.Reply(invB, 200, tagB, siptest.SDP(rtpB.Port(), 1, "")))
	ok := a.Response(wait, sip.INVITE, 200)
	dA := a.UACDialog(inv, ok)
	a.Send(dA.Request(sip.ACK, nil, 1))
	b.Request(wait, sip.ACK)
	relayA, relayB := siptest.MediaAddr(t, ok.Body()), siptest.MediaAddr(t, invB.Body())
	if !rtpA.Flows(relayA, rtpB, wait) || !rtpB.Flows(relayB, rtpA, wait) {
		t.Fatal("no media through n1")
	}
	return &twoNodes{pki: pki, l: l, n1: n1, n2: n2, a: a, b: b, inv: inv, invB: invB, dA: dA, tagB: tagB, ok: ok,
		rtpA: rtpA, rtpB: rtpB, relayA: relayA, relayB: relayB}
}

// tkCall is a call answered on n1 and taken over by n2.
type tkCall struct {
	*twoNodes
	b2 *siptest.Peer // the callee's connection from n2
}

// takenOver answers a call on n1 and has n2 take it over (same media port
// range, one Redis) once n1's media relay and cluster are gone as if it
// was killed; n2 dials the callee and relays media on the same ports.
func takenOver(t *testing.T) *tkCall {
	t.Helper()
	c := answeredOnN1(t)
	n1, n2, l := c.n1, c.n2, c.l
	rtpA, rtpB, relayA, relayB := c.rtpA, c.rtpB, c.relayA, c.relayB

	ctx := context.Background()
	var states map[string][]byte
	deadline := time.Now().Add(wait)
	for len(states) != 1 {
		var err error
		if states, err = n2.Cluster.StateStore().Load(ctx); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d call states in Redis, want 1", len(states))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// n1 is lost: its relay ports close, its cluster stops (no release,
	// no delete). Its SIP side stays, unreachable to the peers from now.
	_ = n1.Engine.Close()
	_ = n1.Cluster.Close()

	res := n2.B2BUA.Takeover(ctx, states)
	if res.Taken != 1 || len(res.Failed) != 0 {
		t.Fatalf("takeover: %+v", res)
	}
	if again := n2.B2BUA.Takeover(ctx, states); again.Taken != 0 || again.Skipped != 1 {
		t.Fatalf("a second takeover: %+v", again)
	}
	b2 := l.Accept(wait) // n2 dials the callee
	if !rtpA.Flows(relayA, rtpB, wait) || !rtpB.Flows(relayB, rtpA, wait) {
		t.Fatal("no media through n2 on the same ports")
	}
	return &tkCall{twoNodes: c, b2: b2}
}

// oneCDR checks that n2 wrote one CDR, hung up by by, with the answer time,
// and that the call's state left Redis.
func (c *tkCall) oneCDR(t *testing.T, by string) {
	t.Helper()
	c.n2.WaitIdle(t, 15*time.Second)
	// The CDR is logged as the call is released, which may come a moment
	// after the B2BUA counts no call.
	logs := c.n2.Log.String()
	for end := time.Now().Add(wait); !strings.Contains(logs, `"event":"call_end"`) && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		logs = c.n2.Log.String()
	}
	if n := strings.Count(logs, `"event":"call_end"`); n != 1 {
		t.Fatalf("%d CDRs on n2, want 1", n)
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"event":"call_end"`) && (!strings.Contains(line, `"hangup_by":"`+by+`"`) || !strings.Contains(line, `"answer":`)) {
			t.Fatalf("CDR: %s", line)
		}
	}
	deadline := time.Now().Add(wait)
	for {
		left, err := c.n2.Cluster.StateStore().Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the call's state is still in Redis after its end")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterTakeover: a call taken over (takenOver) refuses an in-dialog
// request from a connection without the caller trunk's identity, relays a
// re-INVITE from the caller's new connection with leg B's CSeq continued
// and a new o= version toward the caller, sends the callee's BYE to the
// caller over that connection, writes one CDR with the call's answer time
// and deletes the state.
func TestClusterTakeover(t *testing.T) {
	c := takenOver(t)
	pki, n2, b, b2, dA, invB, tagB, ok := c.pki, c.n2, c.b, c.b2, c.dA, c.invB, c.tagB, c.ok
	rtpA, rtpB := c.rtpA, c.rtpB

	// A connection that is not the caller trunk's is refused.
	o := siptest.Dial(t, pki, n2.MTLS, "other.test", true)
	o.Send(dA.On(o).Request(sip.BYE, nil))
	if r := o.Response(wait, sip.BYE, 403); r == nil {
		t.Fatal("a BYE from another trunk's connection was not refused")
	}

	// The caller's re-INVITE on a new connection reaches the callee with
	// leg B's CSeq continued.
	a2 := siptest.Dial(t, pki, n2.MTLS, "caller.test", true)
	dA2 := dA.On(a2) // CSeq 2 again: the refused BYE did not count
	re := dA2.Request(sip.INVITE, siptest.SDP(rtpA.Port(), 2, "sendonly"))
	a2.Send(re)
	reB := b2.Request(wait, sip.INVITE)
	if reB.CallID().Value() != invB.CallID().Value() || reB.CSeq().SeqNo != invB.CSeq().SeqNo+1 {
		t.Fatalf("re-INVITE at the callee: Call-ID %s CSeq %d, want %s %d", reB.CallID().Value(), reB.CSeq().SeqNo,
			invB.CallID().Value(), invB.CSeq().SeqNo+1)
	}
	b2.Send(b2.Reply(reB, 200, tagB, siptest.SDP(rtpB.Port(), 2, "recvonly")))
	reOK := a2.Response(wait, sip.INVITE, 200)
	a2.Send(dA2.Request(sip.ACK, nil, re.CSeq().SeqNo))
	b2.Request(wait, sip.ACK)
	if v1, v2 := originVersion(t, ok.Body()), originVersion(t, reOK.Body()); v2 <= v1 {
		t.Fatalf("o= version toward the caller %d after the takeover, was %d: must grow", v2, v1)
	}

	// The callee hangs up: the caller gets the BYE on its new connection.
	dB := b.UASDialog(invB, tagB).On(b2)
	b2.Send(dB.Request(sip.BYE, nil))
	bye := a2.Request(wait, sip.BYE)
	a2.Send(a2.Reply(bye, 200, "", nil))
	b2.Response(wait, sip.BYE, 200)
	c.oneCDR(t, "b")
}

// TestClusterTakeoverCalleeHangsUp: the callee hangs up a call taken over
// before the caller reconnected, and the caller's Contact cannot be
// dialed: the call ends (the BYE toward the caller is given up), with one
// CDR.
func TestClusterTakeoverCalleeHangsUp(t *testing.T) {
	c := takenOver(t)
	dB := c.b.UASDialog(c.invB, c.tagB).On(c.b2)
	c.b2.Send(dB.Request(sip.BYE, nil))
	c.b2.Response(wait, sip.BYE, 200)
	c.oneCDR(t, "b")
}

// originVersion is the o= session version of an SDP.
func originVersion(t *testing.T, body []byte) uint64 {
	t.Helper()
	for _, l := range strings.Split(string(body), "\n") {
		if f := strings.Fields(strings.TrimSpace(l)); len(f) >= 3 && strings.HasPrefix(f[0], "o=") {
			v, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				t.Fatalf("o= line %q: %v", l, err)
			}
			return v
		}
	}
	t.Fatalf("no o= line in\n%s", body)
	return 0
}
