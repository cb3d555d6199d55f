package sip_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

// TestTransforms: a route's transforms rewrite the Request-URI (with a
// capture group, Expressway style \1) and the trunk's header operations
// add and remove headers; the core headers are the B2BUA's.
func TestTransforms(t *testing.T) {
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	l := siptest.Listen(t, pki, "callee.test")
	sbc := siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: l.Addr(),
		InsideExtra: `headers: [{ op: add, name: X-Edge, value: "1" }, { op: remove, name: Subject }]`,
		Routes: []string{`{ from: outside, to: inside, ruri_user_prefix: "9", transforms: [` +
			`{ field: ruri, match: '^sips:9(\d{4})@sbc\.test$', replace: 'sips:+1555\1@example.webex.com' },` +
			`{ field: from, match: '^sips:alice@(.*)$', replace: 'sips:+15550100@$1' }] }`}})
	a := siptest.Dial(t, pki, sbc.MTLS, "caller.test", true)
	inv := a.NewInvite("sips:91234@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""), sip.NewHeader("Subject", "secret"))
	a.Send(inv)
	b := l.Accept(wait)
	invB := b.Request(wait, sip.INVITE)
	if got := invB.Recipient.User + "@" + invB.Recipient.Host; got != "+15551234@example.webex.com" {
		t.Errorf("callee's Request-URI %s, want sips:+15551234@example.webex.com", invB.Recipient.String())
	}
	if invB.From().Address.User != "+15550100" {
		t.Errorf("From %s, want user +15550100", invB.From().Address.String())
	}
	if invB.GetHeader("X-Edge") == nil || invB.GetHeader("Subject") != nil {
		t.Errorf("header operations not applied: X-Edge %v Subject %v", invB.GetHeader("X-Edge"), invB.GetHeader("Subject"))
	}
	tag := siptest.Tag()
	b.Send(b.Reply(invB, 200, tag, siptest.SDP(siptest.NewRTP(t).Port(), 1, "")))
	ok := a.Response(wait, sip.INVITE, 200)
	d := a.UACDialog(inv, ok)
	a.Send(d.Request(sip.ACK, nil, 1))
	b.Request(wait, sip.ACK)
	// In-dialog requests on leg B carry the transformed From.
	a.Send(d.Request(sip.BYE, nil))
	bye := b.Request(wait, sip.BYE)
	if bye.From().Address.User != "+15550100" {
		t.Errorf("BYE From %s: leg B's From must stay the transformed one", bye.From().Address.String())
	}
	b.Send(b.Reply(bye, 200, "", nil))
	a.Response(wait, sip.BYE, 200)
	sbc.WaitIdle(t, wait)
}

// TestSIPSchemeFromOneTrunk: a trunk with accept_sip_scheme (Cisco UCM)
// may send sip: URIs over TLS; any other caller still gets 416.
func TestSIPSchemeFromOneTrunk(t *testing.T) {
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test", "ucm.test")
	l := siptest.Listen(t, pki, "callee.test")
	sbc := siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: l.Addr(),
		Trunks: []string{"{ name: ucm, identity: ucm.test, accept_sip_scheme: true, allow_plain_rtp: true }"},
		Routes: []string{"{ from: ucm, to: inside }"}})
	other := siptest.Dial(t, pki, sbc.MTLS, "caller.test", true)
	inv := other.NewInvite("sip:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
	other.Send(inv)
	r := other.Response(wait, sip.INVITE, 416)
	other.Send(siptest.AckNon2xx(inv, r))

	ucm := siptest.Dial(t, pki, sbc.MTLS, "ucm.test", true)
	inv = ucm.NewInvite("sip:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
	ucm.Send(inv)
	b := l.Accept(wait)
	invB := b.Request(wait, sip.INVITE)
	if invB.Recipient.Scheme != "sips" {
		t.Errorf("toward another trunk the SBC must use sips:, got %s", invB.Recipient.String())
	}
	b.Send(b.Reply(invB, 200, siptest.Tag(), siptest.SDP(siptest.NewRTP(t).Port(), 1, "")))
	ok := ucm.Response(wait, sip.INVITE, 200)
	if ct := ok.Contact(); ct == nil || ct.Address.Scheme != "sip" || !strings.Contains(ct.Value(), "transport=tls") {
		t.Errorf("Contact toward the sip: trunk %v, want sip:...;transport=tls", ok.Contact())
	}
	d := ucm.UACDialog(inv, ok)
	ucm.Send(d.Request(sip.ACK, nil, 1))
	b.Request(wait, sip.ACK)
	ucm.Send(d.Request(sip.BYE, nil))
	bye := b.Request(wait, sip.BYE)
	b.Send(b.Reply(bye, 200, "", nil))
	ucm.Response(wait, sip.BYE, 200)
	sbc.WaitIdle(t, wait)
}

// optionsResponder answers every OPTIONS on p with 200 while on is true,
// counts them, and hands other messages on.
func optionsResponder(p *siptest.Peer, on *atomic.Bool, n, invites *atomic.Int32, seen chan<- *sip.Request, stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		m := p.Next(20 * time.Millisecond)
		req, ok := m.(*sip.Request)
		if !ok {
			continue
		}
		if req.Method == sip.OPTIONS {
			n.Add(1)
			if on.Load() {
				p.Send(p.Reply(req, 200, siptest.Tag(), nil))
			}
			select {
			case seen <- req:
			default:
			}
			continue
		}
		if req.Method == sip.INVITE {
			invites.Add(1)
			p.Send(p.Reply(req, 486, siptest.Tag(), nil))
		}
	}
}

