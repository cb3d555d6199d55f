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

// gate holds a call's event loop before the first event whose name
// contains match, until released: what arrives meanwhile queues behind it,
// so a test decides which of two racing messages is handled first.
type gate struct {
	match   string
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func newGate(match string) *gate {
	return &gate{match: match, reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) hooks() *edgesip.Hooks {
	return &edgesip.Hooks{Event: func(_, ev string) {
		if strings.Contains(ev, g.match) {
			hit := false
			g.once.Do(func() { hit = true })
			if hit {
				close(g.reached)
				<-g.release
			}
		}
	}}
}

func (g *gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(wait):
		t.Fatalf("the call never handled %q", g.match)
	}
}

// ringing starts a call up to a 180 from the callee.
func ringing(t *testing.T, bd *bed) (a, b *siptest.Peer, inv, invB *sip.Request, tag string) {
	t.Helper()
	a = bd.caller(t)
	inv = a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
	a.Send(inv)
	b = bd.calleePeer()
	invB = b.Request(wait, sip.INVITE)
	tag = siptest.Tag()
	b.Send(b.Reply(invB, 180, tag, nil))
	a.Response(wait, sip.INVITE, 180)
	return a, b, inv, invB, tag
}

// TestOKThenCancel: the callee's 200 is handled first and the caller's
// CANCEL crosses it: the CANCEL gets 200 without effect, the caller gets
// the 200, ACKs and hangs up (RFC 3261 §9.1).
func TestOKThenCancel(t *testing.T) {
	g := newGate("response 200 INVITE")
	bd := newBed(t, siptest.SBCOptions{Hooks: g.hooks()})
	a, b, inv, invB, tag := ringing(t, bd)
	b.Send(b.Reply(invB, 200, tag, siptest.SDP(siptest.NewRTP(t).Port(), 1, "")))
	g.wait(t) // the 200 is being handled: the CANCEL queues behind it
	a.Send(siptest.Cancel(inv))
	a.Response(wait, sip.CANCEL, 200)
	close(g.release)
	ok := a.Response(wait, sip.INVITE, 0)
	if ok.StatusCode != 200 {
		t.Fatalf("caller got %d, want the 200 that was handled first", ok.StatusCode)
	}
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.ACK, nil, 1))
	b.Request(wait, sip.ACK)
	b.Nothing(200*time.Millisecond, "CANCEL after the 200", siptest.IsRequest(sip.CANCEL))
	a.Send(d.Request(sip.BYE, nil))
	bye := b.Request(wait, sip.BYE)
	b.Send(b.Reply(bye, 200, "", nil))
	a.Response(wait, sip.BYE, 200)
	bd.sbc.WaitIdle(t, wait)
}

// TestCancelThenOK: the caller's CANCEL is handled first while the
// callee's 200 is on its way: the caller ends with 487; the callee gets
// the CANCEL, then ACK and BYE for its 200.
func TestCancelThenOK(t *testing.T) {
	g := newGate("cancel")
	bd := newBed(t, siptest.SBCOptions{Hooks: g.hooks()})
	a, b, inv, invB, tag := ringing(t, bd)
	a.Send(siptest.Cancel(inv))
	a.Response(wait, sip.CANCEL, 200)
	g.wait(t) // the CANCEL is being handled: the 200 queues behind it
	b.Send(b.Reply(invB, 200, tag, siptest.SDP(siptest.NewRTP(t).Port(), 1, "")))
	time.Sleep(50 * time.Millisecond)
	close(g.release)
	res := a.Response(wait, sip.INVITE, 0)
	if res.StatusCode != 487 {
		t.Fatalf("caller got %d, want 487", res.StatusCode)
	}
	a.Send(siptest.AckNon2xx(inv, res))
	cancel := b.Request(wait, sip.CANCEL)
	b.Send(b.Reply(cancel, 200, "", nil))
	ack := b.Request(wait, sip.ACK)
	if tg, _ := ack.To().Params.Get("tag"); tg != tag {
		t.Fatalf("ACK to tag %q, want %q", tg, tag)
	}
	bye := b.Request(wait, sip.BYE)
	b.Send(b.Reply(bye, 200, "", nil))
	bd.sbc.WaitIdle(t, wait)
}

