package sip

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/dnsresolve"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// This file is where a route is carried out: the callee's leg (B) is
// originated toward the destination trunk's RFC 3263 targets, in order,
// failing over to the next target when one does not answer; forks (several
// To tags) keep separate early dialogs, the first 2xx wins, every other 2xx
// gets ACK and BYE in its own dialog, a target abandoned for the next one
// gets a CANCEL once it rings, and 3xx responses are followed, relayed or
// refused per trunk.

// maxRedirects bounds the 3xx a call follows.
const maxRedirects = 3

// attempt is one INVITE to one target.
type attempt struct {
	n         int
	target    dnsresolve.Target
	addr, sni string
	conn      *conn
	req       *sip.Request
	tx        *clientTx
	prov      *callTimer
	heard     bool // any response arrived
	ringing   bool // a provisional arrived: CANCEL is allowed (RFC 3261 §9.1)
	abandoned bool // given up for the next target: CANCEL once it rings, ACK+BYE a late 2xx
	cancelled bool // CANCEL sent
	done      bool // the INVITE transaction ended
}

// fork is one early (or the confirmed) dialog of leg B, told apart by the
// callee's To tag (RFC 3261 §12.1.2, §13.2.2.4). Each fork is shown to the
// caller as an early dialog of its own (its own To tag on leg A).
type fork struct {
	att      *attempt
	tagB     string // the callee's tag
	tagA     string // our tag toward the caller for this fork
	target   sip.Uri
	routeSet []sip.Uri
	earlySDP []byte // the callee's SDP of its last unreliable 18x (committed if its 2xx has none)
	sdpToA   []byte // the last SDP sent to the caller in this fork's 18x
	ctToA    string
	rseqB    uint32 // last RSeq of the callee acknowledged
	rseqA    uint32 // our last RSeq toward the caller
	prackB   uint32 // RSeq of a reliable 18x whose PRACK waits for the caller's answer (0: none)

	relA       *sip.Response   // reliable 18x to the caller awaiting PRACK
	relQueue   []*sip.Response // more reliable 18x, sent once relA is PRACKed
	prackTimer *callTimer
}

// originate stages the caller's offer and starts resolving the destination.
func (c *call) originate() {
	body, err := splitBody(c.inv.req, c.snap.bodyAllow)
	if err != nil {
		c.failSetup(refuseBadBody, err.Error())
		return
	}
	var sdp []byte
	if len(body.sdp) > 0 {
		out, err := c.media.Offer(SideA, body.sdp)
		if err != nil {
			c.log.Info().Err(err).Msg("caller's offer refused")
			c.failSetup(statusFor(err), err.Error())
			return
		}
		c.setOA(c.a, oaOfferRecv)
		sdp = out
	}
	c.offerBType, c.offerB = joinBody(sdp, body.parts)
	c.tAnswer = c.after(c.snap.cfg.SIP.AnswerTimeout, tAnswer, nil)
	c.resolve()
}

// resolve looks up the destination trunk's targets: from the resolver's
// cache at once when it holds the answer, else in a helper goroutine (the
// loop keeps handling the caller's CANCEL meanwhile).
func (c *call) resolve() {
	u := c.plan.to.uri
	res := c.b.resolver
	if targets, ok := res.ResolveCached(u.Host, uint16(max(u.Port, 0))); ok {
		c.onResolved(event{kind: evResolved, targets: targets})
		return
	}
	ctx := c.ctx
	if !c.b.spawn(func() {
		targets, err := res.Resolve(ctx, u.Host, uint16(max(u.Port, 0)))
		c.post(event{kind: evResolved, targets: targets, err: err})
	}) {
		c.failSetup(refuseDraining, "shutting down")
	}
}

func (c *call) onResolved(ev event) {
	if !c.inSetup() {
		return
	}
	if ev.err != nil {
		c.b.metrics.DNSLookups.WithLabelValues("error").Inc()
		c.log.Warn().Err(ev.err).Str("host", c.plan.to.uri.Host).Msg("destination did not resolve")
		c.failSetup(statusFor(fmt.Errorf("%w: %w", ErrResolve, ev.err)), "destination did not resolve")
		return
	}
	c.b.metrics.DNSLookups.WithLabelValues("ok").Inc()
	targets := ev.targets
	if h := c.plan.to.health; h.Interval > 0 {
		// Monitored: the targets the pings say are down are skipped
		// before any INVITE is sent.
		var live []dnsresolve.Target
		for _, t := range targets {
			if c.b.mon.down(c.plan.to.name, t.Addr.String()) {
				c.log.Info().Str("target", t.Addr.String()).Msg("target down (health pings): skipped")
				continue
			}
			live = append(live, t)
		}
		if len(live) == 0 && len(targets) > 0 {
			c.log.Warn().Str("trunk", c.plan.to.name).Msg("every target of the trunk is down (health pings)")
			c.failSetup(refuseNoLiveTarget(max(1, int(h.Interval/time.Second))), "every target down")
			return
		}
		targets = live
	}
	c.targets = c.b.health.Order(targets)
	c.nextTarget = 0
	for _, t := range c.targets {
		c.b.trustTarget(t.Addr.Addr())
	}
	c.tryNext()
}

