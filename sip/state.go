package sip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edge-sbc/edge-sbc/media"
	"github.com/edge-sbc/edge-sbc/sip/cluster"
)

// This file is call state replication (Options.States, sip/cluster): what
// another node needs to carry an answered call on when this node is lost.
// Without Options.States nothing here runs.
//
// When: the call's loop marks the state dirty when the call is confirmed
// (the caller's ACK), when an offer/answer exchange completes, when the
// session timer is re-armed (a refresh) and when a transfer completes;
// after handling an event, a dirty state is written once the call is
// settled (confirmed, no offer outstanding, no re-INVITE, UPDATE, ACK or
// transfer in flight), so a re-INVITE costs one write, after its ACK. A
// call with nothing to write for half its state's TTL writes it again
// (the TTL is the session expiry plus a grace: a state that is not
// renewed disappears with its call). Nothing is written per packet. At
// the call's end the state is deleted.
//
// How: the loop builds the CallState (JSON, versioned) and hands it to the
// call's stateWriter, which writes in a helper goroutine, one operation at
// a time and the latest only (a delete queued behind a put replaces it), so
// a call's writes reach Redis in order without the loop waiting on the
// network. The store seals the value (AES-256-GCM) before it leaves the
// process.

// SharedStates keeps the state of answered calls for the other nodes of a
// cluster; *cluster.StateStore is the one the command uses. Its methods may
// do network I/O, bounded by their own timeouts: the B2BUA calls them from
// helper goroutines only.
type SharedStates interface {
	Put(ctx context.Context, callID string, state []byte, ttl time.Duration) error
	Delete(ctx context.Context, callID string) error
}

// CallStateVersion is the version of CallState's layout; a reader refuses
// other versions.
const CallStateVersion = 1

// stateGrace is how long a state outlives the session expiry it was
// written for.
const stateGrace = 30 * time.Second

// CallState is what another node needs to carry an answered call on: both
// dialogs, the trunks, the session timer and the media session (relay
// ports, addresses, SRTP mode and, in terminate mode, the keys and
// rollover counters). It is written as JSON and holds secrets (SRTP keys
// in Media and in the SDP the SBC sent): it reaches Redis sealed only, and
// String prints none of it.
type CallState struct {
	Version int       `json:"v"`
	Call    string    `json:"call"` // the correlation id of the call's log lines and CDR
	Start   time.Time `json:"start"`
	Answer  time.Time `json:"answer"`
	// TrunkA is the caller's trunk, TrunkB the callee's.
	TrunkA string `json:"trunk_a"`
	TrunkB string `json:"trunk_b"`
	// Unauth: the caller showed no certificate (the unauthenticated pool);
	// Trusted: identity headers from the caller may cross.
	Unauth  bool `json:"unauth,omitempty"`
	Trusted bool `json:"trusted,omitempty"`
	// RURIUser and RURIHost are the Request-URI sent toward the callee.
	RURIUser string `json:"ruri_user"`
	RURIHost string `json:"ruri_host"`
	// A faces the caller (the SBC is its UAS), B the callee (its UAC).
	A       CallStateLeg     `json:"a"`
	B       CallStateLeg     `json:"b"`
	Session CallStateSession `json:"session"`
	// AdmKey is the key the cluster counts the call under.
	AdmKey    string `json:"adm_key,omitempty"`
	Transfers int    `json:"transfers,omitempty"`
	// Media is the media session (nil when media is not anchored).
	Media *media.SessionSnapshot `json:"media,omitempty"`
}

