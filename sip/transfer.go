package sip

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/dnsresolve"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// This file is blind transfer (RFC 3515 REFER, RFC 5589): a leg whose
// trunk has refer: local asks the SBC to connect the other party (the
// transferee) to the Refer-To target. The SBC answers 202, places the new
// call itself — routed from the transferee's trunk, through the same
// admission, transforms and SIPS policy — with a delayed offer, reports
// progress to the referrer in NOTIFYs (message/sipfrag), and when the
// target answers it re-INVITEs the transferee with the target's offer
// anchored on a new media session (RFC 3725 flow I), ACKs the target with
// the transferee's answer, and ends the referrer's leg. A transfer that
// fails leaves the call as it was. Attended transfer (a Refer-To with
// Replaces) is answered 501.

// transfer is a blind transfer in progress.
type transfer struct {
	referrer  *leg // the leg that sent the REFER; replaced on success
	remaining *leg // the transferee
	referCSeq uint32
	target    sip.Uri // Refer-To
	to        *trunkRec
	route     rewrites
	leg       *leg // the new leg toward the target (the SBC is its UAC)
	targets   []dnsresolve.Target
	next      int
	at        *xferAttempt
	media     MediaSession // remaining <-> target, once the target answered
	answer    *sip.Response
	timer     *callTimer
	reinvite  *clientTx
	notified  map[int]bool
	done      bool
	admKey    string // the transfer's own cluster slot ("" none): the call's once it completes
}

// xferAttempt is the transfer's INVITE to one target.
type xferAttempt struct {
	target    dnsresolve.Target
	addr, sni string
	conn      *conn
	req       *sip.Request
	tx        *clientTx
	ringing   bool
	cancelled bool
}

// onRefer handles a REFER from leg l.
func (c *call) onRefer(l *leg, tx *serverTx) {
	req := tx.req
	o := c.other(l)
	switch {
	case l.trunk.refer != "local":
		c.respond(tx, c.b.refusalResponse(req, refuseTransferPolicy, "", c.id))
		return
	case !c.canTransfer(l):
		c.respond(tx, c.b.refusalResponse(req, refuseGlare, "", ""))
		return
	}
	rt := req.GetHeader("Refer-To")
	if rt == nil || countHeaders(req, "Refer-To") != 1 {
		c.respond(tx, c.b.refusalResponse(req, *malformed("one Refer-To header is required"), "", ""))
		return
	}
	v := rt.Value()
	i, j := strings.Index(v, "<"), strings.LastIndex(v, ">")
	if i >= 0 && j > i {
		v = v[i+1 : j]
	}
	var target sip.Uri
	if err := sip.ParseUri(v, &target); err != nil || target.Host == "" || target.User == "" {
		c.respond(tx, c.b.refusalResponse(req, *malformed("Refer-To is not a URI with a user and a host"), "", ""))
		return
	}
	if target.Headers != nil {
		if _, ok := target.Headers.Get("Replaces"); ok {
			c.respond(tx, c.b.refusalResponse(req, refuseAttended, "", c.id))
			return
		}
	}
	if !strings.EqualFold(target.Scheme, "sips") {
		c.respond(tx, c.b.refusalResponse(req, refuseSIPScheme, "", ""))
		return
	}
	var to *trunkRec
	var route rewrites
	var r refusal
	var err error
	if c.b.shared == nil {
		to, route, r, err = c.b.planner.transferTarget(c.snap, o.trunk.name, c.plan.unauth && o == c.a, target.User, target.Host)
	} else if to, route, r, err = c.b.planner.transferRoute(c.snap, o.trunk.name, c.plan.unauth && o == c.a, target.User, target.Host); err == nil {
		c.admitTransfer(&pendingRefer{l: l, tx: tx, target: target, to: to, route: route})
		return
	}
	if err != nil {
		c.log.Info().Err(err).Str("user", target.User).Str("host", target.Host).Msg("transfer target refused by policy")
		c.respond(tx, c.b.refusalResponse(req, r, "", c.id))
		return
	}
	c.startTransfer(l, tx, target, to, route, "")
}