// tryNext tries the next target: over a connection that exists, or one
// dialed in a helper goroutine.
func (c *call) tryNext() {
	for c.nextTarget < len(c.targets) {
		t := c.targets[c.nextTarget]
		c.nextTarget++
		at := &attempt{n: c.nextTarget, target: t, addr: t.Addr.String(), sni: t.Host}
		if _, ok := tlsconf.ParseIPLiteral(at.sni); ok {
			at.sni = "" // never an IP literal as SNI
		}
		c.attempts = append(c.attempts, at)
		c.active = at
		cn, err := c.b.tp.reusable(at.addr, c.plan.to.identity)
		if err != nil {
			c.targetFailed(at, err.Error(), "unreachable")
			continue
		}
		if cn != nil {
			if c.sendInvite(at, cn) {
				return
			}
			continue
		}
		ctx, tp, identity := c.ctx, c.b.tp, c.plan.to.identity
		if !c.b.spawn(func() {
			cn, err := tp.dial(ctx, at.addr, at.sni, identity)
			c.post(event{kind: evDialed, att: at, conn: cn, err: err})
		}) {
			c.failSetup(refuseDraining, "shutting down")
		}
		return
	}
	if len(c.targets) == 0 {
		c.failSetup(statusFor(dnsresolve.ErrNoTargets), "no targets")
		return
	}
	c.log.Warn().Strs("causes", c.causes).Msg("every target failed")
	c.failSetup(statusFor(ErrAllTargets), "every target failed")
}

// targetFailed records a failed target and marks it down for failover.
func (c *call) targetFailed(at *attempt, why, cause string) {
	c.causes = append(c.causes, fmt.Sprintf("%s: %s", at.addr, why))
	if !c.b.health.IsDown(at.target.Addr) {
		c.b.health.MarkDown(at.target.Addr, why)
	}
	c.b.metrics.Failovers.WithLabelValues(cause).Inc()
	msg := "failover: next target"
	if cause == "unreachable" {
		msg = "failover: target not reachable"
	}
	c.log.Warn().Str("target", at.addr).Str("host", at.target.Host).Str("cause", why).Int("try", at.n).Msg(msg)
}

func (c *call) onDialed(ev event) {
	at := ev.att
	if at != c.active || !c.inSetup() || c.ended {
		// The call moved on (cancelled, answered elsewhere): the
		// connection stays for reuse.
		c.maybeRelease()
		return
	}
	if ev.err != nil {
		if c.ctx.Err() != nil {
			return
		}
		c.targetFailed(at, ev.err.Error(), "unreachable")
		c.tryNext()
		return
	}
	if !c.sendInvite(at, ev.conn) {
		c.tryNext()
	}
}

// sendInvite sends leg B's INVITE to one target; false means it failed
// (failover).
func (c *call) sendInvite(at *attempt, cn *conn) bool {
	at.conn = cn
	at.req = c.buildInvite(at)
	tx, err := c.sendReq(cn, at.req, at)
	if err != nil {
		c.targetFailed(at, err.Error(), "unreachable")
		return false
	}
	at.tx = tx
	if c.bl.oa == oaNone && len(c.offerB) > 0 && c.a.oa == oaOfferRecv {
		c.setOA(c.bl, oaOfferSent)
	}
	c.bl.lastSDP, c.bl.lastCT = c.offerB, c.offerBType
	at.prov = c.after(c.snap.cfg.SIP.ProvisionalTimeout, tProvisional, at)
	c.setState(stCalling)
	return true
}

// buildInvite creates the INVITE of leg B: a new dialog, nothing of leg
// A's topology, allow-listed headers only, Allow/Supported of the SBC.
func (c *call) buildInvite(at *attempt) *sip.Request {
	reqA := c.inv.req
	u := c.plan.to.uri
	l := c.bl
	scheme := l.scheme()
	ruri := sip.Uri{Scheme: scheme, User: c.ruriUser, Host: u.Host, Port: u.Port}
	if scheme == "sip" {
		ruri.UriParams = sip.NewParams()
		ruri.UriParams.Add("transport", "tls")
	}
	l.remoteURI = sip.Uri{Scheme: scheme, User: c.ruriUser, Host: u.Host}
	l.localURI.Scheme = scheme
	if to := reqA.To(); to != nil {
		l.remoteName = to.DisplayName
	}
	l.remoteTarget = ruri
	l.remoteTag = ""
	l.routeSet = nil
	l.localCSeq = l.inviteCSeq - 1 // request() numbers the INVITE inviteCSeq
	mf, _ := maxForwardsOf(reqA)
	req := c.request(l, sip.INVITE, 0, mf)
	req.RemoveHeader("Supported")
	supported := "timer"
	if c.use100relB() {
		supported += ", 100rel"
	}
	req.AppendHeader(sip.NewHeader("Supported", supported))
	copyAllowed(reqA, req, c.snap.allow, c.plan.trusted)
	c.sessionOffer(req)
	c.applyRewrites(req, l)
	setBody(req, c.offerBType, c.offerB)
	return req
}

