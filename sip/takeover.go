package sip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/media"
	"github.com/edge-sbc/edge-sbc/sip/cluster"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// This file is the takeover of a cluster (sip/cluster): the calls another
// node carried, rebuilt on this node from their replicated state
// (CallState, state.go) when the service address moved here (the command
// calls Takeover on SIGUSR1). A call taken over is confirmed at once: its
// dialogs are registered under the same Call-IDs and tags, its media
// session is restored on the same relay ports (media.Engine.Restore), its
// session timer continues from when it was last armed, its cluster slot
// is adopted (counted on this node without a limit check) and its state
// is written again, under this node's id.
//
// The TLS connections ended with the other node. A peer's next request in
// the call arrives on a new connection: it is accepted when the
// connection's verified certificate carries the leg's trunk identity (or,
// for a trunk without one, a name the lost node's connection had), and
// that connection becomes the leg's. Toward the peers, the B2BUA dials
// each leg's remote target (the first route of its route set, else its
// Contact; leg B also the target the lost node had dialed) as soon as the
// call is taken over; a BYE owed to a leg whose connection is not up yet
// waits for the dial. CSeqs continue from the stored ones. The call's end
// writes one CDR with the stored start and answer times.

// takeoverDialTimeout bounds the dial of one leg of a call taken over.
const takeoverDialTimeout = 10 * time.Second

// ErrTakeover is wrapped by the errors of a call that could not be taken
// over.
var ErrTakeover = errors.New("sip: call not taken over")

// TakeoverResult says what Takeover did.
type TakeoverResult struct {
	Taken   int     // calls now carried by this node
	Skipped int     // calls this node carries already
	Failed  []error // one per call that could not be taken over (wrapping ErrTakeover)
}

// mediaRestorer is a MediaAnchor that can restore a session from its
// snapshot (the relay's).
type mediaRestorer interface {
	Restore(snap media.SessionSnapshot, p SessionParams, since time.Time) (MediaSession, error)
}

// Restore restores a relay session from its snapshot (takeover.go).
func (r *relayAnchor) Restore(snap media.SessionSnapshot, p SessionParams, since time.Time) (MediaSession, error) {
	s, err := r.eng.Restore(snap, media.SessionConfig{CallID: p.CallID, AllowPlainRTP: p.AllowPlainRTP, OnTimeout: p.OnTimeout},
		media.RestoreOptions{Since: since})
	if err != nil {
		return nil, mediaError(err)
	}
	return &relaySession{s: s, m: r.metrics}, nil
}

// Takeover carries on the calls of states (call id to CallState JSON, as
// cluster.StateStore.Load returns them): those this node does not carry
// already are rebuilt and confirmed. It does network I/O (the cluster's
// Adopt, bounded by ctx and the cluster's own timeouts) and returns once
// every call is rebuilt; the dials toward the peers run in helper
// goroutines.
func (b *B2BUA) Takeover(ctx context.Context, states map[string][]byte) TakeoverResult {
	var res TakeoverResult
	have := map[string]bool{}
	b.mu.Lock()
	for c := range b.calls {
		have[c.id] = true
	}
	b.mu.Unlock()
	for id, raw := range states {
		if have[id] {
			res.Skipped++
			continue
		}
		if err := b.takeOver(ctx, id, raw); err != nil {
			b.log.Warn().Err(err).Str("call", id).Msg("call not taken over")
			res.Failed = append(res.Failed, err)
			continue
		}
		res.Taken++
	}
	return res
}

