package sip

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/dnsresolve"
)

// This file is the owner of a call: its state, the one function that
// changes it, the event loop that serialises everything that happens to
// the call, and the one release that runs when it ends. See doc.go for the
// state diagram and why one event loop per call.

// callState is where a call is in its life.
type callState uint8

const (
	stInit        callState = iota // INVITE admitted; leg B not sent yet (resolving, dialing)
	stCalling                      // INVITE sent to a target, no response yet
	stProceeding                   // a target answered 100 Trying
	stEarly                        // early dialog(s): 18x with a To tag relayed to the caller
	stConnecting                   // 2xx sent to the caller, its ACK awaited
	stConfirmed                    // the caller's ACK arrived: the call is up
	stTerminating                  // ending; waiting for what must still be sent (a CANCEL owed once a target rings, a BYE owed once the caller ACKs)
	stTerminated                   // released: nothing of the call is left
)

func (s callState) String() string {
	return [...]string{"init", "calling", "proceeding", "early", "connecting", "confirmed", "terminating", "terminated"}[s]
}

// transitions lists the allowed state changes (setState refuses others).
var transitions = [...][]callState{
	stInit:        {stCalling, stTerminating, stTerminated},
	stCalling:     {stCalling, stProceeding, stEarly, stConnecting, stTerminating, stTerminated},
	stProceeding:  {stCalling, stProceeding, stEarly, stConnecting, stTerminating, stTerminated},
	stEarly:       {stCalling, stEarly, stConnecting, stTerminating, stTerminated},
	stConnecting:  {stConfirmed, stTerminating, stTerminated},
	stConfirmed:   {stTerminating, stTerminated},
	stTerminating: {stTerminated},
	stTerminated:  {},
}

// setState is the one place a call's state changes.
func (c *call) setState(next callState) {
	if c.state == next {
		return
	}
	ok := false
	for _, s := range transitions[c.state] {
		if s == next {
			ok = true
			break
		}
	}
	if !ok {
		c.log.Error().Stringer("from", c.state).Stringer("to", next).Msg("illegal call state change refused")
		return
	}
	c.log.Debug().Stringer("from", c.state).Stringer("to", next).Msg("call state")
	c.state = next
	if next == stConfirmed {
		c.stateDirty = true
	}
	c.publish()
}

func (c *call) inSetup() bool { return c.state <= stEarly }

// evKind names what happened to a call.
type evKind uint8

const (
	evStart        evKind = iota // begin placing leg B
	evResolved                   // the destination's targets (or an error)
	evDialed                     // a connection to a target (or an error)
	evRequest                    // a request inside one of the call's dialogs
	evAck                        // an ACK for a 2xx the SBC sent
	evCancel                     // the caller's CANCEL
	evResponse                   // a response on one of the call's client transactions
	evTxTimeout                  // a client transaction got no final response (Timer B/F)
	evTxError                    // a client transaction's connection ended
	evStray2xx                   // a 2xx to leg B's INVITE after its transaction ended (fork, retransmission)
	evTimer                      // one of the call's timers fired
	evMediaTimeout               // no media (media.timeout)
	evConnLost                   // a connection the call uses ended
	evHangup                     // the SBC ends the call (drain, shutdown)
	evAdmitted                   // a cluster admission's result (admission.go)
	evOverloaded                 // waited longer than limits.setup_queue_timeout (overload.go)
	evTakeover                   // the call was taken over from another node (takeover.go)
	evRedialed                   // a connection toward a leg's peer of a call taken over (or an error)
	evHandoff                    // a step of the hand-over to the cluster (handoff.go)
)

func (k evKind) String() string {
	return [...]string{"start", "resolved", "dialed", "request", "ack", "cancel", "response", "tx_timeout",
		"tx_error", "stray_2xx", "timer", "media_timeout", "conn_lost", "hangup", "admitted", "overloaded", "takeover", "redialed", "handoff"}[k]
}