// CallStateLeg is one dialog of the call (RFC 3261 §12).
type CallStateLeg struct {
	CallID    string `json:"call_id"`
	LocalTag  string `json:"local_tag"`
	RemoteTag string `json:"remote_tag"`
	// LocalURI and RemoteURI are the From and To of the requests the SBC
	// sends on the leg; Target the peer's Contact (where they go).
	LocalURI   string   `json:"local_uri"`
	LocalName  string   `json:"local_name,omitempty"`
	RemoteURI  string   `json:"remote_uri"`
	RemoteName string   `json:"remote_name,omitempty"`
	Target     string   `json:"target"`
	RouteSet   []string `json:"route_set,omitempty"`
	// LocalCSeq is the last CSeq the SBC used, RemoteCSeq the peer's last,
	// InviteCSeq that of the INVITE that set the dialog up.
	LocalCSeq  uint32 `json:"local_cseq"`
	RemoteCSeq uint32 `json:"remote_cseq"`
	InviteCSeq uint32 `json:"invite_cseq"`
	// Trunk is the leg's trunk, Identities the names of the peer's
	// verified certificate when the state was written, Peer its address.
	Trunk      string   `json:"trunk"`
	Identities []string `json:"identities,omitempty"`
	Peer       string   `json:"peer,omitempty"`
	// SNI is the server name the SBC sent when it dialed the peer (leg B).
	SNI string `json:"sni,omitempty"`
	// What the peer said it does.
	PeerUpdate bool `json:"peer_update,omitempty"`
	Peer100rel bool `json:"peer_100rel,omitempty"`
	PeerTimer  bool `json:"peer_timer,omitempty"`
	// SDP is the last SDP (or multipart body, of SDPType) the SBC sent on
	// the leg: a session refresh by re-INVITE repeats it.
	SDPType string `json:"sdp_type,omitempty"`
	SDP     string `json:"sdp,omitempty"`
}

// CallStateSession is the call's RFC 4028 session timer.
type CallStateSession struct {
	// Interval is the negotiated session interval (0: none).
	Interval time.Duration `json:"interval,omitempty"`
	// Own: the SBC asked leg B for the timer itself; Refresh: the SBC
	// refreshes leg B.
	Own     bool `json:"own,omitempty"`
	Refresh bool `json:"refresh,omitempty"`
	// Armed is when the expiry was last (re)started: the session ends at
	// Armed + Interval + min(Interval/3, 32 s) unless refreshed.
	Armed time.Time `json:"armed,omitzero"`
}

// String keeps the dialog identifiers, SDP and keys out of formatted
// output.
func (s CallState) String() string {
	return fmt.Sprintf("call state v%d of %s (%s -> %s)", s.Version, s.Call, s.TrunkA, s.TrunkB)
}

// GoString is String.
func (s CallState) GoString() string { return s.String() }

// DecodeCallState reads a CallState written by a node (the bytes
// StateStore.Load returns).
func DecodeCallState(b []byte) (CallState, error) {
	var s CallState
	if err := json.Unmarshal(b, &s); err != nil {
		return CallState{}, fmt.Errorf("sip: call state: %w", err)
	}
	if s.Version != CallStateVersion {
		return CallState{}, fmt.Errorf("sip: call state version %d (this node reads %d)", s.Version, CallStateVersion)
	}
	return s, nil
}

// mediaSnapshotter is a MediaSession that can be snapshotted (the relay's).
type mediaSnapshotter interface {
	Snapshot() media.SessionSnapshot
}

// Snapshot is the relay session's snapshot (state.go).
func (r *relaySession) Snapshot() media.SessionSnapshot { return r.s.Snapshot() }

// state builds the call's CallState. Loop only.
func (c *call) stateRecord() CallState {
	s := CallState{
		Version: CallStateVersion, Call: c.id, Start: c.start, Answer: c.answerAt,
		TrunkA: c.plan.from.name, TrunkB: c.plan.to.name, Unauth: c.plan.unauth, Trusted: c.plan.trusted,
		RURIUser: c.ruriUser, RURIHost: c.ruriHost,
		A: legState(c.a), B: legState(c.bl),
		Session: CallStateSession{Interval: c.session.interval, Own: c.session.own, Refresh: c.session.refresh,
			Armed: c.sessionArmed},
		AdmKey: c.admKey, Transfers: c.transfers,
	}
	if ms, ok := c.media.(mediaSnapshotter); ok {
		snap := ms.Snapshot()
		s.Media = &snap
	}
	return s
}

func legState(l *leg) CallStateLeg {
	s := CallStateLeg{
		CallID: l.callID, LocalTag: l.localTag, RemoteTag: l.remoteTag,
		LocalURI: l.localURI.String(), LocalName: l.localName,
		RemoteURI: l.remoteURI.String(), RemoteName: l.remoteName, Target: l.remoteTarget.String(),
		LocalCSeq: l.localCSeq, RemoteCSeq: l.remoteCSeq, InviteCSeq: l.inviteCSeq,
		PeerUpdate: l.peerUpdate, Peer100rel: l.peer100rel, PeerTimer: l.peerTimer,
		SDPType: l.lastCT, SDP: string(l.lastSDP),
	}
	if l.trunk != nil {
		s.Trunk = l.trunk.name
	}
	for _, r := range l.routeSet {
		s.RouteSet = append(s.RouteSet, r.String())
	}
	if cn := l.conn; cn != nil {
		s.Identities, s.Peer, s.SNI = cn.identities, cn.remote, cn.sni
	}
	return s
}