// takeOver rebuilds one call.
func (b *B2BUA) takeOver(ctx context.Context, id string, raw []byte) error {
	var cs CallState
	if err := json.Unmarshal(raw, &cs); err != nil {
		return fmt.Errorf("%w: %s: state: %w", ErrTakeover, id, err)
	}
	if cs.Version != CallStateVersion {
		return fmt.Errorf("%w: %s: state version %d (this node reads %d)", ErrTakeover, id, cs.Version, CallStateVersion)
	}
	if cs.Call != id {
		return fmt.Errorf("%w: %s: the state is call %q's", ErrTakeover, id, cs.Call)
	}
	snap := b.snap()
	from, to := snap.trunks[cs.TrunkA], snap.trunks[cs.TrunkB]
	if from == nil || to == nil {
		return fmt.Errorf("%w: %s: trunk %q or %q is not configured here", ErrTakeover, id, cs.TrunkA, cs.TrunkB)
	}
	plan := &callPlan{from: from, to: to, unauth: cs.Unauth, trusted: cs.Trusted}
	plan.media = SessionParams{
		CallID: id, TrunkA: from.name, TrunkB: to.name,
		AllowPlainRTP: from.allowPlain && to.allowPlain,
		AdvertiseA:    from.advertise, AdvertiseB: to.advertise,
		SRTPA: from.srtp, SRTPB: to.srtp,
	}
	a, err := legFromState(SideA, from, cs.A)
	if err != nil {
		return fmt.Errorf("%w: %s: leg a: %w", ErrTakeover, id, err)
	}
	bl, err := legFromState(SideB, to, cs.B)
	if err != nil {
		return fmt.Errorf("%w: %s: leg b: %w", ErrTakeover, id, err)
	}
	c := &call{b: b, id: id, snap: snap, plan: plan, start: cs.Start,
		timers: map[*callTimer]struct{}{}, stxs: map[*serverTx]struct{}{},
		ctxs: map[*clientTx]struct{}{}, conns: map[*conn]struct{}{}}
	c.room = sync.NewCond(&c.qmu)
	c.ctx, c.cancel = context.WithCancel(b.lifetime())
	c.log = b.log.With().Str("call", id).Logger()
	c.a, c.bl = a, bl
	c.ruriUser, c.ruriHost = cs.RURIUser, cs.RURIHost
	c.state, c.answerAt, c.transfers = stConfirmed, cs.Answer, cs.Transfers
	c.winner = &fork{att: &attempt{}, tagB: bl.remoteTag, tagA: a.localTag, target: bl.remoteTarget, routeSet: bl.routeSet}
	c.session = sessionTimer{interval: cs.Session.Interval, own: cs.Session.Own, refresh: cs.Session.Refresh}
	c.sessionArmed = cs.Session.Armed
	c.takenOver = &takeoverInfo{armed: cs.Session.Armed, idsA: cs.A.Identities, idsB: cs.B.Identities,
		peerB: cs.B.Peer, sniB: cs.B.SNI}
	c.media = passSession{}
	if cs.Media != nil {
		mr, ok := b.media.(mediaRestorer)
		if !ok {
			c.cancel()
			return fmt.Errorf("%w: %s: the call's media was anchored, this node anchors none", ErrTakeover, id)
		}
		p := plan.media
		p.OnTimeout = func() { c.post(event{kind: evMediaTimeout}) }
		ms, err := mr.Restore(*cs.Media, p, cs.Start)
		if err != nil {
			c.cancel()
			return fmt.Errorf("%w: %s: media: %w", ErrTakeover, id, err)
		}
		c.media = ms
	}
	b.planner.count(snap, plan)
	if b.shared != nil && cs.AdmKey != "" {
		actx, cancel := context.WithTimeout(ctx, admitTimeout)
		err := b.shared.Adopt(actx, callAdmitRequest(snap, cs.AdmKey, plan))
		cancel()
		// Unavailable: counted when Redis is back.
		if err != nil && !errors.Is(err, cluster.ErrUnavailable) {
			c.log.Warn().Err(err).Msg("call taken over: its cluster slot was not adopted")
		} else {
			c.admKey = cs.AdmKey
		}
	}
	b.addCall(c)
	c.post(event{kind: evTakeover})
	return nil
}

// takeoverInfo is what a call taken over keeps of its state besides what
// its legs and session hold (no keys, no SDP: those are in the media
// session and the legs).
type takeoverInfo struct {
	armed      time.Time // the session expiry was last armed
	idsA, idsB []string  // the names of the peers' certificates on the lost node
	peerB      string    // the target the lost node had dialed for leg B
	sniB       string    // and its SNI
}

