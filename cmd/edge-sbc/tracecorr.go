package main

import (
	"bytes"
	"sync"
	"time"

	"github.com/edge-sbc/edge-sbc/sip"
)

// The SIP layer gives each traced message its call's correlation id, but
// only while the call is registered: the INVITE that starts a call is
// traced before the call exists, and the messages that follow its end (the
// 200 to a BYE, retransmissions) after it is forgotten. correlator fills
// those in from the SIP Call-ID, so that a collector sees every message of
// a call, both legs, under one id:
//
//   - a Call-ID seen with a correlation id is remembered for corrLinger
//     after it was last seen, and messages without one get it;
//   - a received initial INVITE (no To tag) of an unknown Call-ID is held
//     until the next message of that Call-ID (the SBC answers every INVITE
//     at once: 100 Trying for a call, a final response for a refusal) and
//     released before it, with that message's id. An INVITE that nothing
//     follows within corrHold is dropped: the only such INVITEs are those of
//     trunks with trace: false, whose messages the SIP layer does not trace.
//
// It never blocks (one mutex around map updates and the non-blocking emit)
// and starts no goroutine: expired entries are swept as messages pass.
type correlator struct {
	emit func(sip.TraceEvent)

	mu        sync.Mutex
	known     map[string]knownCall // SIP Call-ID
	held      map[string]sip.TraceEvent
	lastSweep time.Time
}

type knownCall struct {
	corr    string
	expires time.Time
}

const (
	corrLinger   = 32 * time.Second // 64*T1: a transaction's lifetime
	corrHold     = 2 * time.Second
	corrMaxKnown = 200000
	corrMaxHeld  = 1024
	corrSweep    = time.Second
)

func newCorrelator(emit func(sip.TraceEvent)) *correlator {
	return &correlator{emit: emit, known: map[string]knownCall{}, held: map[string]sip.TraceEvent{}}
}

// Trace implements sip.Tracer.
func (c *correlator) Trace(ev sip.TraceEvent) {
	callID, toTag, invite := sipIDs(ev.Data)
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(now)
	if callID == "" {
		c.emit(ev)
		return
	}
	if ev.Call != "" {
		if _, ok := c.known[callID]; ok || len(c.known) < corrMaxKnown {
			c.known[callID] = knownCall{corr: ev.Call, expires: now.Add(corrLinger)}
		}
	} else if k, ok := c.known[callID]; ok {
		ev.Call = k.corr
	}
	if h, ok := c.held[callID]; ok {
		delete(c.held, callID)
		h.Call = ev.Call
		c.emit(h)
	} else if ev.Call == "" && ev.Received && invite && !toTag && len(c.held) < corrMaxHeld {
		ev.Data = bytes.Clone(ev.Data) // Trace must not keep Data
		c.held[callID] = ev
		return
	}
	c.emit(ev)
}

// sweep forgets expired Call-IDs and drops INVITEs held too long.
func (c *correlator) sweep(now time.Time) {
	if now.Sub(c.lastSweep) < corrSweep {
		return
	}
	c.lastSweep = now
	for id, k := range c.known {
		if now.After(k.expires) {
			delete(c.known, id)
		}
	}
	for id, h := range c.held {
		if now.Sub(h.Time) > corrHold {
			delete(c.held, id)
		}
	}
}

// sipIDs reads the Call-ID, whether To has a tag, and whether the message
// is an INVITE request, from a SIP message's header (long or compact
// header names; the body is not read).
func sipIDs(msg []byte) (callID string, toTag, invite bool) {
	invite = bytes.HasPrefix(msg, []byte("INVITE "))
	rest := msg
	if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		rest = rest[i+1:]
	} else {
		return "", false, invite
	}
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break // end of the header
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		switch {
		case bytes.EqualFold(name, []byte("Call-ID")) || bytes.EqualFold(name, []byte("i")):
			callID = string(bytes.TrimSpace(value))
		case bytes.EqualFold(name, []byte("To")) || bytes.EqualFold(name, []byte("t")):
			toTag = bytes.Contains(bytes.ToLower(value), []byte(";tag="))
		}
	}
	return callID, toTag, invite
}