// use100relB reports whether leg B may send reliable provisionals: the SBC
// handles them on leg B itself, except an offer in a reliable 18x (our
// INVITE had none), whose answer must come from the caller's PRACK.
func (c *call) use100relB() bool {
	return len(c.offerB) > 0 || c.a.peer100rel
}

// onResponse routes a response to what its transaction was sent for.
func (c *call) onResponse(ev event) {
	delete(c.ctxs, ev.ctx)
	if ev.res.StatusCode < 200 {
		c.ctxs[ev.ctx] = struct{}{}
	}
	switch ref := ev.ctx.ref.(type) {
	case *attempt:
		c.onInviteResponse(ref, ev.res)
	case *relay:
		c.onRelayResponse(ref, ev.res)
	case *ownRequest:
		c.onOwnResponse(ref, ev.res)
	case *xferAttempt:
		c.onXferResponse(ref, ev.res)
	}
}

// onInviteResponse handles a response to leg B's INVITE from one target.
func (c *call) onInviteResponse(at *attempt, res *sip.Response) {
	code := res.StatusCode
	if !at.heard {
		at.heard = true
		c.stop(at.prov)
		at.prov = nil
		if code < 200 || code != 503 {
			c.b.health.MarkUp(at.target.Addr)
		}
	}
	if code < 200 {
		at.ringing = true
		if at.abandoned || c.ended || !c.inSetup() {
			c.cancelAttempt(at)
			c.maybeRelease()
			return
		}
		if code == 100 {
			c.setState(stProceeding)
			return
		}
		c.early(at, res)
		return
	}
	at.done = true
	if code < 300 {
		c.answered(at, res)
		return
	}
	if at.abandoned || at.cancelled || c.ended || at != c.active {
		c.maybeRelease()
		return
	}
	switch {
	case code < 400:
		c.redirected(at, res)
	case code == 503:
		// RFC 3263 §4.3: a 503 sends us to the next target; the target
		// stays down for its Retry-After when it gave one.
		if ra := retryAfter(res); ra > 0 {
			c.b.health.MarkDownFor(at.target.Addr, ra, "503 Retry-After")
		}
		c.targetFailed(at, "503", "no_answer_or_503")
		c.tryNext()
	default:
		c.relayFailure(res)
	}
}

// provisionalTimeout abandons a target that sent nothing in time: the
// next one is tried; the abandoned one gets a CANCEL once it rings. The
// last target is not abandoned (there is nothing to fail over to): a peer
// busy for a few seconds still gets its call, until the INVITE's Timer B.
func (c *call) provisionalTimeout(at *attempt) {
	at.prov = nil
	if at.heard || at.done || !c.inSetup() {
		return
	}
	if c.nextTarget >= len(c.targets) {
		c.log.Info().Str("target", at.addr).Dur("after", c.snap.cfg.SIP.ProvisionalTimeout).
			Msg("no response yet from the last target: waiting for it")
		return
	}
	at.abandoned = true
	c.targetFailed(at, fmt.Sprintf("no response within %s", c.snap.cfg.SIP.ProvisionalTimeout), "no_answer_or_503")
	c.tryNext()
}

// cancelAttempt sends CANCEL for an attempt that rings (RFC 3261 §9.1);
// one that has not rung yet is cancelled when it does.
func (c *call) cancelAttempt(at *attempt) {
	at.abandoned = true
	if at.cancelled || at.done || !at.ringing || at.req == nil {
		return
	}
	at.cancelled = true
	inv := at.req
	cancel := sip.NewRequest(sip.CANCEL, inv.Recipient)
	cancel.AppendHeader(inv.Via().Clone())
	mf := sip.MaxForwardsHeader(70)
	cancel.AppendHeader(&mf)
	for h := range headersNamed(inv, "Route") {
		cancel.AppendHeader(sip.HeaderClone(h))
	}
	cancel.AppendHeader(sip.HeaderClone(inv.From()))
	cancel.AppendHeader(sip.HeaderClone(inv.To()))
	cancel.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	cancel.SetBody(nil)
	cancel.SetTransport("TLS")
	if _, err := c.b.send(at.conn, cancel, nil, nil); err != nil {
		c.log.Debug().Err(err).Str("target", at.addr).Msg("CANCEL not sent")
	}
}