// canTransfer reports whether leg l's REFER may start a transfer now: the
// call is up, no transfer runs or waits for its admission, no offer or
// re-INVITE is outstanding.
func (c *call) canTransfer(l *leg) bool {
	o := c.other(l)
	return c.state == stConfirmed && c.xfer == nil && c.referAdmit == nil && !l.pendingOffer() && !o.pendingOffer() &&
		l.inviteIn == nil && l.inviteOut == nil && o.inviteIn == nil && o.inviteOut == nil
}

// pendingRefer is a REFER whose transfer waits for its cluster admission.
type pendingRefer struct {
	l      *leg
	tx     *serverTx
	target sip.Uri
	to     *trunkRec
	route  rewrites
}

// admitTransfer admits the transfer's new call through the cluster under
// a key of its own, with the target trunk's max_calls checked (as
// planner.transferTarget checks it).
func (c *call) admitTransfer(p *pendingRefer) {
	b := c.b
	o := c.other(p.l)
	to := p.to
	req := moveAdmitRequest(c.nextAdmitKey(), to, o.trunk, c.plan.unauth, to)
	c.referAdmit = p
	c.admitShared(admitResult{purpose: admitTransfer, refer: p}, req, func() (refusal, string) {
		if r, err := b.planner.trunkRoom(to); err != nil {
			return r, "trunk_max_calls"
		}
		return refusal{}, ""
	}, "")
}

// onTransferAdmitted starts the transfer its admission allowed, or refuses
// the REFER.
func (c *call) onTransferAdmitted(res *admitResult) {
	p := c.referAdmit
	c.referAdmit = nil
	if p == nil || p != res.refer || p.tx.isFinal() {
		c.releaseShared(heldKey(res))
		return
	}
	if res.why != "" {
		c.log.Info().Str("user", p.target.User).Str("host", p.target.Host).Str("admission", res.why).Bool("local_limits", res.local).
			Msg("transfer target refused by policy")
		c.respond(p.tx, c.b.refusalResponse(p.tx.req, res.r, "", c.id))
		return
	}
	if !c.canTransfer(p.l) {
		c.releaseShared(heldKey(res))
		c.respond(p.tx, c.b.refusalResponse(p.tx.req, refuseGlare, "", ""))
		return
	}
	c.startTransfer(p.l, p.tx, p.target, p.to, p.route, heldKey(res))
}

// heldKey is the key an admission holds in the cluster ("" none).
func heldKey(res *admitResult) string {
	if res.held {
		return res.key
	}
	return ""
}

// startTransfer answers leg l's REFER 202 and places the call to target
// through trunk to; admKey is the transfer's cluster slot ("" none).
func (c *call) startTransfer(l *leg, tx *serverTx, target sip.Uri, to *trunkRec, route rewrites, admKey string) {
	req := tx.req
	o := c.other(l)
	x := &transfer{referrer: l, remaining: o, referCSeq: req.CSeq().SeqNo, target: target, to: to, route: route,
		notified: map[int]bool{}, admKey: admKey}
	x.leg = &leg{
		side: l.side, trunk: to, callID: newCallID(), localTag: newTag(),
		localURI: hideHost(o.remoteURI, c.snap.cfg.Node.FQDN), localName: o.remoteName,
		remoteURI: sip.Uri{Scheme: "sips", User: target.User, Host: target.Host}, inviteCSeq: 1,
	}
	x.leg.localURI.Scheme = x.leg.scheme()
	c.xfer = x
	res := newResponse(req, sip.StatusAccepted, "")
	res.AppendHeader(c.contactFor(l))
	c.respond(tx, res)
	c.log.Info().Str("event", "call_transfer").Str("referrer", l.side.String()).Str("to_trunk", to.name).
		Str("user", target.User).Msg("blind transfer: placing the call to the Refer-To target")
	c.notifyReferrer(100, false)
	x.timer = c.after(c.snap.cfg.SIP.AnswerTimeout, tTransfer, x)
	c.resolveFor(to, true)
}

