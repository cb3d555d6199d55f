package sip_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	edgesip "github.com/edge-sbc/edge-sbc/sip"
	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

const wait = 5 * time.Second

// bed is one SBC with a scripted caller (mutual TLS, trunk outside) and a
// scripted callee (trunk inside).
type bed struct {
	pki    *siptest.PKI
	sbc    *siptest.SBC
	callee *siptest.Listener
	peerB  *siptest.Peer // the SBC's connection to the callee, once made
}

// calleePeer returns the callee's side of the SBC's connection (made by
// the first call, reused by the SBC afterwards).
func (b *bed) calleePeer() *siptest.Peer {
	if b.peerB == nil {
		b.peerB = b.callee.Accept(wait)
	}
	return b.peerB
}

func newBed(t *testing.T, o siptest.SBCOptions) *bed {
	t.Helper()
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test", "rogue.test")
	l := siptest.Listen(t, pki, "callee.test")
	o.Callee = l.Addr()
	return &bed{pki: pki, sbc: siptest.StartSBC(t, pki, o), callee: l}
}

func (b *bed) caller(t *testing.T) *siptest.Peer {
	return siptest.Dial(t, b.pki, b.sbc.MTLS, "caller.test", true)
}

// callUp is an answered call with media endpoints on both sides.
type callUp struct {
	a, b       *siptest.Peer
	inv, invB  *siptest.Dialog
	rtpA, rtpB *siptest.RTP
	reqA       *sip.Request
	reqB       *sip.Request
	res2xx     *sip.Response
	tagB       string
}

// basicCall sets up a call: INVITE with SDP, 180, 200 with SDP, ACK.
func basicCall(t *testing.T, bd *bed) *callUp {
	t.Helper()
	c := &callUp{a: bd.caller(t), rtpA: siptest.NewRTP(t), rtpB: siptest.NewRTP(t)}
	c.reqA = c.a.NewInvite("sips:bob@sbc.test", siptest.SDP(c.rtpA.Port(), 1, ""))
	c.a.Send(c.reqA)
	c.b = bd.calleePeer()
	c.reqB = c.b.Request(wait, sip.INVITE)
	c.tagB = siptest.Tag()
	c.b.Send(c.b.Reply(c.reqB, 180, c.tagB, nil), c.b.Reply(c.reqB, 200, c.tagB, siptest.SDP(c.rtpB.Port(), 1, "")))
	c.a.Response(wait, sip.INVITE, 180)
	c.res2xx = c.a.Response(wait, sip.INVITE, 200)
	c.inv = c.a.UACDialog(c.reqA, c.res2xx)
	c.a.Send(c.inv.Request(sip.ACK, nil, c.reqA.CSeq().SeqNo))
	c.b.Request(wait, sip.ACK)
	c.invB = c.b.UASDialog(c.reqB, c.tagB)
	bd.sbc.WaitConfirmed(t)
	return c
}

func TestBasicCall(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	c := basicCall(t, bd)
	toSBCfromA := siptest.MediaAddr(t, c.res2xx.Body())
	toSBCfromB := siptest.MediaAddr(t, c.reqB.Body())
	if !c.rtpA.Flows(toSBCfromA, c.rtpB, 2*time.Second) {
		t.Fatal("no media from A to B through the relay")
	}
	if !c.rtpB.Flows(toSBCfromB, c.rtpA, 2*time.Second) {
		t.Fatal("no media from B to A through the relay")
	}
	c.a.Send(c.inv.Request(sip.BYE, nil))
	bye := c.b.Request(wait, sip.BYE)
	c.b.Send(c.b.Reply(bye, 200, "", nil))
	c.a.Response(wait, sip.BYE, 200)
	bd.sbc.WaitIdle(t, wait)
}

// hangup ends an answered call from the caller and checks that the SBC is
// left with nothing.
func (c *callUp) hangup(t *testing.T, bd *bed) {
	t.Helper()
	c.hangupNoIdle(t)
	bd.sbc.WaitIdle(t, wait)
}

// hangupNoIdle is hangup without the idle check.
func (c *callUp) hangupNoIdle(t *testing.T) {
	t.Helper()
	c.a.Send(c.inv.Request(sip.BYE, nil))
	bye := c.b.Request(wait, sip.BYE)
	c.b.Send(c.b.Reply(bye, 200, "", nil))
	c.a.Response(wait, sip.BYE, 200)
}