// cancelAll cancels every attempt still in progress.
func (c *call) cancelAll() {
	for _, at := range c.attempts {
		if !at.done {
			c.cancelAttempt(at)
		}
	}
}

// failSetup ends a call before it was answered, answering the caller with
// r (with the call's id in the Warning).
func (c *call) failSetup(r refusal, why string) {
	if !c.inSetup() {
		return
	}
	c.log.Info().Int("code", r.code).Str("why", why).Msg("call setup failed")
	if c.inv != nil && !c.inv.isFinal() {
		c.respond(c.inv, c.b.refusalResponse(c.inv.req, r, c.a.localTag, c.id))
	}
	c.terminate("sbc", why, r.code)
}

// forkFor returns the fork of the callee's tag, creating it (with its own
// tag toward the caller) when new.
func (c *call) forkFor(at *attempt, tag string, res *sip.Response) *fork {
	for _, f := range c.forks {
		if f.tagB == tag && f.att == at {
			c.learnFork(f, res)
			return f
		}
	}
	f := &fork{att: at, tagB: tag, tagA: c.a.localTag}
	if len(c.forks) > 0 {
		f.tagA = newTag()
		c.b.register(c, c.a.callID, f.tagA, SideA)
	}
	c.forks = append(c.forks, f)
	c.learnFork(f, res)
	return f
}

// learnFork records the callee's target and route set from a response
// that creates or refreshes its (early) dialog (RFC 3261 §12.1.2).
func (c *call) learnFork(f *fork, res *sip.Response) {
	if ct := res.Contact(); ct != nil {
		f.target = ct.Address
	}
	if res.StatusCode >= 200 || f.routeSet == nil {
		f.routeSet = routeSetOf(res, true)
	}
}

// useFork points leg B's dialog state at fork f, for a request in its
// (early) dialog.
func (c *call) useFork(f *fork) {
	l := c.bl
	l.remoteTag, l.routeSet, l.conn = f.tagB, f.routeSet, f.att.conn
	if f.target.Host != "" {
		l.remoteTarget = f.target
	}
}

func (c *call) forkByTagA(tag string) *fork {
	for _, f := range c.forks {
		if f.tagA == tag {
			return f
		}
	}
	return nil
}

// early relays a provisional response with a To tag: the fork's early
// dialog, early media (the answer in an unreliable 18x is a preview; in a
// reliable one it is final, RFC 3262), PRACK toward the callee.
func (c *call) early(at *attempt, res *sip.Response) {
	tag := toTag(res)
	if tag == "" {
		// No early dialog without a tag: pass the progress on, no body.
		if len(c.forks) == 0 {
			c.relayProvisional(nil, res, "", nil)
		}
		c.setState(stProceeding)
		return
	}
	f := c.forkFor(at, tag, res)
	c.bl.learnPeer(res)
	body, err := splitBody(res, c.snap.bodyAllow)
	if err != nil {
		c.log.Info().Err(err).Msg("provisional body refused")
	}
	var sdp []byte
	if reliable(res) {
		rseq := rseqOf(res)
		if f.rseqB != 0 && rseq <= f.rseqB {
			return // a retransmission
		}
		f.rseqB = rseq
		if len(body.sdp) > 0 {
			switch c.bl.oa {
			case oaOfferSent, oaEarly:
				out, err := c.media.Answer(SideB, body.sdp)
				if err != nil {
					c.log.Warn().Err(err).Msg("answer in a reliable provisional refused: ending call")
					c.useFork(f)
					c.prackB(f, rseq, "", nil)
					c.failSetup(statusFor(err), "unacceptable answer")
					return
				}
				c.setOA(c.bl, oaStable)
				sdp = out
			case oaNone:
				out, err := c.media.Offer(SideB, body.sdp)
				if err == nil {
					c.setOA(c.bl, oaOfferRecv)
					sdp = out
					f.prackB = rseq // answered with the caller's PRACK
				}
			}
		}
		if f.prackB == 0 {
			c.prackB(f, rseq, "", nil)
		}
	} else if len(body.sdp) > 0 && (c.bl.oa == oaOfferSent || c.bl.oa == oaEarly) {
		out, err := c.media.ProvisionalAnswer(SideB, body.sdp)
		if err != nil {
			c.log.Info().Err(err).Msg("early SDP refused")
		} else {
			c.setOA(c.bl, oaEarly)
			f.earlySDP = body.sdp
			sdp = out
		}
	}
	ct, data := joinBody(sdp, body.parts)
	c.relayProvisional(f, res, ct, data)
	if len(sdp) > 0 {
		f.sdpToA, f.ctToA = data, ct
	}
	c.setState(stEarly)
}

