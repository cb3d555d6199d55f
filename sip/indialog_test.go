package sip_test

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	edgesip "github.com/edge-sbc/edge-sbc/sip"
	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

// TestReofferRejectedRollsBack: a re-INVITE that moves the caller's media
// and holds it, rejected by the callee (488, 491, 500, or no answer at
// all): the caller gets the rejection, the relay and hold state return to
// the last agreed answer and media keeps flowing both ways.
func TestReofferRejectedRollsBack(t *testing.T) {
	for _, code := range []int{488, 491, 500, 0} {
		name := map[int]string{488: "488", 491: "491", 500: "500", 0: "timeout"}[code]
		t.Run(name, func(t *testing.T) {
			bd := newBed(t, siptest.SBCOptions{Hooks: &edgesip.Hooks{TxTimeout: 700 * time.Millisecond}})
			c := basicCall(t, bd)
			toSBCfromA := siptest.MediaAddr(t, c.res2xx.Body())
			toSBCfromB := siptest.MediaAddr(t, c.reqB.Body())
			moved := siptest.NewRTP(t)
			re := c.inv.Request(sip.INVITE, siptest.SDP(moved.Port(), 2, "sendonly"))
			c.a.Send(re)
			reB := c.b.Request(wait, sip.INVITE)
			if !strings.Contains(string(reB.Body()), "sendonly") {
				t.Fatalf("re-offer did not reach the callee:\n%s", reB.Body())
			}
			want := code
			if code != 0 {
				c.b.Send(c.b.Reply(reB, code, c.tagB, nil))
				c.b.Request(wait, sip.ACK)
			} else {
				want = 500 // no answer: the SBC's own 500 with Retry-After
			}
			res := c.a.Response(wait, sip.INVITE, 0)
			if res.StatusCode != want {
				t.Fatalf("caller got %d, want %d", res.StatusCode, want)
			}
			c.a.Send(siptest.AckNon2xx(re, res))
			// Media goes to the caller's old address again, both ways.
			if !c.rtpB.Flows(toSBCfromB, c.rtpA, 2*time.Second) {
				t.Fatal("after the rejected re-offer, media from the callee no longer reaches the caller's agreed address")
			}
			if moved.Received(100*time.Millisecond) > 0 {
				t.Fatal("media went to the rejected offer's address")
			}
			if !c.rtpA.Flows(toSBCfromA, c.rtpB, 2*time.Second) {
				t.Fatal("media from the caller no longer reaches the callee")
			}
			// A new offer works (nothing pending is left behind).
			re2 := c.inv.Request(sip.INVITE, siptest.SDP(c.rtpA.Port(), 3, ""))
			c.a.Send(re2)
			reB2 := c.b.Request(wait, sip.INVITE)
			c.b.Send(c.b.Reply(reB2, 200, c.tagB, siptest.SDP(c.rtpB.Port(), 2, "")))
			ok := c.a.Response(wait, sip.INVITE, 200)
			c.a.Send(c.inv.Request(sip.ACK, nil, ok.CSeq().SeqNo))
			c.b.Request(wait, sip.ACK)
			if code == 0 {
				c.b.Send(c.b.Reply(reB, 200, c.tagB, siptest.SDP(c.rtpB.Port(), 3, ""))) // the late answer
			}
			c.hangup(t, bd)
		})
	}
}

