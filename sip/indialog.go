package sip

import (
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
)

// This file relays what happens inside a call: BYE, re-INVITE, UPDATE,
// PRACK, INFO, in-dialog OPTIONS and NOTIFY, from either leg to the other,
// with the offer/answer bookkeeping of each leg: an offer rejected by the
// other side (488, 491, 500, a timeout) rolls the media back to the last
// agreed answer, and glare (both sides offering at once) gets 491 (RFC
// 3261 §14.1, RFC 3311 §5.2). ACKs of the SBC's own 2xx end here too.

// T1 and T2 of RFC 3261 (2xx retransmission toward a peer that has not
// ACKed yet, §13.3.1.4).
const (
	timerT1 = 500 * time.Millisecond
	timerT2 = 4 * time.Second
)

// relay is an in-dialog request passed from one leg to the other.
type relay struct {
	in       *serverTx // the request as received
	from, to *leg
	method   sip.RequestMethod
	offer    bool  // it carried an offer from `from`
	fork     *fork // the early dialog it went to or came from (nil once confirmed)
}

// stageRelayedOffer stages the offer a relayed re-INVITE or UPDATE carries
// from rel.from and returns the SDP for rel.to; when the relay refuses it,
// the request is answered here and ok is false.
func (c *call) stageRelayedOffer(rel *relay, offer []byte) (sdp []byte, ok bool) {
	out, err := c.media.Offer(rel.from.side, offer)
	if err != nil {
		what := string(rel.method)
		if rel.method == sip.INVITE {
			what = "re-INVITE"
		}
		c.log.Info().Err(err).Str("leg", rel.from.side.String()).Msg(what + " offer refused")
		c.respond(rel.in, c.b.refusalResponse(rel.in.req, statusFor(err), "", c.id))
		return nil, false
	}
	c.setOA(rel.from, oaOfferRecv)
	c.setOA(rel.to, oaOfferSent)
	rel.offer = true
	return out, true
}

// ownRequest is a request the SBC sends on its own behalf (PRACK, a
// session refresh).
type ownRequest struct {
	method  sip.RequestMethod
	refresh bool
	xfer    bool // the re-INVITE that connects the transferee to a transfer target
}

// pending2xx is a 2xx the SBC sent for an INVITE, awaiting its ACK.
type pending2xx struct {
	res      *sip.Response
	conn     *conn
	cseq     uint32
	interval time.Duration
	retrans  *callTimer
	wait     *callTimer
}

// owedAck is an ACK the SBC owes a leg for its 2xx: it waits for the
// answer the other leg's ACK brings (the offer was in the 2xx).
type owedAck struct {
	cseq uint32
}

func (c *call) other(l *leg) *leg {
	if l == c.a {
		return c.bl
	}
	return c.a
}

// legByCallID returns the leg with SIP Call-ID id (nil: none).
func (c *call) legByCallID(id string) *leg {
	for _, l := range []*leg{c.a, c.bl} {
		if l.callID == id {
			return l
		}
	}
	return nil
}

func (c *call) legOf(s Side) *leg {
	if s == SideA {
		return c.a
	}
	return c.bl
}