// prackB acknowledges a reliable provisional response of the callee
// (RFC 3262 §7.2), with the caller's answer when it carried an offer.
func (c *call) prackB(f *fork, rseq uint32, ct string, body []byte) {
	c.useFork(f)
	req := c.request(c.bl, sip.PRACK, 0, 70)
	req.AppendHeader(sip.NewHeader("RAck", fmt.Sprintf("%d %d INVITE", rseq, c.bl.inviteCSeq)))
	setBody(req, ct, body)
	if len(body) > 0 {
		c.bl.lastSDP, c.bl.lastCT = body, ct
	}
	if _, err := c.sendReq(f.att.conn, req, &ownRequest{method: sip.PRACK}); err != nil {
		c.log.Debug().Err(err).Msg("PRACK not sent")
	}
}

// relayProvisional sends the caller a provisional response of fork f (nil:
// one without a dialog), reliably when the caller requires it or when the
// callee's was reliable and the caller supports it (RFC 3262).
func (c *call) relayProvisional(f *fork, res *sip.Response, ct string, body []byte) {
	tag := c.a.localTag
	if f != nil {
		tag = f.tagA
	}
	out := newResponse(c.inv.req, res.StatusCode, tag)
	if f != nil {
		out.AppendHeader(c.contactFor(c.a))
	}
	copyAllowed(res, out, c.snap.allow, c.plan.to.trusted)
	setBody(out, ct, body)
	rel := f != nil && (headerHasToken(c.inv.req, "Require", "100rel") || (c.a.peer100rel && reliable(res)))
	if !rel {
		if len(body) > 0 && c.a.oa == oaOfferRecv {
			c.setOA(c.a, oaEarly)
		}
		c.respond(c.inv, out)
		return
	}
	if f.relA != nil {
		f.relQueue = append(f.relQueue, out)
		return
	}
	c.sendReliable(f, out)
}

// sendReliable sends a reliable provisional response to the caller.
func (c *call) sendReliable(f *fork, out *sip.Response) {
	f.rseqA++
	if f.rseqA == 1 {
		f.rseqA = uint32(time.Now().UnixNano()%(1<<30)) + 1
	}
	out.AppendHeader(sip.NewHeader("Require", "100rel"))
	out.AppendHeader(sip.NewHeader("RSeq", strconv.FormatUint(uint64(f.rseqA), 10)))
	f.relA = out
	if len(out.Body()) > 0 {
		switch c.a.oa {
		case oaOfferRecv, oaEarly:
			c.setOA(c.a, oaStable) // answered reliably
		case oaNone:
			c.setOA(c.a, oaOfferSent) // the callee's offer, answered in the PRACK
		}
	}
	f.prackTimer = c.after(timerTx, tPrackWait, f)
	c.respond(c.inv, out)
}

// nextReliable sends the next queued reliable provisional of f.
func (c *call) nextReliable(f *fork) {
	if len(f.relQueue) == 0 || !c.inSetup() {
		f.relQueue = nil
		return
	}
	next := f.relQueue[0]
	f.relQueue = f.relQueue[1:]
	c.sendReliable(f, next)
}