// legFromState rebuilds a leg from its state.
func legFromState(side Side, t *trunkRec, s CallStateLeg) (*leg, error) {
	l := &leg{side: side, trunk: t, callID: s.CallID, localTag: s.LocalTag, remoteTag: s.RemoteTag,
		localName: s.LocalName, remoteName: s.RemoteName,
		localCSeq: s.LocalCSeq, remoteCSeq: s.RemoteCSeq, inviteCSeq: s.InviteCSeq,
		peerUpdate: s.PeerUpdate, peer100rel: s.Peer100rel, peerTimer: s.PeerTimer,
		oa: oaStable, agreed: true, lastCT: s.SDPType, lastSDP: []byte(s.SDP)}
	if l.callID == "" || l.localTag == "" || l.remoteTag == "" {
		return nil, errors.New("dialog without Call-ID or tags")
	}
	for _, u := range []struct {
		dst *sip.Uri
		s   string
	}{{&l.localURI, s.LocalURI}, {&l.remoteURI, s.RemoteURI}, {&l.remoteTarget, s.Target}} {
		if err := sip.ParseUri(u.s, u.dst); err != nil {
			return nil, fmt.Errorf("URI %q: %w", u.s, err)
		}
	}
	for _, r := range s.RouteSet {
		var u sip.Uri
		if err := sip.ParseUri(r, &u); err != nil {
			return nil, fmt.Errorf("route %q: %w", r, err)
		}
		l.routeSet = append(l.routeSet, u)
	}
	return l, nil
}

// onTakeover is the first event of a call taken over: its timers, the
// dials toward both peers, and its state written under this node's id.
func (c *call) onTakeover() {
	tk := c.takenOver
	c.log.Info().Str("event", "call_takeover").Str("trunk_a", c.plan.from.name).Str("trunk_b", c.plan.to.name).
		Str("call_id_a", c.a.callID).Str("call_id_b", c.bl.callID).Time("start", c.start).Time("answer", c.answerAt).
		Msg("call taken over")
	if d := c.session.interval; d > 0 {
		now := time.Now()
		armed := tk.armed
		if armed.IsZero() {
			armed = now
		}
		left := armed.Add(d + min(d/3, 32*time.Second)).Sub(now)
		c.session.expiry = c.after(max(left, time.Second), tSessionExpiry, nil)
		if c.session.refresh {
			c.session.next = c.after(max(armed.Add(d/2).Sub(now), 2*time.Second), tRefresh, nil)
		}
	}
	c.redial(c.a)
	c.redial(c.bl)
	c.stateDirty = true
}

// legTarget is one address to dial toward a leg's peer.
type legTarget struct {
	host string // an IP literal or a name to resolve
	port int
	sni  string
}

// dialTargets are the addresses to dial toward leg l's peer, in order:
// the first route of its route set, else its remote target; for leg B
// then the target the lost node had dialed.
func (c *call) dialTargets(l *leg) []legTarget {
	u := l.remoteTarget
	if len(l.routeSet) > 0 {
		u = l.routeSet[0]
	}
	var out []legTarget
	if u.Host != "" {
		t := legTarget{host: u.Host, port: u.Port}
		if t.port <= 0 {
			t.port = 5061
		}
		if _, ok := tlsconf.ParseIPLiteral(u.Host); !ok {
			t.sni = u.Host
		} else if l.side == SideB {
			t.sni = c.takenOver.sniB
		}
		out = append(out, t)
	}
	if l.side == SideB {
		if ap, err := netip.ParseAddrPort(c.takenOver.peerB); err == nil {
			out = append(out, legTarget{host: ap.Addr().String(), port: int(ap.Port()), sni: c.takenOver.sniB})
		}
	}
	return out
}

// dialIdentity is the name the certificate of leg l's peer must carry:
// its trunk's identity, else the first name the lost node's connection
// had ("" when neither: the leg is not dialed).
func (c *call) dialIdentity(l *leg) string {
	if l.trunk.identity != "" {
		return l.trunk.identity
	}
	ids := c.takenOver.idsA
	if l.side == SideB {
		ids = c.takenOver.idsB
	}
	if len(ids) > 0 {
		return ids[0]
	}
	return ""
}