// TestTrunkHealth: OPTIONS pings reach every target at the interval with
// a Contact; a target that stops answering is marked down after
// down_after pings and skipped by the next call (no INVITE sent to it); it
// comes back after up_after answered pings.
func TestTrunkHealth(t *testing.T) {
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	t1 := siptest.Listen(t, pki, "callee.test")
	t2 := siptest.Listen(t, pki, "callee.test")
	port := func(l *siptest.Listener) string { return l.Addr()[strings.LastIndex(l.Addr(), ":")+1:] }
	z := siptest.StartDNS(t,
		"_sips._tcp.inside.test. 5 IN SRV 10 50 "+port(t1)+" t1.inside.test.",
		"_sips._tcp.inside.test. 5 IN SRV 20 50 "+port(t2)+" t2.inside.test.",
		"t1.inside.test. 5 IN A 127.0.0.1",
		"t2.inside.test. 5 IN A 127.0.0.1")
	sbc := siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: "inside.test", DNS: z.Addr,
		InsideExtra: "health: { interval: 1s, timeout: 400ms, down_after: 2, up_after: 2 }"})
	stop := make(chan struct{})
	defer close(stop)
	var on1, on2 atomic.Bool
	on1.Store(true)
	on2.Store(true)
	var n1, n2, inv1, inv2 atomic.Int32
	seen := make(chan *sip.Request, 16)
	go optionsResponder(t1.Accept(wait), &on1, &n1, &inv1, seen, stop)
	p2 := t2.Accept(wait)
	go optionsResponder(p2, &on2, &n2, &inv2, make(chan *sip.Request, 16), stop)
	ping := <-seen
	if ct := ping.Contact(); ct == nil || ct.Address.Scheme != "sips" || ct.Address.Host != "sbc.test" {
		t.Errorf("OPTIONS ping without a sips: Contact on our FQDN: %v", ping.Contact())
	}
	if ping.From().Address.Scheme != "sips" || ping.Recipient.Scheme != "sips" {
		t.Errorf("OPTIONS ping From %s Request-URI %s", ping.From().Address.String(), ping.Recipient.String())
	}
	// Target 1 (the preferred one) stops answering: down after 2 pings.
	on1.Store(false)
	start := time.Now()
	waitHealth(t, sbc, "inside", port(t1), false, 6*time.Second)
	t.Logf("target down %s after its last answer", time.Since(start).Round(100*time.Millisecond))
	a := siptest.Dial(t, pki, sbc.MTLS, "caller.test", true)
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
	a.Send(inv)
	r := a.Response(wait, sip.INVITE, 486) // answered by target 2
	a.Send(siptest.AckNon2xx(inv, r))
	if inv1.Load() != 0 || inv2.Load() != 1 {
		t.Errorf("INVITEs: %d to the down target, %d to the live one; want 0 and 1", inv1.Load(), inv2.Load())
	}
	// It answers again: up after 2 answered pings.
	on1.Store(true)
	start = time.Now()
	waitHealth(t, sbc, "inside", port(t1), true, 6*time.Second)
	t.Logf("target up %s after it answered again", time.Since(start).Round(100*time.Millisecond))
	if n1.Load() < 4 || n2.Load() < 4 {
		t.Errorf("pings: target 1 %d, target 2 %d", n1.Load(), n2.Load())
	}
	if err := sbc.B2BUA.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// TestTrunkHealthMetrics: a monitored target has its series
