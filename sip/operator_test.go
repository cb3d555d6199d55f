package sip_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

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
