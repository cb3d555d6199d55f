package sip_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

// TestRedirect: a 302 from the callee per trunk policy: follow (the
// default) places the call to the sips: Contact through routing and
// admission; relay passes a sanitized Contact to the caller; refuse gives
// the caller 480.
func TestRedirect(t *testing.T) {
	for _, policy := range []string{"follow", "relay", "refuse"} {
		t.Run(policy, func(t *testing.T) {
			pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
			l := siptest.Listen(t, pki, "callee.test")
			sbc := siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: l.Addr(), InsideExtra: "redirect: " + policy})
			bd := &bed{pki: pki, sbc: sbc, callee: l}
			a := bd.caller(t)
			inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
			a.Send(inv)
			b := bd.calleePeer()
			invB := b.Request(wait, sip.INVITE)
			moved := b.Reply(invB, 302, siptest.Tag(), nil,
				sip.NewHeader("Contact", "<sips:carol@sbc.test;maddr=10.9.9.9?Subject=x>;q=0.5"),
				sip.NewHeader("Contact", "<sip:dave@sbc.test>;q=1.0"))
			b.Send(moved)
			b.Request(wait, sip.ACK)
			switch policy {
			case "follow":
				inv2 := b.Request(wait, sip.INVITE)
				if inv2.Recipient.User != "carol" {
					t.Fatalf("redirected INVITE to %s, want user carol (the sips: Contact)", inv2.Recipient.String())
				}
				if len(inv2.Body()) == 0 {
					t.Fatal("the redirected INVITE lost the offer")
				}
				tag := siptest.Tag()
				b.Send(b.Reply(inv2, 200, tag, siptest.SDP(siptest.NewRTP(t).Port(), 1, "")))
				ok := a.Response(wait, sip.INVITE, 200)
				d := a.UACDialog(inv, ok)
				a.Send(d.Request(sip.ACK, nil, 1))
				b.Request(wait, sip.ACK)
				(&callUp{a: a, b: b, inv: d}).hangup(t, bd)
			case "relay":
				r := a.Response(wait, sip.INVITE, 302)
				cts := r.GetHeaders("Contact")
				if len(cts) != 1 || !strings.Contains(cts[0].Value(), "sips:carol@sbc.test") ||
					strings.Contains(cts[0].Value(), "maddr") || strings.Contains(cts[0].Value(), "Subject") {
					t.Fatalf("relayed Contact %v, want only the sanitized sips: one", cts)
				}
				a.Send(siptest.AckNon2xx(inv, r))
				bd.sbc.WaitIdle(t, wait)
			case "refuse":
				r := a.Response(wait, sip.INVITE, 480)
				a.Send(siptest.AckNon2xx(inv, r))
				bd.sbc.WaitIdle(t, wait)
			}
		})
	}
}

// TestMultipartBody: the SDP part of a multipart/mixed INVITE is anchored
// like a plain SDP body; a part on sip.body_allow_list crosses, others do
// not; the caller's address never reaches the callee.
func TestMultipartBody(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{SIP: "{ body_allow_list: [application/pidf+xml] }"})
	a := bd.caller(t)
	rtpA := siptest.NewRTP(t)
	sdp := string(siptest.SDP(rtpA.Port(), 1, ""))
	body := "--b1\r\nContent-Type: application/sdp\r\n\r\n" + sdp + "\r\n" +
		"--b1\r\nContent-Type: application/pidf+xml\r\n\r\n<presence/>\r\n" +
		"--b1\r\nContent-Type: application/x-secret\r\n\r\nsecret internal data\r\n--b1--\r\n"
	inv := a.NewInvite("sips:bob@sbc.test", nil)
	inv.AppendHeader(sip.NewHeader("Content-Type", "multipart/mixed;boundary=b1"))
	inv.SetBody([]byte(body))
	a.Send(inv)
	b := bd.calleePeer()
	invB := b.Request(wait, sip.INVITE)
	got := string(invB.Body())
	switch {
	case !strings.Contains(got, "<presence/>"):
		t.Errorf("allow-listed part did not cross:\n%s", got)
	case strings.Contains(got, "secret internal data"):
		t.Errorf("a part not on the allow list crossed:\n%s", got)
	case strings.Contains(got, fmt.Sprintf(" %d RTP", rtpA.Port())):
		t.Errorf("the caller's media port reached the callee unanchored:\n%s", got)
	case !strings.Contains(got, "m=audio"):
		t.Errorf("no SDP part toward the callee:\n%s", got)
	}
	b.Send(b.Reply(invB, 486, siptest.Tag(), nil))
	b.Request(wait, sip.ACK)
	r := a.Response(wait, sip.INVITE, 486)
	a.Send(siptest.AckNon2xx(inv, r))
	bd.sbc.WaitIdle(t, wait)
}

