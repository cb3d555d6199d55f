package sip

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/dnsresolve"
)

// This file is where a route is carried out: the callee's leg (B) is
// originated toward the trunk's RFC 3263 targets, in order, failing over
// to the next target when one does not answer.

// attempt is the outcome of trying one target.
type attempt int

const (
	attemptDone     attempt = iota // the caller got a final response
	attemptFailover                // try the next target
	attemptStop                    // cancelled or timed out; nothing more to do
)

func (c *call) originate(reqA *sip.Request, txA sip.ServerTransaction, dest *config.Trunk) {
	b := c.b
	ctx, cancel := context.WithTimeout(b.ctxOrBackground(), b.conf().SIP.AnswerTimeout)
	defer cancel()
	c.mu.Lock()
	c.cancelB = cancel
	c.mu.Unlock()
	if !txA.OnCancel(func(*sip.Request) {
		// sipgo has answered the CANCEL with 200 and the INVITE with 487.
		c.setEnd("a", "cancelled", sip.StatusRequestTerminated)
		cancel()
	}) {
		c.setEnd("a", "cancelled", sip.StatusRequestTerminated)
		c.release()
		return
	}

	var offer []byte
	if isSDP(reqA) {
		var err error
		if offer, err = c.media.Offer(SideA, reqA.Body()); err != nil {
			c.failSetup(reqA, txA, err)
			return
		}
	}

	u, err := config.ParseTrunkURI(dest.URI)
	if err != nil {
		c.failSetup(reqA, txA, err)
		return
	}
	targets, err := b.resolver.Resolve(ctx, u.Host, uint16(max(u.Port, 0)))
	if err != nil {
		b.metrics.DNSLookups.WithLabelValues("error").Inc()
		c.failSetup(reqA, txA, fmt.Errorf("%w: %s: %w", ErrResolve, u.Host, err))
		return
	}
	b.metrics.DNSLookups.WithLabelValues("ok").Inc()
	targets = b.health.Order(targets)

	var causes []string
	for i, t := range targets {
		if ctx.Err() != nil {
			break
		}
		addr := t.Addr.String()
		sni := t.Host
		if _, err := netip.ParseAddr(sni); err == nil {
			sni = ""
		}
		if err := b.tp.dial(ctx, addr, sni, dest.Identity); err != nil {
			if ctx.Err() != nil {
				break
			}
			causes = append(causes, fmt.Sprintf("%s: %v", addr, err))
			b.health.MarkDown(t.Addr, err.Error())
			b.metrics.Failovers.WithLabelValues("unreachable").Inc()
			c.log.Warn().Err(err).Str("target", addr).Str("host", t.Host).Int("try", i+1).Msg("failover: target not reachable")
			continue
		}
		reqB := c.buildInvite(reqA, dest, u, addr, sni, offer)
		res, why := c.tryTarget(ctx, reqA, txA, reqB, t)
		switch res {
		case attemptDone:
			b.health.MarkUp(t.Addr)
			c.mu.Lock()
			answered := c.answered
			c.mu.Unlock()
			if !answered {
				c.release() // the caller got a final error response
			}
			return
		case attemptStop:
			c.stopped(reqA, txA)
			return
		case attemptFailover:
			b.metrics.Failovers.WithLabelValues("no_answer_or_503").Inc()
			if !b.health.IsDown(t.Addr) {
				b.health.MarkDown(t.Addr, why)
			}
			causes = append(causes, fmt.Sprintf("%s: %s", addr, why))
			c.log.Warn().Str("target", addr).Str("host", t.Host).Str("cause", why).Int("try", i+1).Msg("failover: next target")
		}
	}
	if ctx.Err() != nil {
		c.stopped(reqA, txA)
		return
	}
	err = fmt.Errorf("%w: %s", ErrAllTargets, strings.Join(causes, "; "))
	if len(targets) == 0 {
		err = fmt.Errorf("%w: %s", dnsresolve.ErrNoTargets, u.Host)
	}
	c.failSetup(reqA, txA, err)
}

// stopped ends a call whose setup was cancelled by the caller or ran out of
// time waiting for an answer.
func (c *call) stopped(reqA *sip.Request, txA sip.ServerTransaction) {
	c.mu.Lock()
	ended, by, reason := c.ended, c.hangupBy, c.endReason
	c.mu.Unlock()
	switch {
	case !ended:
		// Answer timeout: the caller hears 408.
		c.b.respondRefusal(reqA, txA, &refusal{sip.StatusRequestTimeout, "Request Timeout", "no answer"})
		c.setEnd("sbc", "no answer", sip.StatusRequestTimeout)
	case by != "a":
		// Ended by the SBC (shutdown) or a lost connection before answer;
		// a CANCEL from the caller was already answered 487 by sipgo.
		c.b.respondRefusal(reqA, txA, &refusal{sip.StatusServiceUnavailable, "Service Unavailable", reason})
		c.mu.Lock()
		if c.finalCode == 0 {
			c.finalCode = sip.StatusServiceUnavailable
		}
		c.mu.Unlock()
	}
	c.release()
}