// onRequest handles a request inside one of the call's dialogs.
func (c *call) onRequest(ev event) {
	req, tx := ev.req, ev.stx
	c.stxs[tx] = struct{}{}
	l := c.legOf(ev.side)
	var f *fork
	switch {
	case ev.side == SideA && c.inSetup():
		if f = c.forkByTagA(ev.tagA); f == nil && req.Method != sip.BYE {
			c.b.reject(tx, refuseNoDialog, "", c.id)
			delete(c.stxs, tx)
			return
		}
	case ev.side == SideA:
		if ev.tagA != c.a.localTag {
			c.b.reject(tx, refuseNoDialog, "", c.id)
			delete(c.stxs, tx)
			return
		}
	case c.winner != nil:
		if fromTag(req) != c.winner.tagB {
			c.b.reject(tx, refuseNoDialog, "", c.id)
			delete(c.stxs, tx)
			return
		}
	default:
		for _, o := range c.forks {
			if o.tagB == fromTag(req) {
				f = o
			}
		}
		if f == nil {
			c.b.reject(tx, refuseNoDialog, "", c.id)
			delete(c.stxs, tx)
			return
		}
	}
	if !c.fromPeer(l, f, ev.conn) && !c.takenOverPeer(l, ev.conn) {
		c.log.Warn().Str("remote", ev.conn.remote).Str("leg", l.side.String()).Str("method", string(req.Method)).
			Msg("in-dialog request from a connection that is not the leg's peer: refused")
		c.respond(tx, c.b.refusalResponse(req, refuseNotParty, "", c.id))
		return
	}
	c.adoptConn(l, ev.conn)
	if cs := req.CSeq().SeqNo; l.remoteCSeq != 0 && cs < l.remoteCSeq {
		c.respond(tx, c.b.refusalResponse(req, refuseCSeqOrder, "", c.id))
		return
	} else if cs > l.remoteCSeq {
		l.remoteCSeq = cs
	}
	switch req.Method {
	case sip.BYE:
		c.onBye(l, tx)
	case sip.INVITE:
		c.onReInvite(l, tx)
	case sip.UPDATE:
		c.onUpdate(l, f, tx)
	case sip.PRACK:
		c.onPrack(l, f, tx)
	case sip.INFO, sip.NOTIFY, sip.OPTIONS:
		c.relayRequest(l, f, tx, false)
	case sip.REFER:
		c.onRefer(l, tx)
	default:
		c.respond(tx, c.b.refusalResponse(req, refuseNotAllowed, "", ""))
	}
}

// fromPeer reports whether a request on leg l may come over cn: the leg's
// own connection, or another one from the same trunk that proved the
// trunk's identity.
func (c *call) fromPeer(l *leg, f *fork, cn *conn) bool {
	own := l.conn
	if l.side == SideB && f != nil {
		own = f.att.conn
	}
	if cn == own {
		return true
	}
	if cn.unauth != "" && !cn.verified {
		return false
	}
	return l.trunk.identity != "" && cn.verified && cn.hasIdentity(l.trunk.identity)
}

// onBye ends the call from leg l's side.
func (c *call) onBye(l *leg, tx *serverTx) {
	c.respond(tx, newResponse(tx.req, sip.StatusOK, ""))
	if l.inviteIn != nil {
		c.respond(l.inviteIn, c.b.refusalResponse(l.inviteIn.req, refuseTerminated, "", ""))
		l.inviteIn = nil
	}
	c.log.Debug().Str("leg", l.side.String()).Msg("BYE received")
	if c.inSetup() {
		if l.side == SideA {
			c.cancelled = true
			c.terminate("a", "bye", 487)
			return
		}
		c.log.Info().Msg("the callee ended its early dialog")
		c.failSetup(refuseFarSideGone, "callee BYE before answer")
		return
	}
	c.terminate(l.side.String(), "bye", 0)
}