// TestGlare: both sides re-INVITE at once. The SBC answers the callee's
// 491 (its own re-INVITE toward it is pending); the callee answers the
// relayed one 491 too; the caller's retry then works.
func TestGlare(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	c := basicCall(t, bd)
	reA := c.inv.Request(sip.INVITE, siptest.SDP(c.rtpA.Port(), 2, "sendonly"))
	c.a.Send(reA)
	relayed := c.b.Request(wait, sip.INVITE)
	reB := c.invB.Request(sip.INVITE, siptest.SDP(c.rtpB.Port(), 2, "sendonly"))
	c.b.Send(reB)
	r := c.b.Response(wait, sip.INVITE, 491)
	c.b.Send(siptest.AckNon2xx(reB, r))
	c.b.Send(c.b.Reply(relayed, 491, c.tagB, nil))
	c.b.Request(wait, sip.ACK)
	ra := c.a.Response(wait, sip.INVITE, 491)
	c.a.Send(siptest.AckNon2xx(reA, ra))
	// The retry (RFC 3261 §14.1: after a random wait) succeeds.
	time.Sleep(100 * time.Millisecond)
	reA2 := c.inv.Request(sip.INVITE, siptest.SDP(c.rtpA.Port(), 3, "sendonly"))
	c.a.Send(reA2)
	relayed2 := c.b.Request(wait, sip.INVITE)
	c.b.Send(c.b.Reply(relayed2, 200, c.tagB, siptest.SDP(c.rtpB.Port(), 3, "recvonly")))
	c.b.Request(wait, sip.ACK)
	ok := c.a.Response(wait, sip.INVITE, 200)
	if !strings.Contains(string(ok.Body()), "recvonly") {
		t.Fatalf("the retry's answer did not reach the caller:\n%s", ok.Body())
	}
	c.a.Send(c.inv.Request(sip.ACK, nil, ok.CSeq().SeqNo))
	c.hangup(t, bd)
}

// TestReInviteWithoutSDP: a re-INVITE without SDP, from either side: the
// offer comes in the 2xx, the answer in the ACK (RFC 3261 §14.1).
func TestReInviteWithoutSDP(t *testing.T) {
	for _, fromCaller := range []bool{true, false} {
		t.Run(map[bool]string{true: "from_caller", false: "from_callee"}[fromCaller], func(t *testing.T) {
			bd := newBed(t, siptest.SBCOptions{})
			c := basicCall(t, bd)
			x, y := c.a, c.b
			dx := c.inv
			yTag := c.tagB
			xRTP, yRTP := c.rtpA, c.rtpB
			if !fromCaller {
				x, y, dx, xRTP, yRTP = c.b, c.a, c.invB, c.rtpB, c.rtpA
				yTag = ""
			}
			re := dx.Request(sip.INVITE, nil)
			x.Send(re)
			got := y.Request(wait, sip.INVITE)
			if len(got.Body()) != 0 {
				t.Fatalf("a re-INVITE without SDP arrived with a body:\n%s", got.Body())
			}
			y.Send(y.Reply(got, 200, yTag, siptest.SDP(yRTP.Port(), 5, "")))
			ok := x.Response(wait, sip.INVITE, 200)
			if len(ok.Body()) == 0 {
				t.Fatal("the offer in the 2xx did not reach the re-INVITE's sender")
			}
			x.Send(dx.Request(sip.ACK, siptest.SDP(xRTP.Port(), 5, ""), ok.CSeq().SeqNo))
			ack := y.Request(wait, sip.ACK)
			if len(ack.Body()) == 0 {
				t.Fatal("the answer in the ACK did not cross")
			}
			if !xRTP.Flows(siptest.MediaAddr(t, ok.Body()), yRTP, 2*time.Second) {
				t.Fatal("no media after the exchange")
			}
			c.hangup(t, bd)
		})
	}
}