// resolveFor resolves trunk t's targets in a helper goroutine; xfer says
// the result is for the transfer.
func (c *call) resolveFor(t *trunkRec, xfer bool) {
	u := t.uri
	res, ctx := c.b.resolver, c.ctx
	if !c.b.spawn(func() {
		targets, err := res.Resolve(ctx, u.Host, uint16(max(u.Port, 0)))
		c.post(event{kind: evResolved, targets: targets, err: err, xfer: xfer})
	}) && xfer {
		c.transferFailed(503, "shutting down")
	}
}

func (c *call) onXferResolved(ev event) {
	x := c.xfer
	if x == nil || x.done {
		return
	}
	if ev.err != nil {
		c.transferFailed(503, "transfer target did not resolve")
		return
	}
	for _, t := range ev.targets {
		if x.to.health.Interval > 0 && c.b.mon.down(x.to.name, t.Addr.String()) {
			continue
		}
		x.targets = append(x.targets, t)
	}
	x.targets = c.b.health.Order(x.targets)
	c.xferNext()
}

// xferNext tries the transfer's next target.
func (c *call) xferNext() {
	x := c.xfer
	if x.next >= len(x.targets) {
		c.transferFailed(503, "every transfer target failed")
		return
	}
	t := x.targets[x.next]
	x.next++
	at := &xferAttempt{target: t, addr: t.Addr.String(), sni: t.Host}
	if _, ok := tlsconf.ParseIPLiteral(at.sni); ok {
		at.sni = ""
	}
	x.at = at
	ctx, tp, identity := c.ctx, c.b.tp, x.to.identity
	if !c.b.spawn(func() {
		cn, err := tp.dial(ctx, at.addr, at.sni, identity)
		c.post(event{kind: evDialed, conn: cn, err: err, xfer: true, ref: at})
	}) {
		c.transferFailed(503, "shutting down")
	}
}

func (c *call) onXferDialed(ev event) {
	x := c.xfer
	at, _ := ev.ref.(*xferAttempt)
	if x == nil || x.done || at != x.at {
		return
	}
	if ev.err != nil {
		c.log.Info().Err(ev.err).Str("target", at.addr).Msg("transfer target unreachable")
		c.xferNext()
		return
	}
	at.conn = ev.conn
	l := x.leg
	u := x.to.uri
	ruri := sip.Uri{Scheme: l.scheme(), User: x.target.User, Host: u.Host, Port: u.Port}
	l.remoteTarget = ruri
	l.remoteTag, l.routeSet, l.conn = "", nil, at.conn
	l.localCSeq = 0
	req := c.request(l, sip.INVITE, 0, 70)
	req.RemoveHeader("Supported")
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	req.AppendHeader(sip.NewHeader("Referred-By", "<"+c.contactFor(x.referrer).Address.String()+">"))
	saveUser, saveHost := c.ruriUser, c.ruriHost
	savePlan := c.plan.route
	c.ruriUser, c.ruriHost = x.target.User, x.target.Host
	c.plan.route = x.route
	saveTo := c.plan.to
	c.plan.to = x.to
	c.applyRewrites(req, l)
	c.plan.to, c.plan.route, c.ruriUser, c.ruriHost = saveTo, savePlan, saveUser, saveHost
	at.req = req
	tx, err := c.sendReq(at.conn, req, at)
	if err != nil {
		c.xferNext()
		return
	}
	at.tx = tx
}

// onXferResponse handles the target's responses to the transfer INVITE.
func (c *call) onXferResponse(at *xferAttempt, res *sip.Response) {
	x := c.xfer
	if x == nil || x.done || at != x.at {
		if res.IsSuccess() {
			c.b.ackAndBye(at.conn, res)
		}
		return
	}
	code := res.StatusCode
	switch {
	case code == 100:
		at.ringing = true
	case code < 200:
		at.ringing = true
		if !x.notified[code] && (code == 180 || code == 183) {
			c.notifyReferrer(code, false)
		}
	case code < 300:
		c.xferAnswered(at, res)
	case code == 503:
		c.xferNext()
	default:
		c.transferFailed(code, fmt.Sprintf("transfer target answered %d", code))
	}
}

