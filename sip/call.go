package sip

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"
)

// call pairs the two dialogs of one bridged call.
type call struct {
	b   *B2BUA
	id  string // correlation id in every log line of the call
	log zerolog.Logger

	a, bl *leg // a: caller side (we are UAS); bl: callee side (we are UAC)

	media MediaSession

	mu         sync.Mutex // guards the fields below
	answered   bool
	ended      bool
	start      time.Time
	answerAt   time.Time
	endAt      time.Time
	finalCode  int
	hangupBy   string
	endReason  string
	cancelB    func() // cancels the outgoing INVITE before answer
	pendingAck *pendingAck
	sessionTmr *time.Timer
	sessionInt time.Duration
	ownTimerB  bool // the SBC asked leg B for a session timer itself
	done       chan struct{}
}

// pendingAck is an ACK owed to leg B once leg A's ACK brings the SDP answer
// (late offer) or once it arrives at all.
type pendingAck struct {
	to   *leg   // the leg whose 2xx is being acknowledged
	cseq uint32 // CSeq of that INVITE
}

// leg is one dialog of a call as the SBC sees it (RFC 3261 §12).
type leg struct {
	side   Side
	trunk  string
	callID string

	mu           sync.Mutex // guards the dialog state below
	localTag     string
	remoteTag    string
	localURI     sip.Uri
	localName    string
	remoteURI    sip.Uri
	remoteName   string
	remoteTarget sip.Uri
	routeSet     []sip.Uri
	localCSeq    uint32
	inviteCSeq   uint32 // CSeq of the INVITE that set the dialog up on this leg
	conn         string // remote ip:port of the TLS connection the leg uses
	sni          string // leg B: host name dialed
	identity     string // leg B: certificate name required
}

// request builds an in-dialog request on leg l (RFC 3261 §12.2.1.1).
func (c *call) request(l *leg, method sip.RequestMethod) *sip.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	if method != sip.ACK && method != sip.CANCEL {
		l.localCSeq++
	}
	target := l.remoteTarget
	req := sip.NewRequest(method, sip.Uri{Scheme: target.Scheme, User: target.User, Host: target.Host, Port: target.Port, UriParams: target.UriParams})
	req.AppendHeader(c.b.via())
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	for _, r := range l.routeSet {
		req.AppendHeader(&sip.RouteHeader{Address: r})
	}
	fp := sip.NewParams()
	fp.Add("tag", l.localTag)
	req.AppendHeader(&sip.FromHeader{DisplayName: l.localName, Address: l.localURI, Params: fp})
	tp := sip.NewParams()
	if l.remoteTag != "" {
		tp.Add("tag", l.remoteTag)
	}
	req.AppendHeader(&sip.ToHeader{DisplayName: l.remoteName, Address: l.remoteURI, Params: tp})
	cid := sip.CallIDHeader(l.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: l.localCSeq, MethodName: method})
	if method == sip.INVITE || method == sip.UPDATE {
		req.AppendHeader(c.b.contact())
	}
	req.SetBody(nil) // Content-Length: 0 until a body is set (RFC 3261 §18.3)
	req.SetTransport("TLS")
	req.SetDestination(l.conn)
	return req
}

// ensureConn makes sure leg l has a live connection, redialing a callee
// target when its connection went away. A caller's connection cannot be
// reopened: callers are often behind NAT (RFC 5923-style reuse only).
func (c *call) ensureConn(ctx context.Context, l *leg) error {
	l.mu.Lock()
	conn, sni, id := l.conn, l.sni, l.identity
	l.mu.Unlock()
	if c.b.tp.alive(conn) {
		return nil
	}
	if l.side == SideA {
		return ErrUnreachable
	}
	return c.b.tp.dial(ctx, conn, sni, id)
}

// send runs a non-INVITE or INVITE client transaction on leg l and returns
// the final response.
func (c *call) send(ctx context.Context, l *leg, req *sip.Request) (*sip.Response, error) {
	if err := c.ensureConn(ctx, l); err != nil {
		return nil, err
	}
	tx, err := c.b.cli.TransactionRequest(ctx, req, prebuilt)
	if err != nil {
		return nil, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, err
			}
			return nil, ErrNoAnswer
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// prebuilt tells sipgo that the request is complete: the B2BUA builds every
// header itself.
func prebuilt(*sipgo.Client, *sip.Request) error { return nil }

// other returns the leg opposite l.
func (c *call) other(l *leg) *leg {
	if l == c.a {
		return c.bl
	}
	return c.a
}

// hangup ends an established or early call from the SBC's side: BYE on
// both legs (or CANCEL toward B before answer).
func (c *call) hangup(reason, by string) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	answered := c.answered
	cancelB := c.cancelB
	c.mu.Unlock()
	if !answered {
		c.setEnd(by, reason, 0)
		if cancelB != nil {
			cancelB()
		}
		return
	}
	c.finish(by, reason, c.a, c.bl)
}

// finish marks the call ended, sends BYE to the given legs and logs the CDR.
func (c *call) finish(by, reason string, bye ...*leg) {
	if !c.setEnd(by, reason, 0) {
		return
	}
	c.byeAndRelease(bye...)
}