// event is one thing that happened to a call.
type event struct {
	kind    evKind
	conn    *conn
	req     *sip.Request
	stx     *serverTx
	res     *sip.Response
	ctx     *clientTx
	side    Side   // evRequest, evAck: the leg the request came on
	tagA    string // evRequest from A: the To tag (which early dialog)
	timer   *callTimer
	targets []dnsresolve.Target
	att     *attempt
	err     error
	reason  string
	xfer    bool // evResolved, evDialed, evStray2xx: for the transfer in progress
	ref     any  // evDialed of a transfer: its *xferAttempt
	adm     *admitResult
	// evHandoff: where the step's answer goes, and whether it is the
	// release (the second step).
	handoff        chan<- handoffStep
	handoffRelease bool
}

func (e event) name() string {
	switch {
	case e.req != nil:
		return fmt.Sprintf("%s %s %s", e.kind, e.side, e.req.Method)
	case e.res != nil:
		m := ""
		if cs := e.res.CSeq(); cs != nil {
			m = string(cs.MethodName)
		}
		return fmt.Sprintf("%s %d %s", e.kind, e.res.StatusCode, m)
	case e.timer != nil:
		return fmt.Sprintf("%s %s", e.kind, e.timer.kind)
	}
	return e.kind.String()
}

// maxQueue bounds a call's queue of events read from the network: a reader
// posting beyond it waits (TCP backpressure on that connection).
const maxQueue = 64

// call pairs the two dialogs of one bridged call.
//
// Lock rules: qmu guards the event queue only. Every other field is owned
// by the event loop (drain): it is read and written only while an event is
// handled, never from another goroutine, so it needs no lock. Fields set
// before the first event is posted (b, id, log, snap, plan, start, ctx,
// cancel, a and bl's identifiers) are immutable afterwards. The loop may
// take, in this order and never two at once, the B2BUA's mu (dialogs,
// calls), the transaction layer's mu, a connection's mu, the planner's mu;
// it does network I/O (writes, bounded by limits.write_timeout) with none
// of them held.
type call struct {
	b      *B2BUA
	id     string // correlation id in every log line of the call
	log    zerolog.Logger
	snap   *policySnapshot
	plan   *callPlan
	start  time.Time
	ctx    context.Context // helper goroutines (DNS, dial) of the call
	cancel context.CancelFunc

	pub atomic.Pointer[callPub] // the state published for Calls (written by the loop)

	qmu     sync.Mutex // guards queue, qhead, running
	queue   []event    // queue[qhead:] wait; the backing array serves the call's life
	qhead   int
	running bool
	room    *sync.Cond // signalled when the queue shrinks below maxQueue

	// Owned by the event loop.
	state       callState
	a, bl       *leg // a: caller side (we are UAS); bl: callee side (we are UAC)
	inv         *serverTx
	media       MediaSession
	offerB      []byte // the body of the INVITE sent to B
	offerBType  string
	targets     []dnsresolve.Target
	nextTarget  int
	attempts    []*attempt
	active      *attempt
	forks       []*fork
	winner      *fork
	redirects   int
	ruriUser    string // the Request-URI user sent to B
	ruriHost    string // the Request-URI host as the caller (or a 3xx) gave it
	causes      []string
	timers      map[*callTimer]struct{}
	stxs        map[*serverTx]struct{}
	ctxs        map[*clientTx]struct{}
	conns       map[*conn]struct{}
	dialogKeys  []string
	tAnswer     *callTimer
	byeAfterAck bool // B hung up before the caller's ACK: BYE the caller once it arrives
	cancelled   bool // the caller cancelled
	session     sessionTimer
	streams     int              // m-lines of the caller's offer (the setup gate's room check)
	xfer        *transfer        // a blind transfer in progress
	oldMedia    []map[string]any // media summaries of sessions replaced by transfers
	transfers   int

	// Cluster admission (admission.go); unused without Options.Admitter.
	admKey      string        // the key the cluster counts the call under ("": none)
	admSeq      int           // keys made for transfers
	admitting   bool          // a helper admits: its evAdmitted decides
	notAdmitted bool          // refused by admission: no CDR, as a local refusal
	referAdmit  *pendingRefer // a REFER waiting for its admission

	// State replication (state.go); unused without Options.States.
	stateDirty   bool // something another node needs changed since the last write
	stateWritten bool // a state was written: delete it at the end
	stateWrites  int
	stateBytes   int // the largest state written
	stateTimer   *callTimer
	sessionArmed time.Time // when the session expiry was last armed
	sw           stateWriter

	// Takeover (takeover.go): set on a call another node carried.
	takenOver *takeoverInfo
	// Hand-over (handoff.go): released for another node, without BYE.
	handedOff bool

	// For the CDR.
	answerAt  time.Time
	endAt     time.Time
	finalCode int
	hangupBy  string
	endReason string
	ended     bool
}

