package media

import "time"

// pendingOffer is an offer staged by Offer and not yet committed by Answer
// or withdrawn by Reject (see "Offer/answer state" in doc.go). It holds
// what a rollback needs. Guarded by the session's opMu.
type pendingOffer struct {
	from    Side
	mlines  int
	started time.Time
	answers int // ProvisionalAnswer calls applied so far

	// agreed is the stream layout (by m-line index) before the offer.
	agreed []*stream
	// snaps restore the streams of agreed to their agreed state, and the
	// streams the offer created to the state they were created in.
	snaps []streamSnap
	// created are the streams the offer opened: closed by a rollback.
	created []*stream
	// removed are the agreed streams the offer drops (port 0, or another
	// media type at their index). They keep relaying until the answer
	// commits, which closes them; a rollback keeps them.
	removed []*stream
}

// streamSnap is the signalling state of one stream at one point of the
// negotiation: what an offer or an answer may change. Endpoints and
// contexts are immutable once published, so a snapshot holds pointers.
type streamSnap struct {
	st       *stream
	legs     [2]legSnap
	dir      [2]direction
	clocks   *clockTable
	content  string
	kind     mediaKind
	answered bool
	neg      secNeg // SDES negotiation (terminating streams)
}

type legSnap struct {
	sigRTP, sigRTCP, remRTP, remRTCP *endpoint
	remote, local                    *cryptoCtx
}

// snapshot records the signalling state of st. Caller holds opMu.
func snapshot(st *stream) streamSnap {
	sn := streamSnap{
		st: st, dir: st.dir, clocks: st.clocks.Load(),
		content: st.content, kind: st.kind, answered: st.answered.Load(),
	}
	for i := range st.legs {
		l := &st.legs[i]
		sn.legs[i] = legSnap{
			sigRTP: l.sigRTP.Load(), sigRTCP: l.sigRTCP.Load(),
			remRTP: l.remRTP.Load(), remRTCP: l.remRTCP.Load(),
			remote: l.remote.Load(), local: l.local.Load(),
		}
	}
	if st.sec != nil {
		sn.neg = st.sec.neg
	}
	return sn
}

// restore puts the stream back into the recorded state. A destination is
// reset only where the negotiation changed the signalled address, so a
// source latched meanwhile behind an unchanged address survives. Caller
// holds opMu.
func (sn *streamSnap) restore() {
	st := sn.st
	for i := range st.legs {
		l, o := &st.legs[i], &sn.legs[i]
		if l.sigRTP.Load() != o.sigRTP {
			l.sigRTP.Store(o.sigRTP)
			l.remRTP.Store(o.remRTP)
		}
		if l.sigRTCP.Load() != o.sigRTCP {
			l.sigRTCP.Store(o.sigRTCP)
			l.remRTCP.Store(o.remRTCP)
		}
		if l.remote.Load() != o.remote {
			l.remote.Store(o.remote)
		}
		if l.local.Load() != o.local {
			l.local.Store(o.local)
		}
	}
	st.dir = sn.dir
	st.held.Store(st.dir[SideA] != dirSendRecv || st.dir[SideB] != dirSendRecv)
	st.clocks.Store(sn.clocks)
	st.content = sn.content
	if st.kind != sn.kind {
		st.kind = sn.kind
		st.applyDSCP()
	}
	st.answered.Store(sn.answered)
	if st.sec != nil {
		st.sec.neg = sn.neg
	}
}

// rollback restores the state agreed before the pending offer and clears
// it. It returns the streams the offer created, which the caller closes (or
// reuses for a replacing offer); the streams the offer removed were never
// closed and relay again as agreed. Caller holds opMu; s.pending != nil.
func (s *Session) rollback() []*stream {
	p := s.pending
	for i := range p.snaps {
		p.snaps[i].restore()
	}
	s.setStreams(p.agreed)
	s.pending = nil
	return p.created
}

// takeReusable returns a stream of reuse (created by a replaced offer from
// the same side) that fits m-line index of the new offer, and removes it
// from reuse: the replacing offer keeps its ports.
func takeReusable(reuse []*stream, index int, media string, isRTP bool) *stream {
	for i, st := range reuse {
		if st != nil && st.index == index && st.media == media && st.isRTP == isRTP {
			reuse[i] = nil
			return st
		}
	}
	return nil
}