// TestEarlyMediaSameAnswer: 183 with SDP (early media) then 200 with the
// same SDP (RFC 3261 §13.2.1; every PSTN gateway does this): early media
// flows through the relay to the caller, the call connects, and the 200
// toward the caller repeats the answer.
func TestEarlyMediaSameAnswer(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	a := bd.caller(t)
	rtpA, rtpB := siptest.NewRTP(t), siptest.NewRTP(t)
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(rtpA.Port(), 1, ""))
	a.Send(inv)
	b := bd.callee.Accept(wait)
	invB := b.Request(wait, sip.INVITE)
	tag := siptest.Tag()
	answer := siptest.SDP(rtpB.Port(), 1, "")
	b.Send(b.Reply(invB, 183, tag, answer))
	early := a.Response(wait, sip.INVITE, 183)
	if len(early.Body()) == 0 {
		t.Fatal("183 reached the caller without its SDP")
	}
	sbcForB := siptest.MediaAddr(t, invB.Body())
	sbcForA := siptest.MediaAddr(t, early.Body())
	if !rtpB.Flows(sbcForB, rtpA, 2*time.Second) {
		t.Fatal("early media from the callee did not reach the caller")
	}
	if !rtpA.Flows(sbcForA, rtpB, 2*time.Second) {
		t.Fatal("early media from the caller did not reach the callee")
	}
	b.Send(b.Reply(invB, 200, tag, answer))
	ok := a.Response(wait, sip.INVITE, 200)
	if string(ok.Body()) != string(early.Body()) {
		t.Errorf("200 SDP differs from the 183's:\n183:\n%s\n200:\n%s", early.Body(), ok.Body())
	}
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.ACK, nil, 1))
	b.Request(wait, sip.ACK)
	if !rtpB.Flows(sbcForB, rtpA, 2*time.Second) || !rtpA.Flows(sbcForA, rtpB, 2*time.Second) {
		t.Fatal("no media after the 200")
	}
	c := &callUp{a: a, b: b, inv: d}
	c.hangup(t, bd)
}

// TestEarlyMediaChangedAnswer: 183 with SDP, then a 200 with another SDP
// (the callee moved): accepted, the relay follows, the caller gets the new
// answer.
func TestEarlyMediaChangedAnswer(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	a := bd.caller(t)
	rtpA, rtpB, rtpB2 := siptest.NewRTP(t), siptest.NewRTP(t), siptest.NewRTP(t)
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(rtpA.Port(), 1, ""))
	a.Send(inv)
	b := bd.callee.Accept(wait)
	invB := b.Request(wait, sip.INVITE)
	tag := siptest.Tag()
	b.Send(b.Reply(invB, 183, tag, siptest.SDP(rtpB.Port(), 1, "")))
	early := a.Response(wait, sip.INVITE, 183)
	sbcForA := siptest.MediaAddr(t, early.Body())
	if !rtpA.Flows(sbcForA, rtpB, 2*time.Second) {
		t.Fatal("early media from the caller did not reach the callee")
	}
	pcma := strings.NewReplacer("RTP/AVP 0", "RTP/AVP 8", "0 PCMU", "8 PCMA").Replace(string(siptest.SDP(rtpB2.Port(), 2, "")))
	b.Send(b.Reply(invB, 200, tag, []byte(pcma)))
	ok := a.Response(wait, sip.INVITE, 200)
	if len(ok.Body()) == 0 {
		t.Fatal("the 200 toward the caller has no SDP")
	}
	if !strings.Contains(string(ok.Body()), "PCMA") {
		t.Errorf("the caller did not get the new answer:\n%s", ok.Body())
	}
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.ACK, nil, 1))
	b.Request(wait, sip.ACK)
	if !rtpA.Flows(siptest.MediaAddr(t, ok.Body()), rtpB2, 2*time.Second) {
		t.Fatal("media did not follow the callee's new address")
	}
	(&callUp{a: a, b: b, inv: d}).hangup(t, bd)
}