// onReInvite relays a re-INVITE (target refresh, hold, a new offer, or an
// offer solicited by an INVITE without SDP).
func (c *call) onReInvite(l *leg, tx *serverTx) {
	req := tx.req
	o := c.other(l)
	switch {
	case c.state != stConfirmed:
		c.respond(tx, c.b.refusalResponse(req, refuseGlare, "", ""))
		return
	case l.inviteIn != nil:
		// RFC 3261 §14.2: an INVITE while an earlier one is unanswered.
		c.respond(tx, c.b.refusalResponse(req, refusePending, "", ""))
		return
	case o.inviteIn != nil || l.inviteOut != nil || l.updateOut != nil || o.updateIn != nil ||
		l.pendingOffer() || o.pendingOffer() || l.awaitAck != nil || o.awaitAck != nil:
		// Glare: the other side (or the SBC) has an offer in progress.
		c.log.Info().Str("leg", l.side.String()).Msg("re-INVITE glare: 491")
		c.respond(tx, c.b.refusalResponse(req, refuseGlare, "", ""))
		return
	}
	mf, ok := maxForwardsOf(req)
	if !ok {
		c.respond(tx, c.b.refusalResponse(req, refuseTooManyHops, "", ""))
		return
	}
	if ct := req.Contact(); ct != nil {
		l.remoteTarget = ct.Address // target refresh, RFC 3261 §12.2.2
	}
	l.learnPeer(req)
	body, err := splitBody(req, c.snap.bodyAllow)
	if err != nil {
		c.respond(tx, c.b.refusalResponse(req, refuseBadBody, "", c.id))
		return
	}
	rel := &relay{in: tx, from: l, to: o, method: sip.INVITE}
	var sdp []byte
	if len(body.sdp) > 0 {
		if r := c.checkStreams(body.sdp); r != nil {
			c.respond(tx, c.b.refusalResponse(req, *r, "", c.id))
			return
		}
		if sdp, ok = c.stageRelayedOffer(rel, body.sdp); !ok {
			return
		}
	}
	out := c.request(o, sip.INVITE, 0, mf)
	copyAllowed(req, out, c.snap.allow, c.trusted(l))
	ct, data := joinBody(sdp, body.parts)
	setBody(out, ct, data)
	if len(sdp) > 0 {
		o.lastSDP, o.lastCT = data, ct
	}
	otx, err := c.sendReq(o.conn, out, rel)
	if err != nil {
		c.relayFailed(rel, err)
		return
	}
	l.inviteIn, o.inviteOut = tx, otx
}

// onUpdate relays an UPDATE (RFC 3311): in an early dialog or a confirmed
// one, with or without an offer.
func (c *call) onUpdate(l *leg, f *fork, tx *serverTx) {
	req := tx.req
	o := c.other(l)
	body, err := splitBody(req, c.snap.bodyAllow)
	if err != nil {
		c.respond(tx, c.b.refusalResponse(req, refuseBadBody, "", c.id))
		return
	}
	if len(body.sdp) > 0 {
		switch {
		case l.oa == oaOfferRecv || l.updateIn != nil:
			// RFC 3311 §5.2: an offer while ours to it is unanswered: 500.
			c.respond(tx, c.b.refusalResponse(req, refusePending, "", ""))
			return
		case l.pendingOffer() || o.pendingOffer() || l.inviteOut != nil || l.updateOut != nil || o.inviteIn != nil || o.updateIn != nil:
			c.respond(tx, c.b.refusalResponse(req, refuseGlare, "", ""))
			return
		case l.oa == oaEarly || o.oa == oaEarly || (c.inSetup() && !l.agreed):
			// An offer before the first exchange completed reliably.
			c.respond(tx, c.b.refusalResponse(req, refusePending, "", ""))
			return
		}
		if r := c.checkStreams(body.sdp); r != nil {
			c.respond(tx, c.b.refusalResponse(req, *r, "", c.id))
			return
		}
	}
	c.relayRequest(l, f, tx, len(body.sdp) > 0)
}