// settled reports whether the call is up with nothing in flight that a
// state written now would miss: no offer outstanding, no re-INVITE,
// UPDATE, ACK or transfer under way.
func (c *call) settled() bool {
	if c.state != stConfirmed || c.xfer != nil || c.referAdmit != nil {
		return false
	}
	for _, l := range [2]*leg{c.a, c.bl} {
		if l.pendingOffer() || l.oa == oaEarly || l.awaitAck != nil || l.owedAck != nil ||
			l.inviteIn != nil || l.inviteOut != nil || l.updateIn != nil || l.updateOut != nil {
			return false
		}
	}
	return true
}

// stateTTL is how long the state written now lives: the session interval
// (sip.session_expires when none was negotiated) plus the grace the expiry
// allows (armSession) plus stateGrace.
func (c *call) stateTTL() time.Duration {
	d := c.session.interval
	if d <= 0 {
		d = c.snap.cfg.SIP.SessionExpires
	}
	if d <= 0 {
		d = 30 * time.Minute
	}
	return d + min(d/3, 32*time.Second) + stateGrace
}

// replicate writes the call's state when it is dirty and the call settled.
// Loop only; called after each event with Options.States set.
func (c *call) replicate() {
	if !c.stateDirty || !c.settled() {
		return
	}
	c.stateDirty = false
	b, err := json.Marshal(c.stateRecord())
	if err != nil {
		c.log.Error().Err(err).Msg("call state not encoded")
		return
	}
	ttl := c.stateTTL()
	c.stateWrites++
	c.stateBytes = max(c.stateBytes, len(b))
	c.stateWritten = true
	c.sw.submit(c, stateOp{value: b, ttl: ttl})
	c.stop(c.stateTimer)
	c.stateTimer = c.after(ttl/2, tStateRefresh, nil)
	ev := c.log.Debug()
	if c.stateWrites == 1 {
		ev = c.log.Info()
	}
	ev.Int("bytes", len(b)).Int("writes", c.stateWrites).Dur("ttl", ttl).Msg("call state replicated")
}

// forgetState deletes the call's state at its end (release).
func (c *call) forgetState() {
	if !c.stateWritten {
		return
	}
	c.stateWritten = false
	c.sw.submit(c, stateOp{del: true})
}

// stateOp is one write of a call's state: a put, or the delete.
type stateOp struct {
	value []byte
	ttl   time.Duration
	del   bool
	done  chan<- error // buffered; told the write's result (handoff.go), or errSuperseded
}

// stateWriter writes one call's state in a helper goroutine, one operation
// at a time, the latest first queued replacing any not started: so the
// call's writes reach the store in the order the loop made them, and a
// write never waits in the loop. mu guards next and running (a leaf
// lock, never held across I/O).
type stateWriter struct {
	mu      sync.Mutex
	running bool
	next    *stateOp
}

// submit queues op for call c, starting the writer when idle.
func (w *stateWriter) submit(c *call, op stateOp) {
	w.mu.Lock()
	if w.next != nil && w.next.done != nil {
		w.next.done <- errSuperseded
	}
	w.next = &op
	if w.running {
		w.mu.Unlock()
		return
	}
	w.running = true
	w.mu.Unlock()
	if !c.b.spawn(func() { w.run(c) }) {
		w.run(c) // the B2BUA is closing: write from here
	}
}

// run writes until nothing is queued.
func (w *stateWriter) run(c *call) {
	b := c.b
	for {
		w.mu.Lock()
		op := w.next
		w.next = nil
		if op == nil {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(b.lifetime()), admitTimeout)
		var err error
		if op.del {
			err = b.states.Delete(ctx, c.id)
		} else {
			err = b.states.Put(ctx, c.id, op.value, op.ttl)
		}
		cancel()
		if op.done != nil {
			op.done <- err
		}
		// Unavailable: the store writes it when Redis is back.
		if err != nil && !errors.Is(err, cluster.ErrUnavailable) {
			c.log.Debug().Err(err).Bool("delete", op.del).Msg("call state not written")
		}
	}
}