// byeAndRelease sends BYE to the given legs of an ended call, waits for
// their answers (bounded) and releases the call.
func (c *call) byeAndRelease(bye ...*leg) {
	var wg sync.WaitGroup
	for _, l := range bye {
		if l == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(c.b.ctxOrBackground(), 5*time.Second)
			defer cancel()
			req := c.request(l, sip.BYE)
			if res, err := c.send(ctx, l, req); err != nil {
				c.log.Debug().Err(err).Str("leg", l.side.String()).Msg("BYE not answered")
			} else {
				c.log.Debug().Int("code", res.StatusCode).Str("leg", l.side.String()).Msg("BYE answered")
			}
		}()
	}
	wg.Wait()
	c.release()
}

// setEnd records the end of the call once; it returns false if the call had
// already ended.
func (c *call) setEnd(by, reason string, code int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return false
	}
	c.ended = true
	c.endAt = time.Now()
	c.hangupBy = by
	c.endReason = reason
	if code != 0 && c.finalCode == 0 {
		c.finalCode = code
	}
	if c.sessionTmr != nil {
		c.sessionTmr.Stop()
	}
	return true
}

// release removes the call's dialogs, frees media and writes the CDR. It is
// called once, after the call ended.
func (c *call) release() {
	b := c.b
	b.mu.Lock()
	delete(b.dialogs, dialogKey(c.a.callID, c.a.localTag))
	delete(b.dialogs, dialogKey(c.bl.callID, c.bl.localTag))
	_, present := b.calls[c]
	if present {
		delete(b.calls, c)
		for _, tr := range []string{c.a.trunk, c.bl.trunk} {
			if b.trunkCalls[tr]--; b.trunkCalls[tr] <= 0 {
				delete(b.trunkCalls, tr)
			}
			if c.a.trunk == c.bl.trunk {
				break
			}
		}
	}
	b.mu.Unlock()
	if !present {
		return
	}
	var mstats map[string]any
	if c.media != nil {
		mstats = c.media.Close()
	}
	c.mu.Lock()
	oc := outcome(c.answered, c.finalCode, c.endReason)
	c.mu.Unlock()
	b.metrics.CallsTotal.WithLabelValues(c.a.trunk, c.bl.trunk, oc).Inc()
	c.cdr(mstats)
	close(c.done)
}

// cdr writes the call-end line (the call detail record) and hands the
// record to the CDR sink.
func (c *call) cdr(mstats map[string]any) {
	c.mu.Lock()
	r := CDR{
		Call: c.id, CallIDA: c.a.callID, TrunkA: c.a.trunk, Start: c.start, End: c.endAt,
		FinalCode: c.finalCode, HangupBy: c.hangupBy, Reason: c.endReason, Media: mstats,
	}
	if c.bl != nil {
		r.CallIDB, r.TrunkB = c.bl.callID, c.bl.trunk
	}
	if !c.answerAt.IsZero() {
		at := c.answerAt
		r.Answer = &at
		r.DurationSec = c.endAt.Sub(c.answerAt).Seconds()
	}
	c.mu.Unlock()
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
	ev.Msg("call ended")
	if c.b.cdrs != nil {
		c.b.cdrs.Write(r)
	}
}

// startRefresher refreshes leg B with UPDATE every half interval when the
// SBC itself is B's session-timer refresher (RFC 4028 §10). A refresh that
// fails ends the call.
func (c *call) startRefresher(res *sip.Response) {
	h := res.GetHeader("Session-Expires")
	if h == nil {
		return // leg B runs no timer
	}
	d := parseSessionExpires(h.Value())
	if d <= 0 || !strings.Contains(strings.ToLower(h.Value()), "refresher=uac") {
		return // B refreshes (its refreshes are relayed)
	}
	c.b.goOwned(func() {
		t := time.NewTicker(d / 2)
		defer t.Stop()
		for {
			select {
			case <-c.done:
				return
			case <-c.b.ctxOrBackground().Done():
				return
			case <-t.C:
			}
			req := c.request(c.bl, sip.UPDATE)
			req.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=uac", int(d/time.Second))))
			req.AppendHeader(sip.NewHeader("Supported", "timer"))
			ctx, cancel := context.WithTimeout(c.b.ctxOrBackground(), inDialogTimeout)
			res, err := c.send(ctx, c.bl, req)
			cancel()
			if err != nil || !res.IsSuccess() {
				why := "session refresh failed"
				if res != nil {
					why = fmt.Sprintf("session refresh answered %d", res.StatusCode)
				}
				c.log.Info().Err(err).Msg(why)
				c.finish("sbc", why, c.a, c.bl)
				return
			}
			c.log.Debug().Dur("interval", d).Msg("session refreshed on leg b")
		}
	})
}

// refreshSession (re)arms the RFC 4028 session timer: when neither leg
// refreshes the session in time, both legs are ended.
func (c *call) refreshSession(res *sip.Response) {
	h := res.GetHeader("Session-Expires")
	if h == nil {
		return
	}
	d := parseSessionExpires(h.Value())
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.sessionInt = d
	if c.sessionTmr != nil {
		c.sessionTmr.Stop()
	}
	// RFC 4028 §10: the session ends when no refresh arrives before
	// expiry; allow a third of the interval (at most 32 s) for the refresh.
	grace := min(d/3, 32*time.Second)
	c.sessionTmr = time.AfterFunc(d+grace, func() {
		c.log.Info().Dur("session_expires", d).Msg("session timer expired")
		c.b.goOwned(func() { c.finish("sbc", "session timer expired", c.a, c.bl) })
	})
}