// post queues an event for the call's owner and starts the loop when it is
// idle. Events from the network wait while the queue is full.
func (c *call) post(ev event) {
	c.qmu.Lock()
	if ev.conn != nil && (ev.kind == evRequest || ev.kind == evAck || ev.kind == evResponse || ev.kind == evCancel) {
		for len(c.queue)-c.qhead >= maxQueue && c.running {
			c.room.Wait()
		}
	}
	c.queue = append(c.queue, ev)
	if c.running {
		c.qmu.Unlock()
		return
	}
	c.running = true
	c.qmu.Unlock()
	if !c.b.spawn(c.drain) {
		c.qmu.Lock()
		c.running = false
		c.queue, c.qhead = nil, 0
		c.qmu.Unlock()
	}
}

// drain is the call's event loop: it handles queued events one at a time,
// in order, and exits when the queue is empty (an idle call holds no
// goroutine).
func (c *call) drain() {
	for {
		c.qmu.Lock()
		if c.qhead == len(c.queue) {
			c.running = false
			c.queue, c.qhead = c.queue[:0], 0 // kept for the next events
			c.qmu.Unlock()
			return
		}
		ev := c.queue[c.qhead]
		c.queue[c.qhead] = event{}
		c.qhead++
		if c.qhead >= 2*maxQueue && 2*c.qhead >= len(c.queue) {
			// A long busy spell: move what waits to the front.
			n := copy(c.queue, c.queue[c.qhead:])
			clear(c.queue[n:])
			c.queue, c.qhead = c.queue[:n], 0
		}
		if len(c.queue)-c.qhead < maxQueue {
			c.room.Broadcast()
		}
		c.qmu.Unlock()
		c.handle(ev)
	}
}

// handle is where every event of the call is handled.
func (c *call) handle(ev event) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error().Interface("panic", r).Str("event", ev.name()).Msg("call handler panic recovered: ending call")
			if c.state != stTerminated {
				c.terminate("sbc", "internal error", 500)
			}
		}
	}()
	if h := c.b.hooks; h != nil && h.Event != nil {
		h.Event(c.id, ev.name())
	}
	if c.state == stTerminated {
		c.afterEnd(ev)
		return
	}
	switch ev.kind {
	case evStart:
		c.originate()
	case evResolved:
		if ev.xfer {
			c.onXferResolved(ev)
		} else {
			c.onResolved(ev)
		}
	case evDialed:
		if ev.xfer {
			c.onXferDialed(ev)
		} else {
			c.onDialed(ev)
		}
	case evRequest:
		c.onRequest(ev)
	case evAck:
		c.onAck(ev)
	case evCancel:
		c.onCancel()
	case evResponse:
		c.onResponse(ev)
	case evTxTimeout, evTxError:
		c.onTxFailed(ev)
	case evStray2xx:
		c.onStray2xx(ev)
	case evTimer:
		if _, live := c.timers[ev.timer]; live {
			delete(c.timers, ev.timer)
			c.onTimer(ev.timer)
		}
	case evMediaTimeout:
		c.log.Warn().Msg("no media: ending call")
		c.terminate("sbc", "media timeout", 0)
	case evConnLost:
		c.onConnLost(ev.conn)
	case evHangup:
		c.terminate("sbc", ev.reason, 503)
	case evOverloaded:
		c.failSetup(refuseOverloaded, "overload: waited longer than limits.setup_queue_timeout")
	case evAdmitted:
		c.onAdmitted(ev.adm)
	case evTakeover:
		c.onTakeover()
	case evRedialed:
		c.onRedialed(ev)
	case evHandoff:
		c.onHandoff(ev)
	}
	if c.b.states != nil && c.stateDirty {
		c.replicate()
	}
}