// TestCancelThen487: the plain CANCEL: the callee answers 487; nothing is
// left behind.
func TestCancelThen487(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	a, b, inv, invB, tag := ringing(t, bd)
	a.Send(siptest.Cancel(inv))
	a.Response(wait, sip.CANCEL, 200)
	res := a.Response(wait, sip.INVITE, 487)
	a.Send(siptest.AckNon2xx(inv, res))
	cancel := b.Request(wait, sip.CANCEL)
	b.Send(b.Reply(cancel, 200, "", nil))
	b.Send(b.Reply(invB, 487, tag, nil))
	b.Request(wait, sip.ACK) // the ACK of the 487 (hop by hop)
	bd.sbc.WaitIdle(t, wait)
}

// TestCalleeByeRacesItsOK: the callee sends 200 and BYE back to back. The
// caller gets the 200 and, once it has ACKed, a BYE; nothing leaks.
func TestCalleeByeRacesItsOK(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	a, b, inv, invB, tag := ringing(t, bd)
	db := b.UASDialog(invB, tag)
	b.Send(b.Reply(invB, 200, tag, siptest.SDP(siptest.NewRTP(t).Port(), 1, "")), db.Request(sip.BYE, nil))
	b.Response(wait, sip.BYE, 200)
	b.Request(wait, sip.ACK)
	ok := a.Response(wait, sip.INVITE, 200)
	d := a.UACDialog(inv, ok)
	a.Nothing(200*time.Millisecond, "BYE before the caller's ACK", siptest.IsRequest(sip.BYE))
	a.Send(d.Request(sip.ACK, nil, 1))
	bye := a.Request(wait, sip.BYE)
	a.Send(a.Reply(bye, 200, "", nil))
	bd.sbc.WaitIdle(t, wait)
}

// TestCallerByeBeforeAck: the caller hangs up before ACKing the 200.
func TestCallerByeBeforeAck(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	a, b, inv, invB, tag := ringing(t, bd)
	b.Send(b.Reply(invB, 200, tag, siptest.SDP(siptest.NewRTP(t).Port(), 1, "")))
	ok := a.Response(wait, sip.INVITE, 200)
	b.Request(wait, sip.ACK)
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.BYE, nil))
	a.Response(wait, sip.BYE, 200)
	bye := b.Request(wait, sip.BYE)
	b.Send(b.Reply(bye, 200, "", nil))
	bd.sbc.WaitIdle(t, wait)
}

// TestByeDuringReInvite: the caller re-INVITEs, the callee has not
// answered, the caller hangs up: 487 for the re-INVITE, BYE to the callee,
// and the callee's late 200 to the re-INVITE is ACKed and BYEd.
func TestByeDuringReInvite(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	c := basicCall(t, bd)
	re := c.inv.Request(sip.INVITE, siptest.SDP(c.rtpA.Port(), 2, "sendonly"))
	c.a.Send(re)
	reB := c.b.Request(wait, sip.INVITE)
	c.a.Send(c.inv.Request(sip.BYE, nil))
	c.a.Response(wait, sip.BYE, 200)
	r := c.a.Response(wait, sip.INVITE, 487)
	c.a.Send(siptest.AckNon2xx(re, r))
	bye := c.b.Request(wait, sip.BYE)
	c.b.Send(c.b.Reply(bye, 200, "", nil))
	c.b.Send(c.b.Reply(reB, 200, c.tagB, siptest.SDP(c.rtpB.Port(), 2, "recvonly")))
	c.b.Request(wait, sip.ACK)
	// The call is gone: the late 2xx is ACKed and its dialog ended again.
	late := c.b.Request(wait, sip.BYE)
	c.b.Send(c.b.Reply(late, 481, "", nil))
	bd.sbc.WaitIdle(t, wait)
}

// TestInviteAfterOK: within Timer L of the 200 (RFC 6026), and after the
// call has ended, a retransmission of the caller's INVITE is absorbed (no
// second call, no response) and a CANCEL of it gets 200 without effect.
func TestInviteAfterOK(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	c := basicCall(t, bd)
	c.hangup(t, bd)

	c.a.Send(c.reqA)
	c.a.Send(siptest.Cancel(c.reqA))
	c.a.Response(wait, sip.CANCEL, 200)
	c.a.Nothing(300*time.Millisecond, "response to the retransmitted INVITE", siptest.IsResponse(sip.INVITE, 0))
	c.b.Nothing(100*time.Millisecond, "INVITE retransmitted after the 200", siptest.IsRequest(sip.INVITE))
	c.b.Nothing(0, "CANCEL after the 200", siptest.IsRequest(sip.CANCEL))
	bd.sbc.WaitIdle(t, wait)
}
