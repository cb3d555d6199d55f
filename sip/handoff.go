package sip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// This file is the hand-over of a cluster node that stops
// (shutdown.handoff): instead of ending its answered calls with BYE, the
// node writes their state once more and lets them go without a word to
// the peers, for the node that takes them over when the service address
// moves (takeover.go). Nothing of a call handed over is released in the
// cluster (the command removes this node's counts at once with
// cluster.Leave) nor deleted (its state is what the taker reads), and no
// CDR is written: the node that ends the call writes its one CDR.

// ErrHandoff is wrapped by the errors of a call that could not be handed
// over.
var ErrHandoff = errors.New("sip: call not handed over")

// errSuperseded: a state write with a waiter was replaced by a later one
// before it started (the call changed or ended meanwhile).
var errSuperseded = errors.New("sip: state write superseded")

// HandoffResult says what Handoff did.
type HandoffResult struct {
	HandedOff int     // confirmed calls whose state is in the store, released here without BYE nor CDR
	Left      int     // calls not handed over (in setup, ending, or failed): Close ends them as a shutdown does
	Failed    []error // one per confirmed call whose state could not be written (wrapping ErrHandoff)
}

// handoffStep is a call loop's answer to one step of the hand-over: ok
// when the call goes on to the next step; done, after the first, reports
// the state write (nil: nothing to wait for).
type handoffStep struct {
	ok   bool
	done <-chan error
}

// Handoff hands every confirmed call over to the cluster: it writes each
// call's state now (the last settled one when an exchange is in flight)
// and waits for the writes, then releases each call whose write succeeded
// without BYE, without releasing its cluster slot, without deleting its
// state and without a CDR. ctx bounds the whole; a call not handed over
// in time stays, for Close. Calls in setup or ending stay too. Call it
// after Drain (no new calls) and before Close; without Options.States it
// hands nothing over.
func (b *B2BUA) Handoff(ctx context.Context) HandoffResult {
	b.mu.Lock()
	cs := make([]*call, 0, len(b.calls))
	for c := range b.calls {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	var res HandoffResult
	if b.states == nil {
		res.Left = len(cs)
		return res
	}
	// Each step is posted to every call before any answer is awaited: the
	// writes run side by side.
	step := func(cs []*call, second bool) []handoffStep {
		chs := make([]chan handoffStep, len(cs))
		for i, c := range cs {
			chs[i] = make(chan handoffStep, 1)
			c.post(event{kind: evHandoff, handoff: chs[i], handoffRelease: second})
		}
		out := make([]handoffStep, len(cs))
		for i, ch := range chs {
			select {
			case out[i] = <-ch:
			case <-ctx.Done():
			}
		}
		return out
	}
	var written []*call
	for i, st := range step(cs, false) {
		if !st.ok {
			continue
		}
		if st.done != nil {
			var err error
			select {
			case err = <-st.done:
			case <-ctx.Done():
				err = ctx.Err()
			}
			if err != nil {
				res.Failed = append(res.Failed, fmt.Errorf("%w: %s: state write: %w", ErrHandoff, cs[i].id, err))
				continue
			}
		}
		written = append(written, cs[i])
	}
	for _, st := range step(written, true) {
		if st.ok {
			res.HandedOff++
		}
	}
	res.Left = len(cs) - res.HandedOff
	return res
}

// onHandoff is one step of the hand-over in the call's loop: the first
// writes the state (a confirmed call only), the second lets the call go.
func (c *call) onHandoff(ev event) {
	reply := func(st handoffStep) {
		select {
		case ev.handoff <- st:
		default:
		}
	}
	if c.state != stConfirmed {
		reply(handoffStep{})
		return
	}
	if ev.handoffRelease {
		c.handedOff = true
		c.log.Info().Msg("call handed over to the cluster: released without BYE (the node that takes it over ends it)")
		c.release()
		reply(handoffStep{ok: true})
		return
	}
	if !c.settled() {
		if !c.stateWritten {
			reply(handoffStep{})
			return
		}
		// An exchange is in flight: its last settled state stands, as
		// for a node that is lost.
		c.log.Info().Msg("call handed over with its last settled state (an exchange is in flight)")
		reply(handoffStep{ok: true})
		return
	}
	b, err := json.Marshal(c.stateRecord())
	if err != nil {
		c.log.Error().Err(err).Msg("call state not encoded: not handed over")
		reply(handoffStep{})
		return
	}
	c.stateDirty = false
	c.stateWrites++
	c.stateBytes = max(c.stateBytes, len(b))
	c.stateWritten = true
	done := make(chan error, 1)
	c.sw.submit(c, stateOp{value: b, ttl: c.stateTTL(), done: done})
	reply(handoffStep{ok: true, done: done})
}