// afterEnd answers what still arrives for a released call.
func (c *call) afterEnd(ev event) {
	switch ev.kind {
	case evRequest:
		if ev.stx != nil {
			c.b.reject(ev.stx, refuseNoDialog, "", "")
		}
	case evResponse, evStray2xx:
		if ev.res != nil && ev.res.IsSuccess() && isInviteResponse(ev.res) && ev.conn != nil {
			c.b.ackAndBye(ev.conn, ev.res)
		}
	case evAdmitted:
		c.afterAdmitted(ev.adm)
	case evHandoff:
		ev.handoff <- handoffStep{} // buffered: the call is gone
	}
}

// timerKind names a call timer.
type timerKind uint8

const (
	tAnswer        timerKind = iota // sip.answer_timeout
	tProvisional                    // a target's sip.provisional_timeout (data: *attempt)
	tRetransmit2xx                  // resend a 2xx until its ACK (data: *leg)
	tAckWait                        // no ACK for a 2xx within 64*T1 (data: *leg)
	tPrackWait                      // no PRACK for a reliable 18x (data: *fork)
	tSessionExpiry                  // RFC 4028: no refresh in time
	tRefresh                        // RFC 4028: the SBC refreshes leg B
	tTransfer                       // the transfer target did not answer (data: *transfer)
	tStateRefresh                   // the replicated state is half its TTL old (state.go)
)

func (k timerKind) String() string {
	return [...]string{"answer", "provisional", "retransmit_2xx", "ack_wait", "prack_wait", "session_expiry", "refresh", "transfer", "state_refresh"}[k]
}

// callTimer is a timer of the call: when it fires, an event is posted; a
// stopped timer's event is ignored.
type callTimer struct {
	kind timerKind
	data any
	t    *time.Timer
}

// after starts a call timer.
func (c *call) after(d time.Duration, kind timerKind, data any) *callTimer {
	ct := &callTimer{kind: kind, data: data}
	c.timers[ct] = struct{}{}
	ct.t = time.AfterFunc(d, func() { c.post(event{kind: evTimer, timer: ct}) })
	return ct
}

// stop stops a call timer (nil is fine).
func (c *call) stop(ct *callTimer) {
	if ct == nil {
		return
	}
	ct.t.Stop()
	delete(c.timers, ct)
}

func (c *call) onTimer(ct *callTimer) {
	switch ct.kind {
	case tAnswer:
		c.log.Info().Dur("answer_timeout", c.snap.cfg.SIP.AnswerTimeout).Msg("no answer: ending call")
		c.failSetup(refuseNoAnswer, "no answer")
	case tProvisional:
		c.provisionalTimeout(ct.data.(*attempt))
	case tRetransmit2xx:
		c.retransmit2xx(ct.data.(*leg))
	case tAckWait:
		c.ackTimeout(ct.data.(*leg))
	case tPrackWait:
		f := ct.data.(*fork)
		c.log.Info().Msg("no PRACK for a reliable provisional response")
		f.relA, f.prackTimer = nil, nil
		c.nextReliable(f)
	case tSessionExpiry:
		c.log.Info().Dur("session_expires", c.session.interval).Msg("session timer expired")
		c.terminate("sbc", "session timer expired", 0)
	case tRefresh:
		c.refresh()
	case tTransfer:
		c.xferTimeout(ct.data.(*transfer))
	case tStateRefresh:
		c.stateTimer, c.stateDirty = nil, true
	}
}

// track notes that the call uses a connection (its loss ends the call).
func (c *call) track(cn *conn) {
	if cn == nil {
		return
	}
	if _, ok := c.conns[cn]; ok {
		return
	}
	c.conns[cn] = struct{}{}
	cn.attach(c)
	if cn.closed() {
		// It ended before we attached: the B2BUA's report is gone.
		c.post(event{kind: evConnLost, conn: cn})
	}
}