// redial opens a connection toward leg l's peer in a helper goroutine
// (evRedialed) unless one is being dialed. Loop only.
func (c *call) redial(l *leg) {
	if l.dialing || c.takenOver == nil {
		return
	}
	identity := c.dialIdentity(l)
	targets := c.dialTargets(l)
	if identity == "" || len(targets) == 0 {
		c.log.Info().Str("leg", l.side.String()).Msg("call taken over: no target or identity to dial the leg's peer; waiting for its requests")
		return
	}
	l.dialing = true
	side, tp, res, parent := l.side, c.b.tp, c.b.resolver, c.ctx
	if !c.b.spawn(func() {
		ctx, cancel := context.WithTimeout(parent, takeoverDialTimeout)
		defer cancel()
		var cn *conn
		var err error
		for _, t := range targets {
			addrs := []legTarget{t}
			if _, ok := tlsconf.ParseIPLiteral(t.host); !ok {
				rs, rerr := res.Resolve(ctx, t.host, uint16(t.port))
				if rerr != nil {
					err = rerr
					continue
				}
				addrs = addrs[:0]
				for _, r := range rs {
					addrs = append(addrs, legTarget{host: r.Addr.Addr().String(), port: int(r.Addr.Port()), sni: r.Host})
				}
			}
			for _, a := range addrs {
				sni := a.sni
				if _, ok := tlsconf.ParseIPLiteral(sni); ok {
					sni = ""
				}
				if cn, err = tp.dial(ctx, net.JoinHostPort(a.host, strconv.Itoa(a.port)), sni, identity); err == nil {
					break
				}
			}
			if cn != nil {
				break
			}
		}
		c.post(event{kind: evRedialed, side: side, conn: cn, err: err})
	}) {
		l.dialing = false
	}
}

// onRedialed takes the connection dialed toward a leg's peer (if the leg
// has none that works meanwhile) and sends the BYE owed to it.
func (c *call) onRedialed(ev event) {
	l := c.legOf(ev.side)
	l.dialing = false
	switch {
	case ev.err != nil || ev.conn == nil:
		c.log.Info().Err(ev.err).Str("leg", l.side.String()).Msg("call taken over: the leg's peer could not be dialed; waiting for its requests")
	case l.conn == nil || l.conn.closed():
		l.conn = ev.conn
		c.track(ev.conn)
		c.log.Info().Str("leg", l.side.String()).Str("remote", ev.conn.remote).Msg("call taken over: connection to the leg's peer")
	}
	if l.byeOwed {
		l.byeOwed = false
		if l.conn != nil && !l.conn.closed() {
			c.bye(l)
		} else {
			c.log.Info().Str("leg", l.side.String()).Msg("call taken over: BYE not sent, the leg's peer is not reachable")
		}
		c.maybeRelease()
	}
}

// adoptConn makes cn, a new connection a request of leg l arrived on
// (fromPeer checked it), the leg's, when the leg has none that works: the
// peer of a call taken over reconnected. Loop only.
func (c *call) adoptConn(l *leg, cn *conn) {
	if c.takenOver == nil || cn == l.conn || l.conn != nil && !l.conn.closed() {
		return
	}
	l.conn = cn
	c.track(cn)
	c.log.Info().Str("leg", l.side.String()).Str("remote", cn.remote).Msg("call taken over: the leg's peer reconnected")
}

// takenOverPeer reports whether cn may carry requests of leg l of a call
// taken over: verified, with a name the lost node's connection to the leg
// had (fromPeer checks the trunk identity first).
func (c *call) takenOverPeer(l *leg, cn *conn) bool {
	if c.takenOver == nil || !cn.verified {
		return false
	}
	ids := c.takenOver.idsA
	if l.side == SideB {
		ids = c.takenOver.idsB
	}
	for _, id := range ids {
		if cn.hasIdentity(id) {
			return true
		}
	}
	return false
}