// answered handles a 2xx from a target: the first one wins the call; any
// other (another fork, an abandoned target, after a CANCEL) gets ACK and
// BYE in its own dialog (RFC 3261 §13.2.2.4).
func (c *call) answered(at *attempt, res *sip.Response) {
	tag := toTag(res)
	if c.winner != nil || at.abandoned || c.ended || !c.inSetup() {
		if c.winner != nil && c.winner.att == at && c.winner.tagB == tag {
			c.ackLeg(c.bl, res.CSeq().SeqNo, c.bl.lastAckCT, c.bl.lastAckBody)
			return
		}
		c.log.Info().Str("target", at.addr).Msg("2xx from a fork or abandoned target: ACK and BYE")
		c.b.ackAndBye(at.conn, res)
		c.maybeRelease()
		return
	}
	f := c.forkFor(at, tag, res)
	c.winner = f
	c.useFork(f)
	c.bl.learnPeer(res)
	c.stop(c.tAnswer)
	for _, o := range c.attempts {
		if o != at && !o.done {
			c.stop(o.prov)
			c.cancelAttempt(o)
		}
	}
	body, err := splitBody(res, c.snap.bodyAllow)
	if err != nil {
		c.log.Info().Err(err).Msg("2xx body refused")
	}
	sdpA, owe, err := c.answerOf(f, body.sdp)
	if err != nil {
		c.log.Warn().Err(err).Msg("callee's 2xx SDP refused: releasing the callee")
		c.ackB(c.bl.inviteCSeq, "", nil)
		c.bye(c.bl)
		c.failSetup(statusFor(err), "unacceptable answer")
		return
	}
	if owe {
		c.bl.owedAck = &owedAck{cseq: c.bl.inviteCSeq}
	} else {
		c.ackB(c.bl.inviteCSeq, "", nil)
	}
	ctA, dataA := joinBody(sdpA, body.parts)
	if len(sdpA) == 0 && len(body.parts) == 0 && (c.a.oa == oaOfferRecv || c.a.oa == oaEarly) {
		ctA, dataA = f.ctToA, f.sdpToA // RFC 6337 §3.1.1: the 2xx repeats the answer
	}
	if len(dataA) == 0 && (c.a.oa == oaOfferRecv || c.a.oa == oaEarly) {
		c.log.Warn().Msg("callee answered without SDP to an offer: ending call")
		c.ackB(c.bl.inviteCSeq, "", nil)
		c.bye(c.bl)
		c.failSetup(statusFor(ErrMedia), "no answer SDP")
		return
	}
	switch c.a.oa {
	case oaOfferRecv, oaEarly:
		c.setOA(c.a, oaStable)
	case oaNone:
		if len(sdpA) > 0 {
			c.setOA(c.a, oaOfferSent)
		}
	case oaStable:
		ctA, dataA = joinBody(nil, body.parts) // answered reliably before
	}
	out := newResponse(c.inv.req, res.StatusCode, f.tagA)
	out.AppendHeader(c.contactFor(c.a))
	out.AppendHeader(sip.NewHeader("Allow", allowFor(c.a)))
	out.AppendHeader(sip.NewHeader("Supported", optionTags))
	copyAllowed(res, out, c.snap.allow, c.plan.to.trusted)
	c.sessionAnswer(res, out)
	setBody(out, ctA, dataA)
	if len(dataA) > 0 {
		c.a.lastSDP, c.a.lastCT = dataA, ctA
	}
	// Other forks' early dialogs toward the caller end with this 2xx.
	for _, o := range c.forks {
		if o != f && o.tagA != c.a.localTag {
			c.b.unregister(c.a.callID, o.tagA)
		}
		c.stop(o.prackTimer)
	}
	c.a.localTag = f.tagA
	c.answerAt = time.Now()
	c.finalCode = res.StatusCode
	c.setState(stConnecting)
	c.respond(c.inv, out)
	c.awaitAck(c.a, out)
	c.b.metrics.SetupSeconds.Observe(time.Since(c.start).Seconds())
	c.log.Info().Str("event", "call_answer").Int("code", res.StatusCode).Msg("call answered")
}

// answerOf turns the SDP of the winning 2xx into what the caller gets:
// the anchored answer (or, after a delayed-offer INVITE, the callee's
// anchored offer: owe is then true, the ACK to the callee waits for the
// caller's answer in its ACK).
func (c *call) answerOf(f *fork, sdp []byte) (out []byte, owe bool, err error) {
	switch c.bl.oa {
	case oaOfferSent, oaEarly:
		if len(sdp) == 0 && c.bl.oa == oaEarly {
			sdp = f.earlySDP // the 2xx did not repeat the early answer: it stands
		}
		if len(sdp) == 0 {
			return nil, false, fmt.Errorf("%w: 2xx without an answer", ErrMedia)
		}
		out, err := c.media.Answer(SideB, sdp)
		if err != nil {
			return nil, false, err
		}
		c.setOA(c.bl, oaStable)
		return out, false, nil
	case oaNone:
		if len(sdp) == 0 {
			return nil, false, nil // no SDP anywhere: a call without media
		}
		out, err := c.media.Offer(SideB, sdp)
		if err != nil {
			return nil, false, err
		}
		c.setOA(c.bl, oaOfferRecv)
		return out, true, nil
	case oaOfferRecv:
		return nil, true, nil // the callee's offer in a reliable 18x is still unanswered
	}
	return nil, false, nil // stable: answered in a reliable 18x
}

// ackB sends the ACK for a 2xx of leg B (its own transaction, RFC 3261
// §13.2.2.4).
func (c *call) ackB(cseq uint32, ct string, body []byte) {
	c.ackLeg(c.bl, cseq, ct, body)
}

// ackLeg sends the ACK for a 2xx on leg l.
func (c *call) ackLeg(l *leg, cseq uint32, ct string, body []byte) {
	ack := c.request(l, sip.ACK, cseq, 70)
	setBody(ack, ct, body)
	l.lastAckCT, l.lastAckBody = ct, body
	if len(body) > 0 {
		l.lastSDP, l.lastCT = body, ct
	}
	if l.conn == nil {
		return
	}
	if err := c.b.sendAck(l.conn, ack); err != nil {
		c.log.Debug().Err(err).Str("leg", l.side.String()).Msg("ACK not sent")
	}
}