// buildInvite creates the INVITE of leg B: a new dialog, nothing of leg A's
// topology, allow-listed headers only.
func (c *call) buildInvite(reqA *sip.Request, dest *config.Trunk, u sip.Uri, addr, sni string, offer []byte) *sip.Request {
	b := c.b
	ruri := sip.Uri{Scheme: "sips", User: reqA.Recipient.User, Host: u.Host, Port: u.Port}
	l := c.bl
	l.mu.Lock()
	l.remoteURI = sip.Uri{Scheme: "sips", User: reqA.Recipient.User, Host: u.Host}
	if to := reqA.To(); to != nil {
		l.remoteName = to.DisplayName
	}
	l.remoteTarget = ruri
	l.conn = addr
	l.sni = sni
	l.identity = dest.Identity
	l.remoteTag = ""
	l.localCSeq = l.inviteCSeq - 1 // request() numbers the INVITE inviteCSeq
	l.mu.Unlock()

	req := c.request(l, sip.INVITE)
	if mf := reqA.MaxForwards(); mf != nil {
		n := sip.MaxForwardsHeader(mf.Val() - 1)
		req.ReplaceHeader(&n)
	}
	copyAllowed(reqA, req, b.snap().allow)
	if req.GetHeader("Session-Expires") == nil && b.conf().SIP.SessionExpires > 0 {
		// The caller asked for no session timer: the SBC runs one on leg B
		// itself, as refresher (RFC 4028 §7.1), and keeps it from the caller.
		req.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=uac", int(b.conf().SIP.SessionExpires/time.Second))))
		if !headerHasToken(req, "Supported", "timer") {
			req.AppendHeader(sip.NewHeader("Supported", "timer"))
		}
		c.mu.Lock()
		c.ownTimerB = true
		c.mu.Unlock()
	}
	body := reqA.Body()
	if isSDP(reqA) {
		body = offer
	}
	setBody(req, body, contentType(reqA))
	return req
}

// tryTarget sends the INVITE to one target and relays what comes back.
func (c *call) tryTarget(ctx context.Context, reqA *sip.Request, txA sip.ServerTransaction, reqB *sip.Request, t dnsresolve.Target) (attempt, string) {
	b := c.b
	tx, err := b.cli.TransactionRequest(ctx, reqB, prebuilt)
	if err != nil {
		return attemptFailover, err.Error()
	}
	defer tx.Terminate()
	tx.OnRetransmission(func(res *sip.Response) { c.reAck(c.bl, res) })

	prov := time.NewTimer(b.conf().SIP.ProvisionalTimeout)
	defer prov.Stop()
	heard := false
	for {
		select {
		case res := <-tx.Responses():
			heard = true
			prov.Stop()
			switch {
			case res.StatusCode == 100:
				continue
			case res.IsProvisional():
				c.early(reqA, txA, res)
				continue
			case res.IsSuccess():
				c.answeredB(reqA, txA, reqB, res)
				return attemptDone, ""
			case res.StatusCode == sip.StatusServiceUnavailable:
				// RFC 3263 §4.3: a 503 sends us to the next target; the
				// target stays down for its Retry-After when it gave one.
				if ra := retryAfter(res); ra > 0 {
					b.health.MarkDownFor(t.Addr, ra, "503 Retry-After")
				}
				return attemptFailover, fmt.Sprintf("503 %s", res.Reason)
			default:
				c.relayFailure(reqA, txA, res)
				return attemptDone, ""
			}
		case <-prov.C:
			if !heard {
				return attemptFailover, fmt.Sprintf("no response within %s", b.conf().SIP.ProvisionalTimeout)
			}
		case <-tx.Done():
			if !heard {
				return attemptFailover, fmt.Sprintf("transaction failed: %v", tx.Err())
			}
			c.b.respondRefusal(reqA, txA, &refusal{sip.StatusServiceUnavailable, "Service Unavailable", "far side connection lost"})
			c.setEnd("b", "connection lost", sip.StatusServiceUnavailable)
			return attemptDone, ""
		case <-ctx.Done():
			c.cancelInvite(reqB, tx, heard)
			return attemptStop, ""
		}
	}
}