// onPrack handles the caller's PRACK of a reliable provisional response
// the SBC sent it (the SBC PRACKs the callee itself, RFC 3262).
func (c *call) onPrack(l *leg, f *fork, tx *serverTx) {
	req := tx.req
	if l.side != SideA || f == nil || f.relA == nil {
		c.respond(tx, c.b.refusalResponse(req, refuseNoDialog, "", ""))
		return
	}
	rseq, _, _, ok := parseRAck(headerValue(req, "RAck"))
	if !ok || rseq != f.rseqA {
		c.respond(tx, c.b.refusalResponse(req, refuseNoDialog, "", ""))
		return
	}
	f.relA = nil
	c.stop(f.prackTimer)
	f.prackTimer = nil
	body, _ := splitBody(req, c.snap.bodyAllow)
	res := newResponse(req, sip.StatusOK, f.tagA)
	if f.prackB != 0 {
		// The callee offered in its reliable 18x: the caller's answer is
		// here, and goes to the callee in our PRACK.
		var ct string
		var data []byte
		if len(body.sdp) > 0 && c.a.oa == oaOfferSent {
			out, err := c.media.Answer(SideA, body.sdp)
			if err != nil {
				c.log.Warn().Err(err).Msg("answer in PRACK refused")
				c.respond(tx, c.b.refusalResponse(req, statusFor(err), "", c.id))
				c.failSetup(statusFor(err), "unacceptable answer in PRACK")
				return
			}
			c.setOA(c.a, oaStable)
			c.setOA(c.bl, oaStable)
			ct, data = joinBody(out, body.parts)
		}
		rseq := f.prackB
		f.prackB = 0
		c.prackB(f, rseq, ct, data)
	}
	c.respond(tx, res)
	c.nextReliable(f)
}

// relayRequest passes an in-dialog request from leg l to the other leg
// (in an early dialog, to fork f's).
func (c *call) relayRequest(l *leg, f *fork, tx *serverTx, offer bool) {
	req := tx.req
	o := c.other(l)
	mf, ok := maxForwardsOf(req)
	if !ok {
		c.respond(tx, c.b.refusalResponse(req, refuseTooManyHops, "", ""))
		return
	}
	if req.Method == sip.UPDATE {
		if ct := req.Contact(); ct != nil {
			l.remoteTarget = ct.Address
		}
	}
	body, err := splitBody(req, c.snap.bodyAllow)
	if err != nil {
		c.respond(tx, c.b.refusalResponse(req, refuseBadBody, "", c.id))
		return
	}
	rel := &relay{in: tx, from: l, to: o, method: req.Method, fork: f}
	var sdp []byte
	if offer {
		if sdp, ok = c.stageRelayedOffer(rel, body.sdp); !ok {
			return
		}
	}
	restore := c.pointAt(o, f)
	out := c.request(o, req.Method, 0, mf)
	restore()
	copyAllowed(req, out, c.snap.allow, c.trusted(l))
	ct, data := joinBody(sdp, body.parts)
	if !isSDP(req) && !isMultipart(req) && len(req.Body()) > 0 && len(body.parts) == 0 && req.Method != sip.UPDATE {
		// INFO, NOTIFY, OPTIONS bodies (DTMF relay, video fast update,
		// event state) cross as they are.
		ct, data = contentType(req), req.Body()
	}
	setBody(out, ct, data)
	if offer {
		o.lastSDP, o.lastCT = data, ct
	}
	cn := o.conn
	if o.side == SideB && f != nil {
		cn = f.att.conn
	}
	otx, err := c.sendReq(cn, out, rel)
	if err != nil {
		c.relayFailed(rel, err)
		return
	}
	if offer {
		l.updateIn, o.updateOut = tx, otx
	}
}

// pointAt points leg o at early dialog f for one request; the returned
// func restores it.
func (c *call) pointAt(o *leg, f *fork) func() {
	if f == nil || c.winner != nil {
		return func() {}
	}
	if o.side == SideB {
		c.useFork(f)
		return func() {}
	}
	tag := o.localTag
	o.localTag = f.tagA
	return func() { o.localTag = tag }
}

// trusted reports whether identity headers from leg l may cross.
func (c *call) trusted(l *leg) bool {
	if l.side == SideA {
		return c.plan.trusted
	}
	return c.plan.to.trusted
}