// xferAnswered: the target answered with its offer; the transferee is
// re-INVITEd with it, anchored on a new media session.
func (c *call) xferAnswered(at *xferAttempt, res *sip.Response) {
	x := c.xfer
	l := x.leg
	l.remoteTag = toTag(res)
	if ct := res.Contact(); ct != nil {
		l.remoteTarget = ct.Address
	}
	l.routeSet = routeSetOf(res, true)
	l.learnPeer(res)
	x.answer = res
	c.b.registerXfer(c, l.callID, l.localTag)
	body, _ := splitBody(res, c.snap.bodyAllow)
	if len(body.sdp) == 0 {
		c.ackLeg(l, res.CSeq().SeqNo, "", nil)
		c.bye(l)
		c.transferFailed(488, "transfer target answered without an offer")
		return
	}
	sides := [2]*trunkRec{}
	sides[x.remaining.side] = x.remaining.trunk
	sides[l.side] = x.to
	ms, err := c.b.media.NewSession(SessionParams{
		CallID: c.id, TrunkA: sides[SideA].name, TrunkB: sides[SideB].name,
		AllowPlainRTP: sides[SideA].allowPlain && sides[SideB].allowPlain,
		AdvertiseA:    sides[SideA].advertise, AdvertiseB: sides[SideB].advertise,
		SRTPA: sides[SideA].srtp, SRTPB: sides[SideB].srtp,
		OnTimeout: func() { c.post(event{kind: evMediaTimeout}) },
	})
	if err != nil {
		c.xferAbort(503, "no media session for the transfer")
		return
	}
	x.media = ms
	offer, err := ms.Offer(l.side, body.sdp)
	if err != nil {
		c.log.Info().Err(err).Msg("transfer target's offer refused")
		c.xferAbort(488, "transfer target's offer not acceptable")
		return
	}
	r := x.remaining
	ct, data := joinBody(offer, nil)
	req := c.request(r, sip.INVITE, 0, 70)
	setBody(req, ct, data)
	tx, err := c.sendReq(r.conn, req, &ownRequest{method: sip.INVITE, xfer: true})
	if err != nil {
		c.xferAbort(503, "transferee unreachable")
		return
	}
	r.lastSDP, r.lastCT = data, ct
	r.inviteOut = tx
	x.reinvite = tx
}

// onXferReinvite handles the transferee's answer to the re-INVITE that
// connects it to the target.
func (c *call) onXferReinvite(res *sip.Response) {
	x := c.xfer
	if x == nil || x.done {
		return
	}
	r, l := x.remaining, x.leg
	r.inviteOut, x.reinvite = nil, nil
	if !res.IsSuccess() {
		c.log.Info().Int("code", res.StatusCode).Msg("the transferee refused the transfer's re-INVITE")
		c.xferAbort(res.StatusCode, "the transferee refused the new media")
		return
	}
	if ct := res.Contact(); ct != nil {
		r.remoteTarget = ct.Address
	}
	body, _ := splitBody(res, c.snap.bodyAllow)
	answer, err := x.media.Answer(r.side, body.sdp)
	c.ackLeg(r, res.CSeq().SeqNo, "", nil)
	if err != nil {
		c.log.Info().Err(err).Msg("the transferee's answer refused")
		c.xferAbort(488, "the transferee's answer not acceptable")
		return
	}
	ct, data := joinBody(answer, nil)
	c.ackLeg(l, x.answer.CSeq().SeqNo, ct, data)
	c.xferSwap()
}