// TestDelayedOffer: an INVITE without SDP (Cisco UCM's default): the
// callee offers in its 200, the caller answers in its ACK, media flows.
func TestDelayedOffer(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	a := bd.caller(t)
	rtpA, rtpB := siptest.NewRTP(t), siptest.NewRTP(t)
	inv := a.NewInvite("sips:bob@sbc.test", nil)
	a.Send(inv)
	b := bd.calleePeer()
	invB := b.Request(wait, sip.INVITE)
	if len(invB.Body()) != 0 {
		t.Fatal("delayed offer arrived with a body")
	}
	tag := siptest.Tag()
	b.Send(b.Reply(invB, 180, tag, nil), b.Reply(invB, 200, tag, siptest.SDP(rtpB.Port(), 1, "")))
	ok := a.Response(wait, sip.INVITE, 200)
	if len(ok.Body()) == 0 {
		t.Fatal("the callee's offer did not reach the caller")
	}
	b.Nothing(200*time.Millisecond, "ACK before the caller answered", siptest.IsRequest(sip.ACK))
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.ACK, siptest.SDP(rtpA.Port(), 1, ""), 1))
	ack := b.Request(wait, sip.ACK)
	if len(ack.Body()) == 0 {
		t.Fatal("the caller's answer did not reach the callee in the ACK")
	}
	if !rtpA.Flows(siptest.MediaAddr(t, ok.Body()), rtpB, 2*time.Second) ||
		!rtpB.Flows(siptest.MediaAddr(t, ack.Body()), rtpA, 2*time.Second) {
		t.Fatal("no media both ways")
	}
	(&callUp{a: a, b: b, inv: d}).hangup(t, bd)
}

// TestHeadersStateWhatTheSBCDoes: Allow, Supported and Require toward
// each side are the SBC's own (no REFER, no replaces), and Max-Forwards
// is decremented across the B2BUA, in dialog too.
func TestHeadersStateWhatTheSBCDoes(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	a := bd.caller(t)
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""),
		sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, REFER, SUBSCRIBE, MESSAGE, NOTIFY"),
		sip.NewHeader("Supported", "replaces, timer, norefersub"))
	a.Send(inv)
	b := bd.calleePeer()
	invB := b.Request(wait, sip.INVITE)
	for _, h := range []string{"Allow", "Supported"} {
		for _, v := range invB.GetHeaders(h) {
			if strings.Contains(v.Value(), "SUBSCRIBE") || strings.Contains(v.Value(), "MESSAGE") || strings.Contains(v.Value(), "replaces") || strings.Contains(v.Value(), "norefersub") {
				t.Errorf("the caller's %s crossed: %q", h, v.Value())
			}
		}
	}
	if !hasToken(invB, "Allow", "UPDATE") || !hasToken(invB, "Supported", "timer") {
		t.Errorf("INVITE toward the callee: Allow %v Supported %v", invB.GetHeaders("Allow"), invB.GetHeaders("Supported"))
	}
	if mf := invB.MaxForwards(); mf == nil || mf.Val() != 69 {
		t.Errorf("Max-Forwards toward the callee = %v, want 69", mf)
	}
	tag := siptest.Tag()
	b.Send(b.Reply(invB, 200, tag, siptest.SDP(siptest.NewRTP(t).Port(), 1, ""),
		sip.NewHeader("Allow", "INVITE, ACK, BYE, SUBSCRIBE"), sip.NewHeader("Supported", "replaces")))
	ok := a.Response(wait, sip.INVITE, 200)
	if hasToken(ok, "Allow", "SUBSCRIBE") || hasToken(ok, "Supported", "replaces") || len(ok.GetHeaders("Allow")) != 1 {
		t.Errorf("the callee's Allow/Supported crossed: %v %v", ok.GetHeaders("Allow"), ok.GetHeaders("Supported"))
	}
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.ACK, nil, 1))
	b.Request(wait, sip.ACK)
	info := d.Request(sip.INFO, nil)
	mf := sip.MaxForwardsHeader(10)
	info.ReplaceHeader(&mf)
	a.Send(info)
	infoB := b.Request(wait, sip.INFO)
	if got := infoB.MaxForwards(); got == nil || got.Val() != 9 {
		t.Errorf("in-dialog Max-Forwards = %v, want 9", got)
	}
	b.Send(b.Reply(infoB, 200, "", nil))
	a.Response(wait, sip.INFO, 200)
	(&callUp{a: a, b: b, inv: d}).hangup(t, bd)
}