// onRelayResponse relays the final response of the other leg back.
func (c *call) onRelayResponse(rel *relay, res *sip.Response) {
	if res.StatusCode < 200 {
		return // provisional responses to in-dialog requests stay here
	}
	l, o := rel.from, rel.to
	switch rel.method {
	case sip.INVITE:
		o.inviteOut = nil
		l.inviteIn = nil
	case sip.UPDATE:
		if rel.offer {
			o.updateOut, l.updateIn = nil, nil
		}
	}
	if c.state == stTerminated || rel.in.isFinal() {
		return
	}
	if !res.IsSuccess() {
		c.relayRejected(rel, res)
		return
	}
	o.learnPeer(res)
	if (rel.method == sip.INVITE || rel.method == sip.UPDATE) && res.Contact() != nil {
		o.remoteTarget = res.Contact().Address
	}
	body, _ := splitBody(res, c.snap.bodyAllow)
	var sdp []byte
	ackNow := rel.method == sip.INVITE
	switch {
	case rel.offer && len(body.sdp) > 0:
		out, err := c.media.Answer(o.side, body.sdp)
		if err != nil {
			c.log.Warn().Err(err).Str("method", string(rel.method)).Msg("answer refused: ending call")
			c.media.Reject(l.side)
			if rel.method == sip.INVITE {
				c.ackLeg(o, res.CSeq().SeqNo, "", nil)
			}
			c.respond(rel.in, c.b.refusalResponse(rel.in.req, statusFor(err), "", c.id))
			c.terminate("sbc", "unacceptable answer", 0)
			return
		}
		c.setOA(l, oaStable)
		c.setOA(o, oaStable)
		sdp = out
	case rel.offer:
		// An answer missing from the 2xx: the offer failed.
		c.media.Reject(l.side)
		c.setOA(l, stableOrNone(l))
		c.setOA(o, stableOrNone(o))
	case rel.method == sip.INVITE && len(body.sdp) > 0:
		// A re-INVITE without SDP: the offer is in the 2xx, the answer
		// comes in the ACK.
		out, err := c.media.Offer(o.side, body.sdp)
		if err != nil {
			c.log.Warn().Err(err).Msg("offer in 2xx refused: ending call")
			c.ackLeg(o, res.CSeq().SeqNo, "", nil)
			c.respond(rel.in, c.b.refusalResponse(rel.in.req, statusFor(err), "", c.id))
			c.terminate("sbc", "unacceptable offer", 0)
			return
		}
		c.setOA(o, oaOfferRecv)
		c.setOA(l, oaOfferSent)
		o.owedAck = &owedAck{cseq: res.CSeq().SeqNo}
		ackNow = false
		sdp = out
	}
	if ackNow {
		c.ackLeg(o, res.CSeq().SeqNo, "", nil)
	}
	tag := ""
	if l.side == SideA {
		tag = c.a.localTag
		if rel.fork != nil {
			tag = rel.fork.tagA
		}
	}
	out := newResponse(rel.in.req, res.StatusCode, tag)
	if rel.method == sip.INVITE || rel.method == sip.UPDATE {
		out.AppendHeader(c.contactFor(l))
		out.AppendHeader(sip.NewHeader("Allow", allowFor(l)))
		out.AppendHeader(sip.NewHeader("Supported", optionTags))
	}
	copyAllowed(res, out, c.snap.allow, c.trusted(o))
	ct, data := joinBody(sdp, body.parts)
	if !isSDP(res) && !isMultipart(res) && len(res.Body()) > 0 && rel.method != sip.INVITE && rel.method != sip.UPDATE {
		ct, data = contentType(res), res.Body()
	}
	setBody(out, ct, data)
	if len(sdp) > 0 {
		l.lastSDP, l.lastCT = data, ct
	}
	c.sessionRefreshed(res, out, rel.method)
	c.respond(rel.in, out)
	if rel.method == sip.INVITE {
		c.awaitAck(l, out)
	}
}

func stableOrNone(l *leg) oaState {
	if l.agreed {
		return oaStable
	}
	return oaNone
}