// TestReliableEarlyMedia: the callee sends 183 with SDP reliably (100rel)
// and a 200 without SDP. The SBC PRACKs the callee itself; a caller that
// supports 100rel gets the 183 reliably and PRACKs it; one that does not
// gets it unreliably and the answer again in the 200.
func TestReliableEarlyMedia(t *testing.T) {
	for _, callerRel := range []bool{true, false} {
		t.Run(map[bool]string{true: "caller_100rel", false: "caller_no_100rel"}[callerRel], func(t *testing.T) {
			bd := newBed(t, siptest.SBCOptions{})
			a := bd.caller(t)
			rtpA, rtpB := siptest.NewRTP(t), siptest.NewRTP(t)
			var extra []sip.Header
			if callerRel {
				extra = append(extra, sip.NewHeader("Supported", "100rel, timer"))
			}
			inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(rtpA.Port(), 1, ""), extra...)
			a.Send(inv)
			b := bd.callee.Accept(wait)
			invB := b.Request(wait, sip.INVITE)
			if !hasToken(invB, "Supported", "100rel") {
				t.Fatalf("INVITE toward the callee does not offer 100rel: Supported %v", invB.GetHeaders("Supported"))
			}
			tag := siptest.Tag()
			b.Send(b.Reply(invB, 183, tag, siptest.SDP(rtpB.Port(), 1, ""),
				sip.NewHeader("Require", "100rel"), sip.NewHeader("RSeq", "42")))
			prack := b.Request(wait, sip.PRACK)
			if rack := prack.GetHeader("RAck"); rack == nil || rack.Value() != "42 1 INVITE" {
				t.Fatalf("PRACK RAck = %v, want 42 1 INVITE", rack)
			}
			b.Send(b.Reply(prack, 200, tag, nil))
			early := a.Response(wait, sip.INVITE, 183)
			if len(early.Body()) == 0 {
				t.Fatal("183 without SDP at the caller")
			}
			if got := hasToken(early, "Require", "100rel"); got != callerRel {
				t.Fatalf("183 at the caller reliable=%v, want %v", got, callerRel)
			}
			if callerRel {
				ed := a.UACDialog(inv, early)
				pr := ed.Request(sip.PRACK, nil)
				pr.AppendHeader(sip.NewHeader("RAck", early.GetHeader("RSeq").Value()+" 1 INVITE"))
				a.Send(pr)
				a.Response(wait, sip.PRACK, 200)
			}
			if !rtpB.Flows(siptest.MediaAddr(t, invB.Body()), rtpA, 2*time.Second) {
				t.Fatal("early media did not reach the caller")
			}
			b.Send(b.Reply(invB, 200, tag, nil))
			ok := a.Response(wait, sip.INVITE, 200)
			if !callerRel && len(ok.Body()) == 0 {
				t.Fatal("a caller that got the answer in an unreliable 183 must get it again in the 200")
			}
			if callerRel && len(ok.Body()) != 0 {
				t.Fatal("the 200 repeats an answer the caller already has reliably")
			}
			d := a.UACDialog(inv, ok)
			a.Send(d.Request(sip.ACK, nil, 1))
			b.Request(wait, sip.ACK)
			(&callUp{a: a, b: b, inv: d}).hangup(t, bd)
		})
	}
}

func hasToken(m interface{ GetHeaders(string) []sip.Header }, name, tok string) bool {
	for _, h := range m.GetHeaders(name) {
		for _, v := range splitComma(h.Value()) {
			if v == tok {
				return true
			}
		}
	}
	return false
}

func splitComma(s string) []string {
	var out []string
	cur := ""
	for _, r := range s {
		if r == ',' {
			out = append(out, trim(cur))
			cur = ""
			continue
		}
		cur += string(r)
	}
	return append(out, trim(cur))
}