// sendReq sends a request as a client transaction of the call.
func (c *call) sendReq(cn *conn, req *sip.Request, ref any) (*clientTx, error) {
	if cn == nil {
		return nil, fmt.Errorf("%w: no connection", ErrConnClosed)
	}
	tx, err := c.b.send(cn, req, c, ref)
	if err != nil {
		return nil, err
	}
	c.ctxs[tx] = struct{}{}
	c.track(cn)
	return tx, nil
}

// respond answers one of the call's server transactions.
func (c *call) respond(tx *serverTx, res *sip.Response) {
	c.b.respond(tx, res)
	if res.StatusCode >= 200 {
		delete(c.stxs, tx)
	}
}

// terminate ends the call from any state: it records the end once (who,
// why, the code for the CDR), answers or cancels what is in progress,
// sends BYE where a dialog is up, and releases the call as soon as nothing
// is owed (maybeRelease).
func (c *call) terminate(by, reason string, code int) {
	c.endTransfer()
	if !c.ended {
		c.ended = true
		c.endAt = time.Now()
		c.hangupBy, c.endReason = by, reason
		if c.finalCode == 0 && code != 0 {
			c.finalCode = code
		}
	}
	switch {
	case c.inSetup():
		if c.inv != nil && !c.inv.isFinal() {
			r := refuseEnded
			switch {
			case code == 487:
				r = refuseTerminated
			case code >= 400:
				r.code = code
			}
			c.respond(c.inv, c.b.refusalResponse(c.inv.req, r, c.a.localTag, c.id))
			if c.finalCode == 0 {
				c.finalCode = r.code
			}
		}
		c.cancelAll()
	case c.state == stConnecting:
		c.flushOwedAck(c.bl)
		if by != "b" {
			c.bye(c.bl)
		}
		switch {
		case by == "a":
			c.stopAwaitAck(c.a) // the caller's BYE came before its ACK
		case c.a.awaitAck != nil:
			// RFC 3261 §15: no BYE on the caller's leg before its ACK.
			c.byeAfterAck = true
		default:
			c.bye(c.a)
		}
	case c.state == stConfirmed:
		c.flushOwedAck(c.a)
		c.flushOwedAck(c.bl)
		if by != "a" {
			c.bye(c.a)
		}
		if by != "b" {
			c.bye(c.bl)
		}
	}
	if c.state != stTerminating {
		c.setState(stTerminating)
	}
	c.maybeRelease()
}

// maybeRelease releases the call when nothing is owed any more.
func (c *call) maybeRelease() {
	if c.state != stTerminating {
		return
	}
	for _, at := range c.attempts {
		if at.tx != nil && !at.done && !at.ringing {
			return // a CANCEL is owed once it rings (bounded by Timer B)
		}
	}
	if c.byeAfterAck {
		return // bounded by the ACK wait
	}
	if c.a.byeOwed || c.bl.byeOwed {
		return // a call taken over: bounded by the dial (takeoverDialTimeout)
	}
	c.release()
}

// release frees everything the call holds. It runs exactly once.
func (c *call) release() {
	if c.state == stTerminated {
		return
	}
	c.setState(stTerminated)
	c.cancel()
	for ct := range c.timers {
		ct.t.Stop()
	}
	clear(c.timers)
	for tx := range c.stxs {
		// A call handed over answers nothing more: what is in flight
		// times out at the peer, as when a node is lost.
		if !tx.isFinal() && !c.handedOff {
			r := refuseNoDialog
			if tx.req.IsInvite() {
				r = refuseTerminated
			}
			c.b.reject(tx, r, "", c.id)
		}
		if !tx.req.IsInvite() {
			c.b.txl.dropServer(tx)
		}
	}
	clear(c.stxs)
	for tx := range c.ctxs {
		c.b.txl.dropClient(tx)
	}
	clear(c.ctxs)
	for cn := range c.conns {
		cn.detach(c)
	}
	clear(c.conns)
	c.b.forget(c)
	var mstats map[string]any
	if c.media != nil {
		mstats = c.media.Close()
	}
	if len(c.oldMedia) > 0 {
		if mstats == nil {
			mstats = map[string]any{}
		}
		mstats["before_transfer"] = c.oldMedia
	}
	c.b.planner.release(c.plan)
	if c.handedOff {
		// Its slot and state are the taker's now (cluster.Leave removes
		// this node's counts); the taker writes the CDR.
		c.attempts, c.forks, c.winner, c.active, c.inv = nil, nil, nil, nil, nil
		return
	}
	c.releaseShared(c.admKey)
	c.admKey = ""
	c.forgetState()
	if !c.ended {
		c.endAt = time.Now()
	}
	if c.notAdmitted {
		// As a call the planner refuses: no CDR, no call outcome.
		c.attempts, c.forks, c.winner, c.active, c.inv = nil, nil, nil, nil, nil
		return
	}
	c.b.metrics.CallsTotal.WithLabelValues(c.plan.from.name, c.plan.to.name, outcome(!c.answerAt.IsZero(), c.finalCode, c.endReason)).Inc()
	c.cdr(mstats)
	// Drop references the GC should not have to chase through timers that
	// may still be queued.
	c.attempts, c.forks, c.winner, c.active, c.inv = nil, nil, nil, nil, nil
}