// TestSessionRefreshMethod: when the SBC refreshes leg B itself (the
// caller asked for no timer, the callee chose refresher=uac), it uses
// UPDATE only toward a callee whose Allow lists it, else a re-INVITE with
// the last SDP.
func TestSessionRefreshMethod(t *testing.T) {
	for _, withUpdate := range []bool{true, false} {
		t.Run(map[bool]string{true: "allow_update", false: "no_update"}[withUpdate], func(t *testing.T) {
			bd := newBed(t, siptest.SBCOptions{})
			a := bd.caller(t)
			inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
			a.Send(inv)
			b := bd.calleePeer()
			invB := b.Request(wait, sip.INVITE)
			if invB.GetHeader("Session-Expires") == nil {
				t.Fatal("the SBC asked leg B for no session timer")
			}
			allow := "INVITE, ACK, BYE, CANCEL, OPTIONS"
			if withUpdate {
				allow += ", UPDATE"
			}
			tag := siptest.Tag()
			b.Send(b.Reply(invB, 200, tag, siptest.SDP(siptest.NewRTP(t).Port(), 1, ""),
				sip.NewHeader("Allow", allow), sip.NewHeader("Session-Expires", "2;refresher=uac"), sip.NewHeader("Require", "timer")))
			ok := a.Response(wait, sip.INVITE, 200)
			if ok.GetHeader("Session-Expires") != nil {
				t.Error("the SBC's own session timer leaked to the caller")
			}
			d := a.UACDialog(inv, ok)
			a.Send(d.Request(sip.ACK, nil, 1))
			b.Request(wait, sip.ACK)
			m := b.Expect(3*time.Second, "session refresh", func(m sip.Message) bool {
				r, isReq := m.(*sip.Request)
				return isReq && (r.Method == sip.UPDATE || r.Method == sip.INVITE)
			}).(*sip.Request)
			want := sip.INVITE
			if withUpdate {
				want = sip.UPDATE
			}
			if m.Method != want {
				t.Fatalf("refresh with %s, want %s", m.Method, want)
			}
			if m.Method == sip.INVITE && len(m.Body()) == 0 {
				t.Fatal("refresh re-INVITE without the last SDP")
			}
			b.Send(b.Reply(m, 200, tag, m.Body(), sip.NewHeader("Session-Expires", "2;refresher=uac")))
			if m.Method == sip.INVITE {
				b.Request(wait, sip.ACK)
			}
			a.Nothing(300*time.Millisecond, "the SBC's refresh reaching the caller", siptest.IsRequest(sip.INVITE))
			(&callUp{a: a, b: b, inv: d}).hangup(t, bd)
		})
	}
}