func trim(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// TestRingingThenOKBackToBack: a 180 and a 200 written in one TLS record
// reach the caller in that order, and no provisional follows the final.
func TestRingingThenOKBackToBack(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	for range 5 {
		c := basicCall(t, bd) // 180 and 200 are sent in one write
		c.a.Nothing(300*time.Millisecond, "provisional after the 200", siptest.IsProvisional)
		c.hangup(t, bd)
	}
}

// TestForking: two forks answer 180 with different tags; each is a
// separate early dialog toward the caller; the first 2xx wins and the
// other fork's 2xx gets ACK and BYE in its own dialog.
func TestForking(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	a := bd.caller(t)
	rtpA, rtpB := siptest.NewRTP(t), siptest.NewRTP(t)
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(rtpA.Port(), 1, ""))
	a.Send(inv)
	b := bd.callee.Accept(wait)
	invB := b.Request(wait, sip.INVITE)
	tag1, tag2 := siptest.Tag(), siptest.Tag()
	b.Send(b.Reply(invB, 180, tag1, nil), b.Reply(invB, 180, tag2, nil))
	r1 := a.Response(wait, sip.INVITE, 180)
	r2 := a.Response(wait, sip.INVITE, 180)
	t1, _ := r1.To().Params.Get("tag")
	t2, _ := r2.To().Params.Get("tag")
	if t1 == "" || t1 == t2 {
		t.Fatalf("forks share an early dialog toward the caller: tags %q %q", t1, t2)
	}
	b.Send(b.Reply(invB, 200, tag2, siptest.SDP(rtpB.Port(), 1, "")), b.Reply(invB, 200, tag1, siptest.SDP(rtpB.Port(), 1, "")))
	ok := a.Response(wait, sip.INVITE, 200)
	if tg, _ := ok.To().Params.Get("tag"); tg != t2 {
		t.Fatalf("200 at the caller has tag %q, want the second fork's %q", tg, t2)
	}
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.ACK, nil, 1))
	// The callee side: an ACK for each 2xx, and a BYE for the loser.
	acks := map[string]bool{}
	for len(acks) < 2 {
		ack := b.Request(wait, sip.ACK)
		tg, _ := ack.To().Params.Get("tag")
		acks[tg] = true
	}
	if !acks[tag1] || !acks[tag2] {
		t.Fatalf("ACKs for tags %v, want both forks", acks)
	}
	bye := b.Request(wait, sip.BYE)
	if tg, _ := bye.To().Params.Get("tag"); tg != tag1 {
		t.Fatalf("BYE went to fork %q, want the losing fork %q", tg, tag1)
	}
	b.Send(b.Reply(bye, 200, "", nil))
	c := &callUp{a: a, b: b, inv: d}
	c.a.Send(c.inv.Request(sip.BYE, nil))
	bye2 := c.b.Request(wait, sip.BYE)
	if tg, _ := bye2.To().Params.Get("tag"); tg != tag2 {
		t.Fatalf("the caller's BYE went to fork %q, want %q", tg, tag2)
	}
	c.b.Send(c.b.Reply(bye2, 200, "", nil))
	c.a.Response(wait, sip.BYE, 200)
	bd.sbc.WaitIdle(t, wait)
}

// traceLog keeps what a Tracer saw.
type traceLog struct {
	mu  sync.Mutex
	evs []edgesip.TraceEvent
}

func (l *traceLog) Trace(ev edgesip.TraceEvent) {
	l.mu.Lock()
	ev.Data = append([]byte(nil), ev.Data...)
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

// TestTraceAndCallView: the tracer sees every message of both legs with one
// correlation id (the call's), and Calls shows the call while it is up.
func TestTraceAndCallView(t *testing.T) {
	tl := &traceLog{}
	bd := newBed(t, siptest.SBCOptions{Tracer: tl})
	c := basicCall(t, bd)
	calls := bd.sbc.B2BUA.Calls()
	if len(calls) != 1 || calls[0].State != "confirmed" || calls[0].TrunkA != "outside" || calls[0].TrunkB != "inside" || len(calls[0].Media) != 1 {
		t.Fatalf("Calls() = %+v", calls)
	}
	c.hangup(t, bd)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	legs := map[string]map[bool]int{} // Call-ID -> received -> count
	var corr string
	for _, ev := range tl.evs {
		if ev.Call == "" {
			t.Errorf("a message of the call without its correlation id:\n%s", ev.Data)
			continue
		}
		if corr == "" {
			corr = ev.Call
		}
		if ev.Call != corr {
			t.Fatalf("two correlation ids: %s and %s", corr, ev.Call)
		}
		cid := ""
		for _, line := range strings.Split(string(ev.Data), "\r\n") {
			if v, ok := strings.CutPrefix(line, "Call-ID: "); ok {
				cid = v
			}
		}
		if legs[cid] == nil {
			legs[cid] = map[bool]int{}
		}
		legs[cid][ev.Received]++
	}
	if corr != calls[0].Call || len(legs) != 2 {
		t.Fatalf("correlation %q (call %q), legs %v", corr, calls[0].Call, legs)
	}
	for cid, n := range legs {
		if n[true] == 0 || n[false] == 0 {
			t.Errorf("leg %s: received %d, sent %d", cid, n[true], n[false])
		}
	}
}