// early relays a provisional response of leg B to the caller and learns
// the early dialog (RFC 3261 §12.1.2).
func (c *call) early(reqA *sip.Request, txA sip.ServerTransaction, res *sip.Response) {
	c.learnB(res, false)
	body := res.Body()
	if isSDP(res) {
		var err error
		if body, err = c.media.Answer(SideB, body); err != nil {
			c.log.Warn().Err(err).Msg("early SDP refused")
			body = nil
		}
	}
	out := c.b.relayResponse(reqA, c.a, res, body)
	if err := c.b.respond(txA, out); err != nil {
		c.log.Debug().Err(err).Msg("relay provisional failed")
	}
}

// learnB records leg B's remote tag, target and (on 2xx) route set.
func (c *call) learnB(res *sip.Response, final bool) {
	l := c.bl
	l.mu.Lock()
	defer l.mu.Unlock()
	if to := res.To(); to != nil {
		if tag, ok := to.Params.Get("tag"); ok {
			l.remoteTag = tag
		}
	}
	if ct := res.Contact(); ct != nil {
		l.remoteTarget = ct.Address
	}
	if final || len(l.routeSet) == 0 {
		// RFC 3261 §12.1.2: the route set is the Record-Route of the
		// response, in reverse order.
		var rs []sip.Uri
		hs := res.GetHeaders("Record-Route")
		for i := len(hs) - 1; i >= 0; i-- {
			if rr, ok := hs[i].(*sip.RecordRouteHeader); ok {
				rs = append(rs, rr.Address)
			}
		}
		l.routeSet = rs
	}
}

// answeredB handles leg B's 2xx: ACK it, answer the caller.
func (c *call) answeredB(reqA *sip.Request, txA sip.ServerTransaction, reqB *sip.Request, res *sip.Response) {
	c.learnB(res, true)
	c.mu.Lock()
	cancelled := c.ended
	c.mu.Unlock()
	if cancelled {
		// The caller gave up while the callee answered.
		c.log.Info().Msg("answered after cancel: releasing callee")
		c.releaseAnsweredB(5 * time.Second)
		return
	}
	body := res.Body()
	lateOffer := len(reqB.Body()) == 0
	if isSDP(res) {
		var err error
		if lateOffer {
			body, err = c.media.Offer(SideB, body)
		} else {
			body, err = c.media.Answer(SideB, body)
		}
		if err != nil {
			// Answered with SDP we cannot anchor: release it, tell the caller.
			c.releaseAnsweredB(5 * time.Second)
			c.failSetup(reqA, txA, fmt.Errorf("%w: %w", ErrMedia, err))
			return
		}
	}
	if lateOffer {
		c.mu.Lock()
		c.pendingAck = &pendingAck{to: c.bl, cseq: c.bl.inviteCSeq}
		c.mu.Unlock()
	} else {
		c.sendAck(c.bl, c.bl.inviteCSeq, nil)
	}
	out := c.b.relayResponse(reqA, c.a, res, body)
	c.mu.Lock()
	own := c.ownTimerB
	c.mu.Unlock()
	if own {
		// The caller did not negotiate the timer: it is the SBC's own.
		out.RemoveHeader("Session-Expires")
		stripToken(out, "Require", "timer")
		c.startRefresher(res)
	}
	c.mu.Lock()
	c.answered = true
	c.answerAt = time.Now()
	c.finalCode = res.StatusCode
	c.mu.Unlock()
	if err := c.b.respond(txA, out); err != nil {
		c.log.Warn().Err(err).Msg("could not answer the caller: ending call")
		c.b.goOwned(func() { c.finish("a", "caller gone", c.bl) })
		return
	}
	c.refreshSession(out)
	c.b.metrics.SetupSeconds.Observe(time.Since(c.start).Seconds())
	c.log.Info().Str("event", "call_answer").Int("code", res.StatusCode).Msg("call answered")
}

// relayFailure relays a final error response of leg B to the caller.
func (c *call) relayFailure(reqA *sip.Request, txA sip.ServerTransaction, res *sip.Response) {
	code, reason := res.StatusCode, cleanReason(res.Reason)
	if code == 401 || code == 407 {
		// The callee's authentication challenge is for us, not the caller.
		code, reason = sip.StatusForbidden, "Forbidden"
	}
	out := c.b.response(reqA, c.a, code, reason)
	copyAllowed(res, out, c.b.snap().allow)
	if err := c.b.respond(txA, out); err != nil {
		c.log.Debug().Err(err).Msg("relay final failed")
	}
	c.setEnd("b", fmt.Sprintf("%d %s", res.StatusCode, res.Reason), res.StatusCode)
}

