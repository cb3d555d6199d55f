package sip

import (
	"net/netip"
	"slices"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/media"
)

// This file is where the SBC's SIP traffic can be watched from outside
// (HEP export to Homer, say): every message received or sent, decrypted,
// with the call's correlation id, which is the same on both legs.

// Tracer receives every SIP message the SBC receives or sends. Trace is
// called on connection readers and on the goroutine that writes: it must
// not block (queue and drop instead) and must not keep Data after it
// returns.
type Tracer interface {
	Trace(TraceEvent)
}

// TraceEvent is one SIP message on the wire.
type TraceEvent struct {
	Time     time.Time
	Received bool // from the peer (false: sent by the SBC)
	Local    netip.AddrPort
	Remote   netip.AddrPort
	Data     []byte // the message as on the wire; valid during Trace only
	Call     string // the call's correlation id, "" outside a call
	Trunk    string // the trunk of that leg of the call, "" outside a call
}

// traceRef is what the tracer needs to know of a SIP Call-ID: the call's
// correlation id and the leg's trunk. An ended call's entries stay until
// until (64*T1: late responses and retransmissions keep their id).
type traceRef struct {
	call  string
	trunk string
	until time.Time // zero while the call is up
}

// trace hands a message to the tracer (no-op without one). data is the
// message's bytes when the caller has them, else the message is
// serialised here.
func (b *B2BUA) trace(c *conn, received bool, m sip.Message, data []byte) {
	if b.tracer == nil {
		return
	}
	b.traceAt(time.Now(), c, received, m, data)
}

// traceAt is trace with the time the message was seen (a received message
// is traced after it was handled, so that the INVITE that starts a call
// carries the call's id).
func (b *B2BUA) traceAt(at time.Time, c *conn, received bool, m sip.Message, data []byte) {
	ev := TraceEvent{Time: at, Received: received, Data: data}
	if ap, err := netip.ParseAddrPort(c.nc.LocalAddr().String()); err == nil {
		ev.Local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if ap, err := netip.ParseAddrPort(c.remote); err == nil {
		ev.Remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if cid := callIDOf(m); cid != "" {
		b.mu.Lock()
		r, ok := b.traceIDs[cid]
		b.mu.Unlock()
		if ok {
			if b.traceOff[r.trunk] {
				return
			}
			ev.Call, ev.Trunk = r.call, r.trunk
		}
	}
	if ev.Data == nil {
		ev.Data = []byte(m.String())
	}
	b.tracer.Trace(ev)
}

// CallInfo is a live view of one call (the metrics listener's /calls and
// `edge-sbc calls`).
type CallInfo struct {
	Call    string              `json:"call"`
	TrunkA  string              `json:"trunk_a"`
	TrunkB  string              `json:"trunk_b"`
	CallIDA string              `json:"call_id_a"`
	CallIDB string              `json:"call_id_b"`
	State   string              `json:"state"`
	Start   time.Time           `json:"start"`
	Answer  *time.Time          `json:"answer,omitempty"`
	Media   []media.StreamStats `json:"media,omitempty"`
}

// callPub is what a call's loop publishes for readers outside it.
type callPub struct {
	state    callState
	trunkB   string
	callIDB  string
	answerAt time.Time
}

// publish makes the call's current state visible to Calls.
func (c *call) publish() {
	c.pub.Store(&callPub{state: c.state, trunkB: c.plan.to.name, callIDB: c.bl.callID, answerAt: c.answerAt})
}

// Calls returns a view of the calls in progress, oldest first.
func (b *B2BUA) Calls() []CallInfo {
	b.mu.Lock()
	cs := make([]*call, 0, len(b.calls))
	for c := range b.calls {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	out := make([]CallInfo, 0, len(cs))
	for _, c := range cs {
		p := c.pub.Load()
		if p == nil {
			continue
		}
		ci := CallInfo{Call: c.id, TrunkA: c.plan.from.name, TrunkB: p.trunkB, CallIDA: c.a.callID, CallIDB: p.callIDB,
			State: p.state.String(), Start: c.start}
		if !p.answerAt.IsZero() {
			at := p.answerAt
			ci.Answer = &at
		}
		if c.media != nil {
			ci.Media = c.media.Stats()
		}
		out = append(out, ci)
	}
	slices.SortFunc(out, func(x, y CallInfo) int { return x.Start.Compare(y.Start) })
	return out
}
