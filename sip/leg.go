package sip

import (
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// leg is one dialog of a call as the SBC sees it (RFC 3261 §12): leg A
// faces the caller (the SBC is its UAS), leg B the callee (the SBC is its
// UAC). A leg is owned by its call's event loop: no lock.
type leg struct {
	side   Side
	trunk  *trunkRec
	callID string

	localTag     string
	remoteTag    string
	localURI     sip.Uri // From of the requests we send on this leg
	localName    string
	remoteURI    sip.Uri // To of the requests we send on this leg
	remoteName   string
	remoteTarget sip.Uri // where in-dialog requests go (the peer's Contact)
	routeSet     []sip.Uri
	localCSeq    uint32 // last CSeq we used
	remoteCSeq   uint32 // last CSeq the peer used (RFC 3261 §12.2.2)
	inviteCSeq   uint32 // CSeq of the INVITE that set the dialog up on this leg
	conn         *conn  // the connection the leg uses

	// What the peer said it does (its Allow and Supported).
	peerUpdate bool // Allow lists UPDATE
	peer100rel bool // Supported or Require lists 100rel
	peerTimer  bool // Supported or Require lists timer

	oa      oaState // RFC 3264 offer/answer state on this leg
	agreed  bool    // an exchange completed once on this leg (a re-offer rolls back to it)
	lastSDP []byte  // the last SDP the SBC sent on this leg
	lastCT  string  // its content type (application/sdp or multipart/mixed)

	awaitAck    *pending2xx // a 2xx the SBC sent on this leg, awaiting its ACK
	owedAck     *owedAck    // an ACK the SBC owes this leg once the other leg's ACK brings the answer
	lastAckCT   string      // the last ACK sent on this leg (for retransmitted 2xx)
	lastAckBody []byte

	inviteIn  *serverTx // a re-INVITE from this leg not answered yet
	inviteOut *clientTx // a re-INVITE to this leg not answered yet
	updateIn  *serverTx // an UPDATE with an offer from this leg not answered yet
	updateOut *clientTx // an UPDATE with an offer to this leg not answered yet

	// A call taken over (takeover.go): a connection toward the peer is
	// being dialed; a BYE waits for it.
	dialing bool
	byeOwed bool
}

// oaState is a leg's offer/answer state (RFC 3264, RFC 6337 §3): who owes
// an answer, and whether the last answer was only a preview.
type oaState uint8

const (
	oaNone      oaState = iota // nothing exchanged yet
	oaOfferRecv                // the peer offered; the SBC owes it an answer
	oaOfferSent                // the SBC offered; the peer owes an answer
	oaEarly                    // an answer crossed in an unreliable 18x: a preview, the 2xx carries it again
	oaStable                   // the exchange is complete (2xx, reliable 18x/PRACK, UPDATE 2xx or ACK)
)

func (s oaState) String() string {
	return [...]string{"none", "offer_received", "offer_sent", "early_answer", "stable"}[s]
}

// setOA is the one place a leg's offer/answer state changes.
func (c *call) setOA(l *leg, s oaState) {
	if l.oa == s {
		return
	}
	c.log.Trace().Str("leg", l.side.String()).Stringer("from", l.oa).Stringer("to", s).Msg("offer/answer")
	l.oa = s
	if s == oaStable {
		l.agreed = true
		c.stateDirty = true
	}
}

// pendingOffer reports whether an offer is outstanding on the leg in
// either direction (RFC 3311 §5.2, RFC 3261 §14).
func (l *leg) pendingOffer() bool { return l.oa == oaOfferRecv || l.oa == oaOfferSent }

// request builds an in-dialog request on leg l (RFC 3261 §12.2.1.1). ACK
// and CANCEL reuse the CSeq number given.
func (c *call) request(l *leg, method sip.RequestMethod, cseq uint32, maxForwards uint32) *sip.Request {
	if method != sip.ACK && method != sip.CANCEL {
		l.localCSeq++
		cseq = l.localCSeq
	}
	target := l.remoteTarget
	req := sip.NewRequest(method, sip.Uri{Scheme: target.Scheme, User: target.User, Host: target.Host, Port: target.Port, UriParams: target.UriParams})
	req.AppendHeader(c.b.via(newBranch()))
	mf := sip.MaxForwardsHeader(maxForwards)
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
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	switch method {
	case sip.INVITE, sip.UPDATE:
		req.AppendHeader(c.contactFor(l))
		req.AppendHeader(sip.NewHeader("Allow", allowFor(l)))
		req.AppendHeader(sip.NewHeader("Supported", "timer"))
	}
	req.SetBody(nil) // Content-Length: 0 until a body is set (RFC 3261 §18.3)
	req.SetTransport("TLS")
	return req
}

// learnPeer records what a peer's message says it supports.
func (l *leg) learnPeer(m headerList) {
	if countHeaders(m, "Allow") > 0 {
		l.peerUpdate = headerHasToken(m, "Allow", "UPDATE")
	}
	if headerHasToken(m, "Supported", "100rel") || headerHasToken(m, "Require", "100rel") {
		l.peer100rel = true
	}
	if headerHasToken(m, "Supported", "timer") || headerHasToken(m, "Require", "timer") {
		l.peerTimer = true
	}
}

// maxForwardsOf returns the Max-Forwards to put on the other leg: the
// received value minus one (RFC 3261 §16.6 item 3, applied across the
// B2BUA), 70 when absent. ok is false when it reached zero (483).
func maxForwardsOf(req *sip.Request) (uint32, bool) {
	mf := req.MaxForwards()
	if mf == nil {
		return 70, true
	}
	v := mf.Val()
	if v == 0 {
		return 0, false
	}
	return v - 1, true
}

// rseqOf reads the RSeq of a reliable provisional response (0 if none).
func rseqOf(res *sip.Response) uint32 {
	h := res.GetHeader("RSeq")
	if h == nil {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// reliable reports whether a provisional response asks for PRACK.
func reliable(res *sip.Response) bool {
	return res.StatusCode > 100 && res.StatusCode < 200 && headerHasToken(res, "Require", "100rel") && rseqOf(res) != 0
}
