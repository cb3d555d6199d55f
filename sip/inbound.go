package sip

import (
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// This file is where a new call enters: an out-of-dialog INVITE from a
// trunk. The caller's leg (A) is set up here; outbound.go sets up leg B.

func (b *B2BUA) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil {
		if _, ok := to.Params.Get("tag"); ok {
			b.onInDialog(req, tx)
			return
		}
	}
	log := b.log.With().Str("call_id_a", callID(req)).Str("remote", req.Source()).Logger()
	if r := checkInvite(req); r != nil {
		log.Info().Int("code", r.code).Str("ruri", req.Recipient.String()).Str("why", r.warning).Msg("INVITE refused")
		b.respondRefusal(req, tx, r)
		return
	}
	if isLoop(req, b.conf().Node.FQDN) {
		log.Warn().Msg("INVITE came back to this SBC: loop")
		b.metrics.Admission.WithLabelValues(admitLoop.String()).Inc()
		b.respondRefusal(req, tx, admitLoop.refusal())
		return
	}
	info, ok := b.tp.lookup(req.Source())
	trunk := ""
	if ok {
		// Mapped now, with the current configuration (it may have been
		// reloaded since the connection was made).
		trunk = b.identify(info.identities, info.unauth, info.verified)
	}
	if trunk == "" {
		var ids []string
		if ok {
			ids = info.identities
		}
		log.Warn().Strs("identities", ids).Msg("INVITE from a peer that is no trunk: 403")
		b.respondRefusal(req, tx, &refusal{403, "Forbidden", "peer is not a configured trunk"})
		return
	}
	dest, err := b.snap().router.Route(trunk, req.Recipient.User, req.Recipient.Host)
	if err != nil {
		code, reason := statusFor(err)
		log.Info().Err(err).Int("code", code).Str("trunk", trunk).Msg("INVITE not routed")
		b.respondRefusal(req, tx, &refusal{code, reason, "no route"})
		return
	}

	if a := b.admit(req, trunk, dest.Name); a != admitOK {
		log.Warn().Str("trunk", trunk).Str("to", dest.Name).Str("admission", a.String()).Msg("INVITE not admitted")
		b.metrics.Admission.WithLabelValues(a.String()).Inc()
		b.respondRefusal(req, tx, a.refusal())
		return
	}
	c := b.newCall(req, trunk, dest.Name)
	c.log.Info().Str("event", "call_start").Str("trunk_a", trunk).Str("trunk_b", dest.Name).
		Str("call_id_b", c.bl.callID).Str("ruri_user", req.Recipient.User).Str("ruri_host", req.Recipient.Host).
		Msg("call started")
	ms, err := b.media.NewSession(SessionParams{
		CallID: c.id, TrunkA: trunk, TrunkB: dest.Name,
		AllowPlainRTP: b.allowPlain(trunk) && dest.AllowPlainRTP,
		AdvertiseA:    advertise(b.conf(), trunk),
		SRTPA:         b.trunkSRTP(trunk),
		SRTPB:         dest.SRTP,
		AdvertiseB:    advertise(b.conf(), dest.Name),
		OnTimeout: func() {
			c.log.Warn().Msg("no media: ending call")
			b.goOwned(func() { c.finish("sbc", "media timeout", c.a, c.bl) })
		},
	})
	if err != nil {
		c.failSetup(req, tx, err)
		return
	}
	c.media = ms
	c.originate(req, tx, dest)
}

func (b *B2BUA) trunkSRTP(trunk string) string {
	if t := b.conf().Trunk(trunk); t != nil {
		return t.SRTP
	}
	return ""
}

func (b *B2BUA) allowPlain(trunk string) bool {
	if t := b.conf().Trunk(trunk); t != nil {
		return t.AllowPlainRTP
	}
	return false
}

// newCall builds the call and its two legs and registers both dialogs.
func (b *B2BUA) newCall(req *sip.Request, trunk, toTrunk string) *call {
	id := newToken(6)
	c := &call{b: b, id: id, start: time.Now(), done: make(chan struct{})}
	c.log = b.log.With().Str("call", id).Logger()

	from, to := req.From(), req.To()
	fromTag, _ := from.Params.Get("tag")
	a := &leg{
		side:       SideA,
		trunk:      trunk,
		callID:     callID(req),
		localTag:   newTag(),
		remoteTag:  fromTag,
		localURI:   to.Address,
		localName:  to.DisplayName,
		remoteURI:  from.Address,
		remoteName: from.DisplayName,
		localCSeq:  1,
		inviteCSeq: req.CSeq().SeqNo,
		conn:       req.Source(),
	}
	if ct := req.Contact(); ct != nil {
		a.remoteTarget = ct.Address
	} else {
		a.remoteTarget = from.Address
	}
	for _, h := range req.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			a.routeSet = append(a.routeSet, rr.Address)
		}
	}
	bl := &leg{
		side:       SideB,
		trunk:      toTrunk,
		callID:     newCallID(),
		localTag:   newTag(),
		localURI:   hideHost(from.Address, b.conf().Node.FQDN),
		localName:  from.DisplayName,
		localCSeq:  0,
		inviteCSeq: 1,
	}
	c.a, c.bl = a, bl
	b.mu.Lock()
	b.calls[c] = struct{}{}
	b.trunkCalls[trunk]++
	if toTrunk != trunk {
		b.trunkCalls[toTrunk]++
	}
	b.dialogs[dialogKey(a.callID, a.localTag)] = &legRef{c: c, l: a}
	b.dialogs[dialogKey(bl.callID, bl.localTag)] = &legRef{c: c, l: bl}
	b.mu.Unlock()
	return c
}

// failSetup answers the caller with the status err maps to and ends the
// call before it was answered.
func (c *call) failSetup(req *sip.Request, tx sip.ServerTransaction, err error) {
	code, reason := statusFor(err)
	c.log.Info().Err(err).Int("code", code).Msg("call setup failed")
	c.b.respondRefusal(req, tx, &refusal{code, reason, warningText(err)})
	c.setEnd("sbc", err.Error(), code)
	c.release()
}

// warningText is a short, safe explanation for a Warning header.
func warningText(err error) string {
	s := err.Error()
	s = strings.ReplaceAll(s, "\"", "'")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

func callID(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}