// onStray2xx handles a 2xx to an INVITE of the call that arrived after
// its transaction ended: a retransmission in a dialog the call keeps gets
// the same ACK again, any other dialog's (another fork's) ACK and BYE.
func (c *call) onStray2xx(ev event) {
	res := ev.res
	if ev.xfer && c.xfer != nil {
		return // the transfer target retransmits: its ACK follows the transferee's answer
	}
	l := c.legByCallID(callIDOf(res))
	if l != nil && l.remoteTag != "" && l.remoteTag == toTag(res) && ev.conn == l.conn {
		if l.owedAck == nil {
			c.ackLeg(l, res.CSeq().SeqNo, l.lastAckCT, l.lastAckBody)
		}
		return
	}
	c.log.Info().Msg("2xx from another fork: ACK and BYE")
	c.b.ackAndBye(ev.conn, res)
}

// redirected handles a 3xx from the active target per the trunk's
// redirect policy.
func (c *call) redirected(at *attempt, res *sip.Response) {
	switch c.plan.to.redirect {
	case "relay":
		out := newResponse(c.inv.req, res.StatusCode, c.a.localTag)
		for _, ct := range sipsContacts(res) {
			out.AppendHeader(&sip.ContactHeader{Address: ct.uri, Params: ct.params})
		}
		copyAllowed(res, out, c.snap.allow, c.plan.to.trusted)
		c.respond(c.inv, out)
		c.terminate("b", fmt.Sprintf("%d redirect relayed", res.StatusCode), res.StatusCode)
		return
	case "refuse":
		c.failSetup(refuseRedirect, fmt.Sprintf("%d redirect refused", res.StatusCode))
		return
	}
	contacts := sipsContacts(res)
	if len(contacts) == 0 || c.redirects >= maxRedirects {
		c.log.Info().Int("code", res.StatusCode).Int("redirects", c.redirects).Int("sips_contacts", len(contacts)).Msg("redirect not followed")
		c.failSetup(refuseRedirect, "redirect not followed")
		return
	}
	c.redirects++
	c.followContacts(res.StatusCode, contacts)
}

// followContacts follows the first of contacts that the routes and the
// admission allow; with a cluster, a contact toward another destination
// trunk is admitted in a helper goroutine and followed (or the next one
// tried) when its result arrives (onRedirectAdmitted).
func (c *call) followContacts(code int, contacts []contactOut) {
	for i, ct := range contacts {
		var r refusal
		var err error
		if c.b.shared == nil {
			r, err = c.b.planner.redirect(c.snap, c.plan, ct.uri.User, ct.uri.Host)
		} else {
			var to *trunkRec
			var rw rewrites
			to, rw, r, err = c.b.planner.redirectRoute(c.snap, c.plan, ct.uri.User, ct.uri.Host)
			if err == nil && (to.name != c.plan.to.name || c.admKey == "") {
				c.admitRedirect(code, contacts[i:], to, rw)
				return
			}
			if err == nil {
				r, err = c.b.planner.moveTo(c.plan, to, rw, false)
			}
		}
		if err != nil {
			c.log.Info().Err(err).Str("user", ct.uri.User).Str("host", ct.uri.Host).Msg("redirect target refused by policy")
			if i == len(contacts)-1 {
				c.failSetup(r, "redirect target refused")
				return
			}
			continue
		}
		c.followRedirect(code, ct)
		return
	}
}

// followRedirect places leg B toward a 3xx contact the plan now routes.
func (c *call) followRedirect(code int, ct contactOut) {
	c.log.Info().Int("code", code).Str("user", ct.uri.User).Str("trunk", c.plan.to.name).Int("redirects", c.redirects).Msg("following redirect")
	c.ruriUser, c.ruriHost = ct.uri.User, ct.uri.Host
	// A new dialog toward the new target (a B2BUA is free to: the
	// redirecting target's dialog is over).
	c.b.unregister(c.bl.callID, c.bl.localTag)
	c.bl.callID = newCallID()
	c.b.register(c, c.bl.callID, c.bl.localTag, SideB)
	c.targets, c.nextTarget = nil, 0
	c.resolve()
}

// admitRedirect moves the call's cluster slot to destination trunk to (the
// first of contacts): the helper releases the call's key and admits it
// again with to's max_calls checked, as planner.redirect checks it (also
// toward the same trunk when an earlier contact's admission was refused:
// the call then holds no slot).
func (c *call) admitRedirect(code int, contacts []contactOut, to *trunkRec, rw rewrites) {
	b, pl := c.b, c.plan
	from, unauth := pl.from, pl.unauth
	var check *trunkRec // the trunk planner.redirect would check
	if to.name != from.name && to.name != pl.to.name {
		check = to
	}
	req := moveAdmitRequest(c.id, from, to, unauth, check)
	old := c.admKey
	c.admKey = "" // the helper releases it
	c.admitShared(admitResult{purpose: admitRedirect, contacts: contacts, code: code, to: to, rw: rw}, req,
		func() (refusal, string) {
			if check == nil {
				return refusal{}, ""
			}
			if r, err := b.planner.trunkRoom(check); err != nil {
				return r, "trunk_max_calls"
			}
			return refusal{}, ""
		}, old)
}