// cdr writes the call-end line (the call detail record) and hands the
// record to the CDR sink.
func (c *call) cdr(mstats map[string]any) {
	r := CDR{
		Call: c.id, CallIDA: c.a.callID, TrunkA: c.plan.from.name, CallIDB: c.bl.callID, TrunkB: c.plan.to.name,
		Start: c.start, End: c.endAt, FinalCode: c.finalCode, HangupBy: c.hangupBy, Reason: c.endReason, Media: mstats,
	}
	if !c.answerAt.IsZero() {
		at := c.answerAt
		r.Answer = &at
		r.DurationSec = c.endAt.Sub(c.answerAt).Seconds()
	}
	ev := c.log.Info().Str("event", "call_end").
		Str("call_id_a", r.CallIDA).Str("trunk_a", r.TrunkA).Str("call_id_b", r.CallIDB).Str("trunk_b", r.TrunkB).
		Time("start", r.Start).Time("end", r.End).Float64("duration_s", r.DurationSec).
		Int("final_code", r.FinalCode).Str("hangup_by", r.HangupBy).Str("reason", r.Reason)
	if r.Answer != nil {
		ev = ev.Time("answer", *r.Answer)
	}
	if mstats != nil {
		ev = ev.Interface("media", mstats)
	}
	if c.stateWrites > 0 {
		ev = ev.Int("state_writes", c.stateWrites).Int("state_bytes", c.stateBytes)
	}
	ev.Msg("call ended")
	if c.b.cdrs != nil {
		c.b.cdrs.Write(r)
	}
}

// onConnLost ends the call when a connection it depends on ended.
func (c *call) onConnLost(cn *conn) {
	delete(c.conns, cn)
	switch {
	case cn == c.a.conn:
		c.log.Info().Str("remote", cn.remote).Msg("caller's TLS connection lost: ending call")
		c.a.conn = nil
		c.terminate("a", "connection lost", 487)
	case cn == c.bl.conn && c.winner != nil:
		c.log.Info().Str("remote", cn.remote).Msg("callee's TLS connection lost: ending call")
		c.bl.conn = nil
		c.terminate("b", "connection lost", 0)
	}
	// A target's connection lost during setup: its INVITE transaction
	// reports it (evTxError) and failover decides.
}

// bye sends BYE on leg l (fire and forget: the dialog ends either way).
func (c *call) bye(l *leg) {
	if c.takenOver != nil && (l.conn == nil || l.conn.closed()) {
		// No connection to the peer since the takeover: BYE once dialed.
		c.redial(l)
		l.byeOwed = l.dialing
		return
	}
	if l.conn == nil || l.conn.closed() || l.remoteTag == "" && l.side == SideB {
		return
	}
	req := c.request(l, sip.BYE, 0, 70)
	if _, err := c.b.send(l.conn, req, nil, nil); err != nil {
		c.log.Debug().Err(err).Str("leg", l.side.String()).Msg("BYE not sent")
	}
}

// isInviteResponse reports whether res answers an INVITE.
func isInviteResponse(res *sip.Response) bool {
	cs := res.CSeq()
	return cs != nil && cs.MethodName == sip.INVITE
}