// edge_sbc_trunk_target_up and edge_sbc_trunk_target_ping_seconds (the
// round trip of its last answered ping, which `edge-sbc check` prints);
// once the trunk is no longer monitored (a reload with interval 0) both
// are gone, so nothing reports a target the SBC does not watch.
func TestTrunkHealthMetrics(t *testing.T) {
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	l := siptest.Listen(t, pki, "callee.test")
	sbc := siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: l.Addr(),
		InsideExtra: "health: { interval: 1s, timeout: 400ms }"})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	var on atomic.Bool
	on.Store(true)
	var n, invites atomic.Int32
	p := l.Accept(wait)
	wg.Go(func() { optionsResponder(p, &on, &n, &invites, make(chan *sip.Request, 16), stop) })
	port := l.Addr()[strings.LastIndex(l.Addr(), ":")+1:]
	waitHealth(t, sbc, "inside", port, true, 6*time.Second)

	series := func() map[string]float64 {
		t.Helper()
		fams, err := sbc.Metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range fams {
			name := f.GetName()
			if name != "edge_sbc_trunk_target_up" && name != "edge_sbc_trunk_target_ping_seconds" {
				continue
			}
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, lp := range m.GetLabel() {
					labels[lp.GetName()] = lp.GetValue()
				}
				out[name+"/"+labels["trunk"]+"/"+labels["target"]] = m.GetGauge().GetValue()
			}
		}
		return out
	}
	target := "inside/127.0.0.1:" + port
	got := series()
	if got["edge_sbc_trunk_target_up/"+target] != 1 || got["edge_sbc_trunk_target_ping_seconds/"+target] <= 0 {
		t.Fatalf("series of a live target: %v", got)
	}
	t.Logf("last ping round trip %.3f ms", got["edge_sbc_trunk_target_ping_seconds/"+target]*1e3)

	cfg := *sbc.Config
	cfg.Trunks = append([]config.Trunk(nil), sbc.Config.Trunks...)
	for i := range cfg.Trunks {
		if cfg.Trunks[i].Name == "inside" {
			cfg.Trunks[i].Health.Interval = 0
		}
	}
	if err := sbc.B2BUA.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(series()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("series left after monitoring was turned off: %v", series())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h := sbc.B2BUA.Health(); len(h) != 0 {
		t.Errorf("Health() after monitoring was turned off: %+v", h)
	}
}

