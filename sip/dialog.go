package sip

import (
	"context"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
)

// This file relays what happens inside a call: ACK, BYE, re-INVITE,
// UPDATE, INFO, PRACK, in-dialog OPTIONS and NOTIFY, from either leg to the
// other, and ends calls whose connection died.

// inDialogTimeout bounds a relayed in-dialog transaction (Timer F).
const inDialogTimeout = 32 * time.Second

func (b *B2BUA) onInDialog(req *sip.Request, tx sip.ServerTransaction) {
	r, ok := b.findDialog(req)
	if !ok {
		// RFC 3261 §12.2.2: no dialog matches.
		b.respondRefusal(req, tx, &refusal{sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", ""})
		return
	}
	c, from := r.c, r.l
	to := c.other(from)
	from.mu.Lock()
	if ct := req.Contact(); ct != nil && (req.IsInvite() || req.Method == sip.UPDATE) {
		from.remoteTarget = ct.Address // target refresh, RFC 3261 §12.2.2
	}
	from.mu.Unlock()

	if req.Method == sip.BYE {
		c.mu.Lock()
		answered := c.answered
		c.mu.Unlock()
		// Mark the end before answering: a peer that closes its connection
		// as soon as it has the 200 must not have its call recorded as a
		// lost connection.
		won := answered && c.setEnd(from.side.String(), "bye", 0)
		if err := b.respond(tx, b.response(req, from, sip.StatusOK, "OK")); err != nil {
			c.log.Debug().Err(err).Msg("respond to BYE failed")
		}
		c.log.Debug().Str("leg", from.side.String()).Msg("BYE received")
		if !answered {
			// BYE in an early dialog ends the call attempt.
			c.hangup("bye", from.side.String())
			return
		}
		if won {
			c.byeAndRelease(to)
		}
		return
	}
	c.relay(from, to, req, tx)
}

// relay forwards an in-dialog request from one leg to the other and its
// final response back.
func (c *call) relay(from, to *leg, req *sip.Request, tx sip.ServerTransaction) {
	b := c.b
	out := c.request(to, req.Method)
	copyAllowed(req, out, b.snap().allow)
	if req.Method == sip.PRACK {
		// RFC 3262 §7.2: RAck carries the CSeq of the INVITE of that leg.
		if h := req.GetHeader("RAck"); h != nil {
			if rseq, _, ok := parseRAck(h.Value()); ok {
				out.AppendHeader(sip.NewHeader("RAck", fmt.Sprintf("%d %d INVITE", rseq, to.inviteCSeq)))
			}
		}
	}
	body := req.Body()
	offer := false
	if isSDP(req) {
		var err error
		switch req.Method {
		case sip.INVITE, sip.UPDATE:
			offer = true
			body, err = c.media.Offer(from.side, body)
		case sip.PRACK:
			body, err = c.media.Answer(from.side, body)
		}
		if err != nil {
			c.log.Info().Err(err).Str("method", string(req.Method)).Msg("in-dialog SDP refused")
			b.respondRefusal(req, tx, &refusal{488, "Not Acceptable Here", warningText(err)})
			return
		}
	}
	setBody(out, body, contentType(req))

	ctx, cancel := context.WithTimeout(b.ctxOrBackground(), inDialogTimeout)
	defer cancel()
	res, err := c.send(ctx, to, out)
	if err != nil {
		c.log.Info().Err(err).Str("method", string(req.Method)).Str("to", to.side.String()).Msg("in-dialog request failed")
		code, reason := statusFor(err)
		if code == sip.StatusServiceUnavailable {
			// The other leg cannot be reached: the call cannot continue.
			b.respondRefusal(req, tx, &refusal{sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", "other leg unreachable"})
			b.goOwned(func() { c.finish("sbc", "other leg unreachable", from) })
			return
		}
		b.respondRefusal(req, tx, &refusal{code, reason, warningText(err)})
		return
	}
	if req.IsInvite() && res.IsSuccess() {
		to.mu.Lock()
		if ct := res.Contact(); ct != nil {
			to.remoteTarget = ct.Address
		}
		to.mu.Unlock()
		if len(out.Body()) == 0 {
			c.mu.Lock()
			c.pendingAck = &pendingAck{to: to, cseq: out.CSeq().SeqNo}
			c.mu.Unlock()
		} else {
			c.sendAck(to, out.CSeq().SeqNo, nil)
		}
	}
	resBody := res.Body()
	if isSDP(res) && (req.IsInvite() || req.Method == sip.UPDATE) && res.IsSuccess() {
		var err error
		if offer {
			resBody, err = c.media.Answer(to.side, resBody)
		} else {
			resBody, err = c.media.Offer(to.side, resBody)
		}
		if err != nil {
			c.log.Warn().Err(err).Msg("in-dialog SDP answer refused")
			resBody = nil
		}
	}
	outRes := b.relayResponse(req, from, res, resBody)
	if err := b.respond(tx, outRes); err != nil {
		c.log.Debug().Err(err).Msg("relay in-dialog response failed")
	}
	if res.IsSuccess() && (req.IsInvite() || req.Method == sip.UPDATE) {
		c.refreshSession(outRes)
	}
	if res.StatusCode == sip.StatusCallTransactionDoesNotExists || res.StatusCode == sip.StatusRequestTimeout {
		// RFC 5057: the dialog is gone on the far side.
		if req.Method != sip.OPTIONS && req.Method != sip.INFO {
			b.goOwned(func() { c.finish(to.side.String(), fmt.Sprintf("%d on %s", res.StatusCode, req.Method), from) })
		}
	}
}

// onAck handles an ACK for a 2xx (a transaction of its own). It completes
// a late-offer exchange toward the other leg, or is absorbed: the SBC has
// already acknowledged the other leg's 2xx itself.
func (b *B2BUA) onAck(req *sip.Request, tx sip.ServerTransaction) {
	r, ok := b.findDialog(req)
	if !ok {
		b.log.Debug().Str("call_id", callID(req)).Msg("stray ACK dropped")
		return
	}
	c, from := r.c, r.l
	c.mu.Lock()
	p := c.pendingAck
	if p != nil && p.to != from {
		c.pendingAck = nil
	} else {
		p = nil
	}
	c.mu.Unlock()
	if p == nil {
		return
	}
	body := req.Body()
	if isSDP(req) {
		var err error
		if body, err = c.media.Answer(from.side, body); err != nil {
			c.log.Warn().Err(err).Msg("SDP in ACK refused: ending call")
			c.sendAck(p.to, p.cseq, nil)
			b.goOwned(func() { c.finish("sbc", "unacceptable SDP in ACK", c.a, c.bl) })
			return
		}
	}
	c.sendAck(p.to, p.cseq, body)
}

// onCancel answers a CANCEL that matched no INVITE transaction (sipgo
// handles the ones that do: 200 for the CANCEL, 487 for the INVITE).
func (b *B2BUA) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	b.respondRefusal(req, tx, &refusal{sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", ""})
}

// onOptions answers an out-of-dialog OPTIONS locally: it is a keepalive
// ping, never a call and never relayed. In-dialog OPTIONS are relayed.
func (b *B2BUA) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil {
		if _, ok := to.Params.Get("tag"); ok {
			b.onInDialog(req, tx)
			return
		}
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	if to := res.To(); to != nil {
		to.Params.Add("tag", newTag())
	}
	res.AppendHeader(sip.NewHeader("Allow", methodsAllowed))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	res.AppendHeader(sip.NewHeader("Supported", "timer, 100rel"))
	res.AppendHeader(b.contact())
	if err := b.respond(tx, res); err != nil {
		b.log.Debug().Err(err).Msg("OPTIONS response failed")
	}
}

// onNotAllowed answers methods the SBC does not serve (REGISTER, MESSAGE,
// SUBSCRIBE, PUBLISH, REFER, ...) with 405 and Allow.
func (b *B2BUA) onNotAllowed(req *sip.Request, tx sip.ServerTransaction) {
	if req.IsAck() {
		return
	}
	b.respondRefusal(req, tx, &refusal{sip.StatusMethodNotAllowed, "Method Not Allowed", ""})
}

// connectionEnded ends the calls that depended on a connection that died.
func (b *B2BUA) connectionEnded(remote string) {
	b.mu.Lock()
	var hit []*call
	for c := range b.calls {
		if c.uses(remote) {
			hit = append(hit, c)
		}
	}
	b.mu.Unlock()
	for _, c := range hit {
		b.goOwned(func() {
			c.mu.Lock()
			answered, ended := c.answered, c.ended
			c.mu.Unlock()
			if ended {
				return // already being torn down (e.g. the BYE that preceded the close)
			}
			if c.a.conn == remote {
				if !answered {
					c.hangup("caller connection lost", "a")
					return
				}
				c.log.Info().Str("remote", remote).Msg("caller's TLS connection lost: ending call")
				c.finish("a", "connection lost", c.bl)
				return
			}
			if answered {
				c.log.Info().Str("remote", remote).Msg("callee's TLS connection lost: ending call")
				// The callee may still be reachable on a new connection.
				c.finish("b", "connection lost", c.a, c.bl)
			}
		})
	}
}

// uses reports whether either leg of the call runs over the connection to
// remote.
func (c *call) uses(remote string) bool {
	return c.a.conn == remote || c.bl.connAddr() == remote
}

func (l *leg) connAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn
}