// cancelInvite sends CANCEL for the INVITE of leg B (RFC 3261 §9.1) and
// waits briefly for the INVITE to end with 487. Before any provisional
// response a CANCEL must not be sent: it waits for one first, and a callee
// that answers meanwhile gets ACK and BYE.
func (c *call) cancelInvite(reqB *sip.Request, tx sip.ClientTransaction, heard bool) {
	if !heard {
		wait := time.NewTimer(4 * time.Second)
		defer wait.Stop()
	first:
		for {
			select {
			case res := <-tx.Responses():
				switch {
				case res.IsSuccess():
					c.learnB(res, true)
					c.releaseAnsweredB(4 * time.Second)
					return
				case res.IsProvisional():
					break first
				default:
					return // the INVITE ended by itself
				}
			case <-tx.Done():
				return
			case <-wait.C:
				return // never heard: the transaction times out on its own
			}
		}
	}
	cancel := sip.NewRequest(sip.CANCEL, reqB.Recipient)
	cancel.AppendHeader(reqB.Via().Clone())
	for _, h := range reqB.GetHeaders("Route") {
		cancel.AppendHeader(sip.NewHeader("Route", h.Value()))
	}
	mf := sip.MaxForwardsHeader(70)
	cancel.AppendHeader(&mf)
	cancel.AppendHeader(sip.NewHeader("From", reqB.From().Value()))
	cancel.AppendHeader(sip.NewHeader("To", reqB.To().Value()))
	cid := sip.CallIDHeader(c.bl.callID)
	cancel.AppendHeader(&cid)
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: reqB.CSeq().SeqNo, MethodName: sip.CANCEL})
	cancel.SetBody(nil)
	cancel.SetTransport("TLS")
	cancel.SetDestination(reqB.Destination())
	ctx, done := context.WithTimeout(c.b.ctxOrBackground(), 4*time.Second)
	defer done()
	cctx, cdone := context.WithTimeout(ctx, 2*time.Second) // the CANCEL's own transaction
	defer cdone()
	if tx2, err := c.b.cli.TransactionRequest(cctx, cancel, prebuilt); err == nil {
		select {
		case <-tx2.Responses():
		case <-tx2.Done():
		case <-cctx.Done():
		}
		tx2.Terminate()
	}
	for {
		select {
		case res := <-tx.Responses():
			if res.IsSuccess() {
				// Answered anyway.
				c.learnB(res, true)
				c.releaseAnsweredB(time.Until(deadline(ctx)))
				return
			}
			if !res.IsProvisional() {
				return
			}
		case <-tx.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

// releaseAnsweredB ACKs leg B's 2xx and hangs it up with BYE (bounded by
// timeout): the callee answered a call that no longer exists or that
// cannot be used.
func (c *call) releaseAnsweredB(timeout time.Duration) {
	c.sendAck(c.bl, c.bl.inviteCSeq, nil)
	ctx, cancel := context.WithTimeout(c.b.ctxOrBackground(), timeout)
	defer cancel()
	_, _ = c.send(ctx, c.bl, c.request(c.bl, sip.BYE))
}

// deadline is ctx's deadline (it must have one).
func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// sendAck sends the ACK for a 2xx on leg l (a transaction of its own,
// RFC 3261 §13.2.2.4) and remembers it for retransmitted 2xx.
func (c *call) sendAck(l *leg, cseq uint32, body []byte) {
	ack := c.request(l, sip.ACK)
	if cs := ack.CSeq(); cs != nil {
		cs.SeqNo = cseq
	}
	setBody(ack, body, "")
	if err := c.b.cli.WriteRequest(ack, prebuilt); err != nil {
		c.log.Debug().Err(err).Str("leg", l.side.String()).Msg("ACK not sent")
	}
}

// reAck answers a retransmitted 2xx with a new ACK.
func (c *call) reAck(l *leg, res *sip.Response) {
	if cs := res.CSeq(); cs != nil && cs.MethodName == sip.INVITE {
		c.mu.Lock()
		pending := c.pendingAck != nil
		c.mu.Unlock()
		if !pending {
			c.sendAck(l, cs.SeqNo, nil)
		}
	}
}

// ctxOrBackground is the B2BUA's lifetime context (Background before Start,
// e.g. in tests that only build requests).
func (b *B2BUA) ctxOrBackground() context.Context {
	if b.ctx != nil {
		return b.ctx
	}
	return context.Background()
}
