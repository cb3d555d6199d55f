package sip

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/emiago/sipgo/sip"
)

// This file is the SBC's part in RFC 4028 session timers. When the caller
// negotiates a timer, Session-Expires crosses end to end (refresher=uac on
// leg A means the caller refreshes; its refreshes are relayed, which
// refreshes leg B too) and the SBC only watches: a session not refreshed
// in time is ended on both legs. When the caller asks for none, the SBC
// asks leg B for one itself (sip.session_expires), keeps it from the
// caller, and refreshes leg B when it is the refresher: with UPDATE when
// the callee's Allow lists it, else with a re-INVITE repeating the last SDP
// sent to it.

// sessionTimer is a call's RFC 4028 state (owned by the call's loop).
type sessionTimer struct {
	interval time.Duration
	own      bool // the SBC asked leg B for the timer itself
	refresh  bool // the SBC refreshes leg B
	expiry   *callTimer
	next     *callTimer
}

// sessionOffer adds the SBC's own Session-Expires to leg B's INVITE when
// the caller asked for none.
func (c *call) sessionOffer(req *sip.Request) {
	se := c.snap.cfg.SIP.SessionExpires
	if req.GetHeader("Session-Expires") != nil || se <= 0 {
		return
	}
	req.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=uac", int(se/time.Second))))
	c.session.own = true
}

// sessionAnswer applies leg B's 2xx Session-Expires to the 2xx toward the
// caller and arms the timers.
func (c *call) sessionAnswer(resB, outA *sip.Response) {
	h := resB.GetHeader("Session-Expires")
	if h == nil {
		outA.RemoveHeader("Session-Expires")
		return
	}
	d, refresher := parseSessionExpires(h.Value())
	if d <= 0 {
		return
	}
	if c.session.own {
		outA.RemoveHeader("Session-Expires")
		c.session.refresh = refresher != "uas"
	} else if c.a.peerTimer {
		outA.AppendHeader(sip.NewHeader("Require", "timer"))
	}
	c.armSession(d)
	if c.session.refresh {
		c.session.next = c.after(d/2, tRefresh, nil)
	}
}

// armSession (re)starts the expiry: when no refresh arrives before it, both
// legs are ended. A third of the interval (at most 32 s) is allowed for
// the refresh to arrive (RFC 4028 §10).
func (c *call) armSession(d time.Duration) {
	c.session.interval = d
	c.sessionArmed, c.stateDirty = time.Now(), true
	c.stop(c.session.expiry)
	grace := min(d/3, 32*time.Second)
	c.session.expiry = c.after(d+grace, tSessionExpiry, nil)
}

// sessionRefreshed re-arms the expiry after a successful relayed
// re-INVITE or UPDATE that carried Session-Expires.
func (c *call) sessionRefreshed(res, out *sip.Response, method sip.RequestMethod) {
	if method != sip.INVITE && method != sip.UPDATE {
		return
	}
	h := res.GetHeader("Session-Expires")
	if h == nil {
		return
	}
	if d, _ := parseSessionExpires(h.Value()); d > 0 {
		if c.session.own {
			out.RemoveHeader("Session-Expires")
		}
		c.armSession(d)
	}
}

// refresh sends the SBC's own session refresh to leg B.
func (c *call) refresh() {
	c.session.next = nil
	l := c.bl
	if c.state != stConfirmed || l.pendingOffer() || l.inviteOut != nil || l.updateOut != nil || l.inviteIn != nil || c.a.inviteIn != nil {
		c.session.next = c.after(2*time.Second, tRefresh, nil)
		return
	}
	method := sip.INVITE
	if l.peerUpdate {
		method = sip.UPDATE
	}
	req := c.request(l, method, 0, 70)
	req.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=uac", int(c.session.interval/time.Second))))
	if method == sip.INVITE {
		setBody(req, l.lastCT, l.lastSDP) // the same session, same version (RFC 4028 §7.4)
	}
	tx, err := c.sendReq(l.conn, req, &ownRequest{method: method, refresh: true})
	if err != nil {
		c.refreshFailed(0, err)
		return
	}
	if method == sip.INVITE {
		l.inviteOut = tx
	}
}

// onOwnResponse handles the response to a request the SBC sent itself.
func (c *call) onOwnResponse(own *ownRequest, res *sip.Response) {
	if res.StatusCode >= 200 && own.xfer {
		c.onXferReinvite(res)
		return
	}
	if res.StatusCode < 200 || !own.refresh {
		return
	}
	if own.method == sip.INVITE {
		c.bl.inviteOut = nil
	}
	if !res.IsSuccess() {
		c.refreshFailed(res.StatusCode, nil)
		return
	}
	if own.method == sip.INVITE {
		c.ackLeg(c.bl, res.CSeq().SeqNo, "", nil)
	}
	d := c.session.interval
	if h := res.GetHeader("Session-Expires"); h != nil {
		if v, _ := parseSessionExpires(h.Value()); v > 0 {
			d = v
		}
	}
	c.armSession(d)
	c.session.next = c.after(d/2, tRefresh, nil)
	c.log.Debug().Dur("interval", d).Str("method", string(own.method)).Msg("session refreshed on leg b")
}

// refreshFailed decides what a failed refresh means (RFC 4028 §10): 408,
// 481 or no response end the call; 491 is retried soon; UPDATE refused as
// unknown falls back to re-INVITE; anything else waits for the next
// refresh (the expiry ends the call if none succeeds).
func (c *call) refreshFailed(code int, err error) {
	c.bl.inviteOut = nil
	switch {
	case err != nil || code == 408 || code == 481:
		c.log.Info().Err(err).Int("code", code).Msg("session refresh failed: ending call")
		c.terminate("sbc", "session refresh failed", 0)
	case code == 491:
		c.session.next = c.after(time.Duration(2000+rand.IntN(2000))*time.Millisecond, tRefresh, nil)
	case (code == 405 || code == 501) && c.bl.peerUpdate:
		c.bl.peerUpdate = false
		c.session.next = c.after(10*time.Millisecond, tRefresh, nil)
	default:
		c.log.Info().Int("code", code).Msg("session refresh refused")
		c.session.next = c.after(c.session.interval/2, tRefresh, nil)
	}
}