// onRedirectAdmitted follows the admitted contact, or tries the next one.
func (c *call) onRedirectAdmitted(res *admitResult) {
	if res.held {
		c.admKey = res.key
	}
	if !c.inSetup() || c.ended {
		return // the call is ending: release gives the slot back
	}
	ct := res.contacts[0]
	if res.why != "" {
		c.log.Info().Str("user", ct.uri.User).Str("host", ct.uri.Host).Str("admission", res.why).Bool("local_limits", res.local).
			Msg("redirect target refused by policy")
		if len(res.contacts) == 1 {
			c.failSetup(res.r, "redirect target refused")
			return
		}
		c.followContacts(res.code, res.contacts[1:])
		return
	}
	if _, err := c.b.planner.moveTo(c.plan, res.to, res.rw, false); err != nil {
		c.failSetup(refuseInternal, err.Error())
		return
	}
	c.followRedirect(res.code, ct)
}

// contactOut is a sanitized sips: Contact of a 3xx.
type contactOut struct {
	uri    sip.Uri
	params sip.HeaderParams
	q      float64
}

// sipsContacts returns the sips: Contacts of a 3xx with a user and a host,
// best q first, without URI headers or parameters other than user=.
func sipsContacts(res *sip.Response) []contactOut {
	var out []contactOut
	for h := range headersNamed(res, "Contact") {
		ct, ok := h.(*sip.ContactHeader)
		if !ok {
			continue
		}
		{
			u := ct.Address
			if !strings.EqualFold(u.Scheme, "sips") || u.User == "" || u.Host == "" || hasCTL(u.User+u.Host) {
				continue
			}
			clean := sip.Uri{Scheme: "sips", User: u.User, Host: u.Host, Port: u.Port}
			q := 1.0
			params := sip.NewParams()
			if v, ok := ct.Params.Get("q"); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
					q = f
					params.Add("q", v)
				}
			}
			out = append(out, contactOut{uri: clean, params: params, q: q})
		}
	}
	slices.SortStableFunc(out, func(a, b contactOut) int { return cmp.Compare(b.q, a.q) })
	return out
}

// relayFailure relays a final error response of the active target to the
// caller (an authentication challenge of the callee is for us: 403).
func (c *call) relayFailure(res *sip.Response) {
	code := res.StatusCode
	if code == 401 || code == 407 {
		code = sip.StatusForbidden
	}
	out := newResponse(c.inv.req, code, c.a.localTag)
	copyAllowed(res, out, c.snap.allow, c.plan.to.trusted)
	if code == 503 || code == 480 || code == 486 || code == 600 {
		if ra := retryAfter(res); ra > 0 {
			out.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(int(ra/time.Second))))
		}
	}
	c.respond(c.inv, out)
	c.terminate("b", fmt.Sprintf("%d", res.StatusCode), res.StatusCode)
}

// ackAndBye acknowledges a 2xx that belongs to no call (or to a dialog
// the call does not keep) and ends its dialog, built from the response
// alone (RFC 3261 §13.2.2.4), on the connection it came on.
func (b *B2BUA) ackAndBye(cn *conn, res *sip.Response) {
	cs := res.CSeq()
	if cn == nil || cs == nil || res.From() == nil || res.To() == nil || res.CallID() == nil {
		return
	}
	target := res.To().Address
	if ct := res.Contact(); ct != nil {
		target = ct.Address
	}
	rs := routeSetOf(res, true)
	build := func(m sip.RequestMethod, seq uint32) *sip.Request {
		req := sip.NewRequest(m, sip.Uri{Scheme: target.Scheme, User: target.User, Host: target.Host, Port: target.Port, UriParams: target.UriParams})
		req.AppendHeader(b.via(newBranch()))
		mf := sip.MaxForwardsHeader(70)
		req.AppendHeader(&mf)
		for _, r := range rs {
			req.AppendHeader(&sip.RouteHeader{Address: r})
		}
		req.AppendHeader(sip.HeaderClone(res.From()))
		req.AppendHeader(sip.HeaderClone(res.To()))
		req.AppendHeader(sip.HeaderClone(res.CallID()))
		req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: m})
		req.SetBody(nil)
		req.SetTransport("TLS")
		return req
	}
	_ = b.sendAck(cn, build(sip.ACK, cs.SeqNo))
	if _, err := b.send(cn, build(sip.BYE, cs.SeqNo+1), nil, nil); err != nil {
		b.log.Debug().Err(err).Msg("BYE for a stray 2xx not sent")
	}
}