// relayRejected relays a non-2xx final response to a relayed request and
// rolls the offer back. Responses that mean the dialog is gone (RFC 5057
// §5.1) end the call.
func (c *call) relayRejected(rel *relay, res *sip.Response) {
	l, o := rel.from, rel.to
	if rel.offer {
		c.media.Reject(l.side)
		c.setOA(l, stableOrNone(l))
		c.setOA(o, stableOrNone(o))
		c.log.Info().Int("code", res.StatusCode).Str("method", string(rel.method)).Msg("re-offer rejected: media rolled back")
	}
	code := res.StatusCode
	if code == 401 || code == 407 {
		code = sip.StatusForbidden
	}
	out := newResponse(rel.in.req, code, "")
	copyAllowed(res, out, c.snap.allow, c.trusted(o))
	if ra := retryAfter(res); ra > 0 {
		out.AppendHeader(sip.NewHeader("Retry-After", fmt.Sprint(int(ra/time.Second))))
	}
	c.respond(rel.in, out)
	if dialogGone(code) && rel.method != sip.OPTIONS {
		c.terminate(o.side.String(), fmt.Sprintf("%d to %s", code, rel.method), 0)
	}
}

// relayFailed answers a relayed request whose transaction failed (no
// response in time, or the other leg's connection is gone).
func (c *call) relayFailed(rel *relay, err error) {
	l, o := rel.from, rel.to
	switch rel.method {
	case sip.INVITE:
		o.inviteOut, l.inviteIn = nil, nil
	case sip.UPDATE:
		if rel.offer {
			o.updateOut, l.updateIn = nil, nil
		}
	}
	if rel.offer {
		c.media.Reject(l.side)
		c.setOA(l, stableOrNone(l))
		c.setOA(o, stableOrNone(o))
	}
	c.log.Info().Err(err).Str("method", string(rel.method)).Str("to", o.side.String()).Msg("in-dialog request failed")
	if rel.in.isFinal() {
		return
	}
	r := refuseTimedOut
	if rel.method != sip.INVITE && rel.method != sip.UPDATE {
		r = refuseRequestTimeout
	}
	c.respond(rel.in, c.b.refusalResponse(rel.in.req, r, "", c.id))
}

// dialogGone reports the responses after which the dialog no longer
// exists at the far end (RFC 5057 §5.1).
func dialogGone(code int) bool {
	switch code {
	case 404, 410, 416, 481, 482, 483, 484, 485, 502, 604:
		return true
	}
	return false
}

// onTxFailed handles a client transaction that got no final response.
func (c *call) onTxFailed(ev event) {
	delete(c.ctxs, ev.ctx)
	err := ErrTxTimeout
	if ev.kind == evTxError {
		err = ErrConnClosed
	}
	switch ref := ev.ctx.ref.(type) {
	case *attempt:
		ref.done = true
		c.stop(ref.prov)
		if ref.abandoned || ref.cancelled || c.ended || ref != c.active || !c.inSetup() {
			c.maybeRelease()
			return
		}
		if !ref.heard {
			c.targetFailed(ref, err.Error(), "unreachable")
			c.tryNext()
			return
		}
		c.failSetup(refuseFarSideGone, "target lost during setup")
	case *relay:
		c.relayFailed(ref, err)
	case *ownRequest:
		if ref.refresh {
			c.refreshFailed(0, err)
		}
		if ref.xfer && c.xfer != nil {
			c.xfer.remaining.inviteOut, c.xfer.reinvite = nil, nil
			c.xferAbort(500, "the transferee did not answer the re-INVITE")
		}
	case *xferAttempt:
		if x := c.xfer; x != nil && x.at == ref && !x.done {
			if ref.ringing {
				c.transferFailed(503, "transfer target lost")
			} else {
				c.xferNext()
			}
		}
	}
}