// xferSwap completes the transfer: the referrer's leg ends, the new leg
// takes its place, the new media session the old one's.
func (c *call) xferSwap() {
	x := c.xfer
	x.done = true
	c.stop(x.timer)
	c.notifyReferrer(200, true)
	old := x.referrer
	c.bye(old)
	c.b.unregister(old.callID, old.localTag)
	c.b.unregister(x.leg.callID, x.leg.localTag)
	c.b.register(c, x.leg.callID, x.leg.localTag, x.leg.side)
	if old.side == SideA {
		c.a = x.leg
	} else {
		c.bl = x.leg
	}
	c.track(x.leg.conn)
	c.b.planner.retrunk(c.plan, old.side, x.to)
	if x.admKey != "" {
		c.releaseShared(c.admKey)
		c.admKey, x.admKey = x.admKey, ""
	}
	if c.media != nil {
		if st := c.media.Close(); st != nil {
			c.oldMedia = append(c.oldMedia, st)
		}
	}
	c.media = x.media
	x.leg.oa, x.leg.agreed = oaStable, true
	c.setOA(x.remaining, oaStable)
	c.transfers++
	c.xfer = nil
	c.stateDirty = true
	c.publish()
	c.log.Info().Str("event", "call_transfer").Str("trunk_b", c.plan.to.name).Str("trunk_a", c.plan.from.name).
		Msg("blind transfer completed")
}

// xferAbort undoes a transfer whose target answered: the target's leg is
// ACKed and ended, its media session closed; the call goes on as before.
func (c *call) xferAbort(code int, why string) {
	x := c.xfer
	if x.answer != nil {
		c.ackLeg(x.leg, x.answer.CSeq().SeqNo, "", nil)
		c.bye(x.leg)
	}
	if x.media != nil {
		x.media.Close()
	}
	c.transferFailed(code, why)
}

// transferFailed ends a transfer that did not complete: the referrer is
// told, the call goes on.
func (c *call) transferFailed(code int, why string) {
	x := c.xfer
	if x == nil || x.done {
		return
	}
	x.done = true
	c.stop(x.timer)
	if at := x.at; at != nil && at.tx != nil && x.answer == nil {
		c.cancelXfer(at)
	}
	c.log.Info().Int("code", code).Str("why", why).Msg("blind transfer failed")
	c.notifyReferrer(code, true)
	c.releaseShared(x.admKey)
	x.admKey = ""
	c.xfer = nil
}

// cancelXfer cancels the transfer INVITE (once it rang).
func (c *call) cancelXfer(at *xferAttempt) {
	if at.cancelled || !at.ringing || at.req == nil {
		return
	}
	at.cancelled = true
	c.cancelAttempt(&attempt{req: at.req, conn: at.conn, ringing: true})
}

// notifyReferrer reports the transfer's progress to the referrer (RFC 3515
// §2.4.4): a NOTIFY with the status line as message/sipfrag.
func (c *call) notifyReferrer(code int, final bool) {
	x := c.xfer
	if x == nil {
		return
	}
	x.notified[code] = true
	l := x.referrer
	req := c.request(l, sip.NOTIFY, 0, 70)
	req.AppendHeader(sip.NewHeader("Event", fmt.Sprintf("refer;id=%d", x.referCSeq)))
	state := "active;expires=60"
	if final {
		state = "terminated;reason=noresource"
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(c.contactFor(l))
	setBody(req, "message/sipfrag;version=2.0", []byte(fmt.Sprintf("SIP/2.0 %d %s\r\n", code, reasonPhrase(code))))
	if _, err := c.sendReq(l.conn, req, &ownRequest{method: sip.NOTIFY}); err != nil {
		c.log.Debug().Err(err).Msg("transfer NOTIFY not sent")
	}
}

// endTransfer ends a transfer in progress when the call ends.
func (c *call) endTransfer() {
	x := c.xfer
	if x == nil {
		return
	}
	x.done = true
	if x.answer != nil {
		c.ackLeg(x.leg, x.answer.CSeq().SeqNo, "", nil)
		c.bye(x.leg)
	} else if x.at != nil {
		c.cancelXfer(x.at)
	}
	if x.media != nil {
		x.media.Close()
	}
	c.releaseShared(x.admKey)
	x.admKey = ""
	c.xfer = nil
}

// xferTimeout: the target did not answer within sip.answer_timeout.
func (c *call) xferTimeout(x *transfer) {
	if c.xfer != x || x.done {
		return
	}
	c.transferFailed(408, "transfer target did not answer")
}
