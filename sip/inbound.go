package sip

import (
	"context"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// This file is where a new call enters: an out-of-dialog INVITE from a
// trunk. It runs on the connection's reader, so everything the caller
// sends next (a CANCEL, say) finds the call already in place: the SIPS
// policy, the caller's trunk, the plan (route and admission), then the
// call and its first event. Nothing here waits on the network.

func (b *B2BUA) onInvite(cn *conn, req *sip.Request) {
	cid := callIDOf(req)
	snap := b.snap()
	trunk, unauth := b.identify(snap, cn)
	allowSIP := false
	if t := snap.trunks[trunk]; t != nil && !unauth {
		allowSIP = t.sipScheme // a certificate-identified trunk only
	}
	if r := checkInvite(req, allowSIP); r != nil {
		b.log.Info().Str("call_id_a", cid).Str("remote", cn.remote).Int("code", r.code).
			Str("ruri", req.Recipient.String()).Str("why", r.warning).Msg("INVITE refused")
		b.rejectInline(cn, req, *r)
		return
	}
	if isLoop(req, snap.cfg.Node.FQDN) {
		b.log.Warn().Str("call_id_a", cid).Str("remote", cn.remote).Msg("INVITE came back to this SBC: loop")
		b.metrics.Admission.WithLabelValues("loop").Inc()
		b.rejectInline(cn, req, refuseLoop)
		return
	}
	if trunk == "" {
		b.log.Warn().Str("call_id_a", cid).Str("remote", cn.remote).Strs("identities", cn.identities).
			Msg("INVITE from a peer that is no trunk: 403")
		b.rejectInline(cn, req, refuseNotTrunk)
		return
	}
	body, err := splitBody(req, snap.bodyAllow)
	if err != nil {
		b.log.Info().Err(err).Str("call_id_a", cid).Msg("INVITE body refused")
		b.rejectInline(cn, req, refuseBadBody)
		return
	}
	if !cn.beginRequest(false, unauth) {
		b.metrics.Admission.WithLabelValues("pending_per_connection").Inc()
		b.rejectInline(cn, req, refuseBusyConnection)
		return
	}
	in := inbound{
		trunk: trunk, unauth: unauth, user: req.Recipient.User, host: req.Recipient.Host,
		streams: countMLines(body.sdp),
	}
	var plan *callPlan
	var r refusal
	var why string
	if b.shared == nil {
		plan, r, why = b.planner.plan(snap, in)
	} else if plan, r, why = b.planner.route(snap, in); plan != nil && b.planner.isDraining() {
		plan, r, why = nil, refuseDraining, "draining"
	}
	if plan == nil {
		cn.endRequest()
		if why != "" {
			b.metrics.Admission.WithLabelValues(why).Inc()
		}
		b.log.Info().Str("call_id_a", cid).Str("trunk", trunk).Int("code", r.code).Str("admission", why).
			Str("ruri_user", req.Recipient.User).Str("ruri_host", req.Recipient.Host).Msg("INVITE not admitted")
		b.rejectInline(cn, req, r)
		return
	}
	c := b.newCall(cn, req, snap, plan)
	c.streams = in.streams
	tx := &serverTx{key: serverKey(req), req: req, conn: cn, call: c}
	b.txl.addServer(tx)
	c.inv = tx
	c.stxs[tx] = struct{}{}
	c.track(cn)
	b.respond(tx, newResponse(req, sip.StatusTrying, ""))
	ms, err := b.media.NewSession(SessionParams{
		CallID: c.id, TrunkA: plan.media.TrunkA, TrunkB: plan.media.TrunkB,
		AllowPlainRTP: plan.media.AllowPlainRTP,
		AdvertiseA:    plan.media.AdvertiseA, AdvertiseB: plan.media.AdvertiseB,
		SRTPA: plan.media.SRTPA, SRTPB: plan.media.SRTPB,
		OnTimeout: func() { c.post(event{kind: evMediaTimeout}) },
	})
	if err != nil {
		ms = passSession{}
		c.media = ms
		c.post(event{kind: evHangup, reason: err.Error()})
		return
	}
	c.media = ms
	if b.shared != nil {
		// Admitted by the cluster in a helper goroutine: evAdmitted
		// starts the call (admission.go).
		c.admitCallShared()
		return
	}
	c.logStart()
	b.gate.start(c)
}

// logStart writes the call_start line of an admitted call.
func (c *call) logStart() {
	c.log.Info().Str("event", "call_start").Str("trunk_a", c.plan.from.name).Str("trunk_b", c.plan.to.name).
		Str("call_id_a", c.a.callID).Str("call_id_b", c.bl.callID).Bool("unauthenticated", c.plan.unauth).
		Str("ruri_user", c.ruriUser).Str("ruri_host", c.ruriHost).Msg("call started")
}

// identify maps a connection to a trunk, with the current configuration
// (it may have been reloaded since the connection was made): the first
// trunk whose identity the verified certificate carries (exact or
// wildcard, an exact name preferred); else, on a listener with an unauthenticated trunk, that trunk
// (our own domains only); else none (403).
func (b *B2BUA) identify(s *policySnapshot, cn *conn) (trunk string, unauth bool) {
	if cn.verified && cn.leaf != nil {
		if i, ok := tlsconf.MatchTrunk(cn.leaf, s.cfg.TrunkIdentities()); ok {
			return s.cfg.Trunks[i].Name, false
		}
	}
	if cn.unauth != "" {
		return cn.unauth, true
	}
	return "", false
}

// newCall builds the call and its two legs and registers both dialogs.
func (b *B2BUA) newCall(cn *conn, req *sip.Request, s *policySnapshot, plan *callPlan) *call {
	id := newToken(6)
	c := &call{b: b, id: id, snap: s, plan: plan, start: time.Now(),
		timers: map[*callTimer]struct{}{}, stxs: map[*serverTx]struct{}{},
		ctxs: map[*clientTx]struct{}{}, conns: map[*conn]struct{}{}}
	c.room = sync.NewCond(&c.qmu)
	c.ctx, c.cancel = context.WithCancel(b.lifetime())
	c.log = b.log.With().Str("call", id).Logger()
	from, to := req.From(), req.To()
	a := &leg{
		side:       SideA,
		trunk:      plan.from,
		callID:     callIDOf(req),
		localTag:   newTag(),
		remoteTag:  fromTag(req),
		localURI:   to.Address,
		localName:  to.DisplayName,
		remoteURI:  from.Address,
		remoteName: from.DisplayName,
		remoteCSeq: req.CSeq().SeqNo,
		inviteCSeq: req.CSeq().SeqNo,
		conn:       cn,
		routeSet:   routeSetOf(req, false),
	}
	if ct := req.Contact(); ct != nil {
		a.remoteTarget = ct.Address
	} else {
		a.remoteTarget = from.Address
	}
	a.learnPeer(req)
	bl := &leg{
		side:       SideB,
		trunk:      plan.to,
		callID:     newCallID(),
		localTag:   newTag(),
		localURI:   hideHost(from.Address, s.cfg.Node.FQDN),
		localName:  from.DisplayName,
		inviteCSeq: 1,
	}
	c.a, c.bl = a, bl
	c.ruriUser, c.ruriHost = req.Recipient.User, req.Recipient.Host
	b.addCall(c)
	return c
}

// addCall publishes a call whose two legs are built, counts it among the
// calls in progress and registers both dialogs (a new call, or one taken
// over from another node).
func (b *B2BUA) addCall(c *call) {
	c.publish()
	b.mu.Lock()
	b.calls[c] = struct{}{}
	b.mu.Unlock()
	b.register(c, c.a.callID, c.a.localTag, SideA)
	b.register(c, c.bl.callID, c.bl.localTag, SideB)
}