// onAck handles the ACK of a 2xx the SBC sent on leg side.
func (c *call) onAck(ev event) {
	l := c.legOf(ev.side)
	p := l.awaitAck
	if p == nil || ev.req.CSeq().SeqNo != p.cseq {
		return // a retransmitted or stray ACK
	}
	c.stopAwaitAck(l)
	if c.state == stConnecting && l == c.a {
		c.setState(stConfirmed)
	}
	o := c.other(l)
	if o.owedAck != nil {
		body, _ := splitBody(ev.req, c.snap.bodyAllow)
		switch {
		case len(body.sdp) > 0 && l.oa == oaOfferSent:
			out, err := c.media.Answer(l.side, body.sdp)
			if err != nil {
				c.log.Warn().Err(err).Msg("answer in ACK refused: ending call")
				c.flushOwedAck(o)
				c.terminate("sbc", "unacceptable answer in ACK", 0)
				return
			}
			c.setOA(l, oaStable)
			c.setOA(o, oaStable)
			ct, data := joinBody(out, body.parts)
			cseq := o.owedAck.cseq
			o.owedAck = nil
			c.ackLeg(o, cseq, ct, data)
		case l.oa == oaOfferSent:
			c.log.Warn().Msg("ACK without the answer to our offer: ending call")
			c.media.Reject(o.side)
			c.flushOwedAck(o)
			c.terminate("sbc", "no answer in ACK", 0)
			return
		default:
			c.flushOwedAck(o)
		}
	}
	if c.byeAfterAck && l == c.a {
		c.byeAfterAck = false
		c.bye(c.a)
		c.maybeRelease()
	}
}

// awaitAck starts the 2xx retransmission toward leg l until its ACK
// (RFC 3261 §13.3.1.4).
func (c *call) awaitAck(l *leg, res *sip.Response) {
	c.stopAwaitAck(l)
	p := &pending2xx{res: res, conn: l.conn, cseq: res.CSeq().SeqNo, interval: timerT1}
	p.retrans = c.after(p.interval, tRetransmit2xx, l)
	p.wait = c.after(timerTx, tAckWait, l)
	l.awaitAck = p
}

func (c *call) stopAwaitAck(l *leg) {
	if p := l.awaitAck; p != nil {
		c.stop(p.retrans)
		c.stop(p.wait)
		l.awaitAck = nil
	}
}

func (c *call) retransmit2xx(l *leg) {
	p := l.awaitAck
	if p == nil || p.conn == nil {
		return
	}
	_ = p.conn.send(p.res)
	p.interval = min(2*p.interval, timerT2)
	p.retrans = c.after(p.interval, tRetransmit2xx, l)
}

// ackTimeout: no ACK for a 2xx within 64*T1: the session ends (RFC 3261
// §13.3.1.4).
func (c *call) ackTimeout(l *leg) {
	c.stopAwaitAck(l)
	if c.byeAfterAck && l == c.a {
		c.byeAfterAck = false
		c.maybeRelease()
		return
	}
	c.log.Info().Str("leg", l.side.String()).Msg("no ACK for our 2xx: ending call")
	c.flushOwedAck(c.other(l))
	if c.state == stConnecting && l == c.a {
		c.setState(stConfirmed) // the dialog is confirmed, the session ends (BYE)
	}
	c.terminate("sbc", "no ACK", 0)
}

// flushOwedAck sends the ACK still owed to leg l, without an answer.
func (c *call) flushOwedAck(l *leg) {
	if l.owedAck == nil {
		return
	}
	cseq := l.owedAck.cseq
	l.owedAck = nil
	c.ackLeg(l, cseq, "", nil)
}

// checkStreams refuses an SDP with more m-lines than limits.max_media_streams.
func (c *call) checkStreams(sdp []byte) *refusal {
	if max := c.snap.cfg.Limits.MaxMediaStreams; max > 0 && countMLines(sdp) > max {
		return &refuseTooManyStreams
	}
	return nil
}

func headerValue(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// onCancel ends the call attempt the caller cancelled (the CANCEL itself
// was answered 200 by the dispatcher): 487 to the INVITE, CANCEL toward
// the targets. A CANCEL that crossed our 2xx has no effect.
func (c *call) onCancel() {
	if !c.inSetup() || c.ended {
		return
	}
	c.cancelled = true
	c.log.Info().Msg("caller cancelled")
	c.terminate("a", "cancelled", 487)
}