func waitHealth(t *testing.T, sbc *siptest.SBC, trunk, port string, up bool, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, h := range sbc.B2BUA.Health() {
			if h.Trunk == trunk && strings.HasSuffix(h.Target, ":"+port) && h.Known && h.Up == up {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("target :%s of %s not up=%v within %s: %+v", port, trunk, up, d, sbc.B2BUA.Health())
}

// TestBlindTransfer: the callee (inside) REFERs the caller to carol; the
// SBC answers 202, calls carol itself (delayed offer), reports progress in
// NOTIFYs, re-INVITEs the caller with carol's offer, ACKs carol with the
// caller's answer, ends the referrer's leg, and media then flows between
// the caller and carol through the relay.
func TestBlindTransfer(t *testing.T) {
	blindTransfer(t, newBed(t, siptest.SBCOptions{}))
}

// blindTransfer is TestBlindTransfer's call on bd.
func blindTransfer(t *testing.T, bd *bed) {
	t.Helper()
	c := basicCall(t, bd)
	refer := c.invB.Request(sip.REFER, nil)
	refer.AppendHeader(sip.NewHeader("Refer-To", "<sips:carol@sbc.test>"))
	refer.AppendHeader(sip.NewHeader("Referred-By", "<sips:bob@callee.test>"))
	c.b.Send(refer)
	byCallID := func(id string, method sip.RequestMethod) func(sip.Message) bool {
		return func(m sip.Message) bool {
			r, ok := m.(*sip.Request)
			return ok && r.Method == method && r.CallID().Value() == id
		}
	}
	c.b.Response(wait, sip.REFER, 202)
	n1 := c.b.Expect(wait, "NOTIFY 100", byCallID(c.reqB.CallID().Value(), sip.NOTIFY)).(*sip.Request)
	if !strings.Contains(string(n1.Body()), "SIP/2.0 100") || n1.GetHeader("Event") == nil {
		t.Fatalf("first NOTIFY:\n%s", n1.String())
	}
	c.b.Send(c.b.Reply(n1, 200, "", nil))
	// The new call to carol, on the callee side's connection.
	invC := c.b.Expect(wait, "INVITE to carol", func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == sip.INVITE && r.Recipient.User == "carol"
	}).(*sip.Request)
	if len(invC.Body()) != 0 {
		t.Fatalf("the transfer INVITE must be a delayed offer:\n%s", invC.Body())
	}
	tagC := siptest.Tag()
	rtpC := siptest.NewRTP(t)
	c.b.Send(c.b.Reply(invC, 180, tagC, nil))
	n2 := c.b.Expect(wait, "NOTIFY 180", byCallID(c.reqB.CallID().Value(), sip.NOTIFY)).(*sip.Request)
	c.b.Send(c.b.Reply(n2, 200, "", nil))
	c.b.Send(c.b.Reply(invC, 200, tagC, siptest.SDP(rtpC.Port(), 1, "")))
	// The caller is re-INVITEd with carol's (anchored) offer.
	reA := c.a.Request(wait, sip.INVITE)
	if len(reA.Body()) == 0 {
		t.Fatal("the caller's re-INVITE has no offer")
	}
	rtpA2 := siptest.NewRTP(t)
	c.a.Send(c.a.Reply(reA, 200, "", siptest.SDP(rtpA2.Port(), 2, "")))
	c.a.Request(wait, sip.ACK)
	ackC := c.b.Expect(wait, "ACK to carol", byCallID(invC.CallID().Value(), sip.ACK)).(*sip.Request)
	if len(ackC.Body()) == 0 {
		t.Fatal("carol's ACK has no answer")
	}
	n3 := c.b.Expect(wait, "NOTIFY 200", byCallID(c.reqB.CallID().Value(), sip.NOTIFY)).(*sip.Request)
	if !strings.Contains(string(n3.Body()), "SIP/2.0 200") || !strings.Contains(n3.GetHeader("Subscription-State").Value(), "terminated") {
		t.Fatalf("final NOTIFY:\n%s", n3.String())
	}
	c.b.Send(c.b.Reply(n3, 200, "", nil))
	bye := c.b.Expect(wait, "BYE to the referrer", byCallID(c.reqB.CallID().Value(), sip.BYE)).(*sip.Request)
	c.b.Send(c.b.Reply(bye, 200, "", nil))
	// Media between the caller and carol through the relay.
	if !rtpA2.Flows(siptest.MediaAddr(t, reA.Body()), rtpC, 2*time.Second) {
		t.Fatal("no media from the caller to carol")
	}
	if !rtpC.Flows(siptest.MediaAddr(t, ackC.Body()), rtpA2, 2*time.Second) {
		t.Fatal("no media from carol to the caller")
	}
	// The caller hangs up: carol gets the BYE.
	c.a.Send(c.inv.Request(sip.BYE, nil))
	byeC := c.b.Expect(wait, "BYE to carol", byCallID(invC.CallID().Value(), sip.BYE)).(*sip.Request)
	c.b.Send(c.b.Reply(byeC, 200, "", nil))
	c.a.Response(wait, sip.BYE, 200)
	bd.sbc.WaitIdle(t, wait)
}

// TestAttendedTransferRefused: a Refer-To with Replaces gets 501.
func TestAttendedTransferRefused(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	c := basicCall(t, bd)
	refer := c.invB.Request(sip.REFER, nil)
	refer.AppendHeader(sip.NewHeader("Refer-To", "<sips:carol@sbc.test?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>"))
	c.b.Send(refer)
	c.b.Response(wait, sip.REFER, 501)
	c.hangup(t, bd)
}