// TestAbandonedTarget: the first target (SRV priority 10) says nothing
// within provisional_timeout: the call moves to the second, which answers.
// When the first finally rings it gets a CANCEL; when it answers anyway its
// 2xx gets ACK and BYE.
func TestAbandonedTarget(t *testing.T) {
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	slow := siptest.Listen(t, pki, "callee.test")
	fast := siptest.Listen(t, pki, "callee.test")
	port := func(l *siptest.Listener) string { return l.Addr()[strings.LastIndex(l.Addr(), ":")+1:] }
	z := siptest.StartDNS(t,
		"_sips._tcp.inside.test. 5 IN SRV 10 50 "+port(slow)+" t1.inside.test.",
		"_sips._tcp.inside.test. 5 IN SRV 20 50 "+port(fast)+" t2.inside.test.",
		"t1.inside.test. 5 IN A 127.0.0.1",
		"t2.inside.test. 5 IN A 127.0.0.1")
	sbc := siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: "inside.test", DNS: z.Addr, SIP: "{ provisional_timeout: 1s }"})
	bd := &bed{pki: pki, sbc: sbc, callee: fast}
	a := bd.caller(t)
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
	a.Send(inv)
	s := slow.Accept(wait)
	invS := s.Request(wait, sip.INVITE)
	f := fast.Accept(wait)
	invF := f.Request(wait, sip.INVITE)
	tagF := siptest.Tag()
	f.Send(f.Reply(invF, 180, tagF, nil))
	a.Response(wait, sip.INVITE, 180)
	// The abandoned target rings now: it must be cancelled.
	tagS := siptest.Tag()
	s.Send(s.Reply(invS, 180, tagS, nil))
	cancel := s.Request(wait, sip.CANCEL)
	s.Send(s.Reply(cancel, 200, "", nil))
	// ... and answers anyway: ACK and BYE in its own dialog.
	s.Send(s.Reply(invS, 200, tagS, siptest.SDP(siptest.NewRTP(t).Port(), 1, "")))
	s.Request(wait, sip.ACK)
	bye := s.Request(wait, sip.BYE)
	s.Send(s.Reply(bye, 200, "", nil))
	// The caller never saw the abandoned target.
	f.Send(f.Reply(invF, 200, tagF, siptest.SDP(siptest.NewRTP(t).Port(), 1, "")))
	ok := a.Response(wait, sip.INVITE, 200)
	if tg, _ := ok.To().Params.Get("tag"); tg == "" {
		t.Fatal("200 without tag")
	}
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.ACK, nil, 1))
	f.Request(wait, sip.ACK)
	bd.peerB = f
	(&callUp{a: a, b: f, inv: d}).hangup(t, bd)
}

// TestAbandonedTargetAfterHangup: the call ends before the abandoned
// target rings; the call waits (bounded) to CANCEL it when it does.
func TestAbandonedTargetAfterHangup(t *testing.T) {
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	slow := siptest.Listen(t, pki, "callee.test")
	fast := siptest.Listen(t, pki, "callee.test")
	port := func(l *siptest.Listener) string { return l.Addr()[strings.LastIndex(l.Addr(), ":")+1:] }
	z := siptest.StartDNS(t,
		"_sips._tcp.inside.test. 5 IN SRV 10 50 "+port(slow)+" t1.inside.test.",
		"_sips._tcp.inside.test. 5 IN SRV 20 50 "+port(fast)+" t2.inside.test.",
		"t1.inside.test. 5 IN A 127.0.0.1",
		"t2.inside.test. 5 IN A 127.0.0.1")
	sbc := siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: "inside.test", DNS: z.Addr, SIP: "{ provisional_timeout: 1s }"})
	bd := &bed{pki: pki, sbc: sbc, callee: fast}
	a := bd.caller(t)
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
	a.Send(inv)
	s := slow.Accept(wait)
	invS := s.Request(wait, sip.INVITE)
	f := fast.Accept(wait)
	invF := f.Request(wait, sip.INVITE)
	tagF := siptest.Tag()
	f.Send(f.Reply(invF, 200, tagF, siptest.SDP(siptest.NewRTP(t).Port(), 1, "")))
	ok := a.Response(wait, sip.INVITE, 200)
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.ACK, nil, 1))
	f.Request(wait, sip.ACK)
	bd.peerB = f
	(&callUp{a: a, b: f, inv: d}).hangupNoIdle(t)
	tagS := siptest.Tag()
	s.Send(s.Reply(invS, 180, tagS, nil))
	cancel := s.Request(wait, sip.CANCEL)
	s.Send(s.Reply(cancel, 200, "", nil), s.Reply(invS, 487, tagS, nil))
	s.Request(wait, sip.ACK)
	bd.sbc.WaitIdle(t, wait)
}
