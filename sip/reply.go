package sip

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/dnsresolve"
)

// This file is the reply path toward a peer: every response the SBC
// composes itself (as opposed to one relayed from the other leg) is a
// refusal built here, and statusFor is the one mapping from internal errors
// to SIP status codes.
//
// Trust boundary: a Warning carries a generic text and the call's
// correlation id, never an address, host name or error text of the other
// side (those stay in the log, under the same id). Reason phrases are the
// SBC's own (standard phrases), also for relayed responses.

// Sentinel errors of the B2BUA; statusFor maps them to SIP responses.
var (
	ErrUnreachable   = errors.New("target unreachable")
	ErrTLS           = errors.New("TLS handshake or certificate refused")
	ErrIdentity      = errors.New("peer identity mismatch")
	ErrNoAnswer      = errors.New("no response from target")
	ErrNoRoute       = errors.New("no route for request")
	ErrForbidden     = errors.New("peer is not a configured trunk")
	ErrNotOwnDomain  = errors.New("request-URI is not one of our domains")
	ErrResolve       = errors.New("destination did not resolve")
	ErrAllTargets    = errors.New("every target failed")
	ErrShuttingDown  = errors.New("SBC is draining")
	ErrMedia         = errors.New("media refused")
	ErrMediaCapacity = errors.New("media ports exhausted")
	ErrLoop          = errors.New("loop detected")
	ErrConnClosed    = errors.New("connection closed")
	ErrTxTimeout     = errors.New("transaction timed out")
	ErrGlare         = errors.New("an offer is pending from the other side")

	errDuplicateBranch = errors.New("a transaction with this branch exists")
)

// refusal is a final (or 100) response the SBC composes itself.
type refusal struct {
	code       int
	warning    string // generic text for a Warning header; "" for none
	retryAfter int    // seconds for Retry-After; 0 for none
}

// The refusals of the B2BUA, by name. Warning texts are generic on
// purpose (see the file comment).
var (
	refuseNoDialog       = refusal{code: 481}
	refuseNotTrunk       = refusal{code: 403, warning: "peer is not a configured trunk"}
	refuseNotAllowed     = refusal{code: 405}
	refuseBadBody        = refusal{code: 400, warning: "malformed body"}
	refuseTooManyHops    = refusal{code: 483}
	refuseLoop           = refusal{code: 482, warning: "the request came back to this SBC"}
	refuseDraining       = refusal{code: 503, warning: "draining", retryAfter: 30}
	refuseCallLimit      = refusal{code: 503, warning: "call limit reached", retryAfter: 30}
	refuseRateLimit      = refusal{code: 503, warning: "call rate limit reached", retryAfter: 5}
	refuseOverloaded     = refusal{code: 503, warning: "overloaded", retryAfter: 5}
	refuseBusyConnection = refusal{code: 503, warning: "too many requests pending on this connection", retryAfter: 5}
	refuseGlare          = refusal{code: 491}
	refusePending        = refusal{code: 500, warning: "an earlier request is still pending", retryAfter: 3}
	refuseCSeqOrder      = refusal{code: 500, warning: "CSeq out of order"}
	refuseNoAnswer       = refusal{code: 408, warning: "no answer"}
	refuseFarSideGone    = refusal{code: 480, warning: "the far side ended the call attempt"}
	refuseRedirect       = refusal{code: 480, warning: "redirect not followed"}
	refuseTimedOut       = refusal{code: 500, warning: "the other side did not answer in time", retryAfter: 5}
	refuseTooManyStreams = refusal{code: 488, warning: "too many media streams"}
	refuseInternal       = refusal{code: 500, warning: "internal error"}
	refuseEnded          = refusal{code: 503, warning: "call ended", retryAfter: 5}
	refuseTerminated     = refusal{code: 487}
	refuseNotParty       = refusal{code: 403, warning: "not a party of this dialog"}
	refuseRequestTimeout = refusal{code: 408}
	refuseTransferPolicy = refusal{code: 403, warning: "transfer not permitted"}
	refuseAttended       = refusal{code: 501, warning: "attended transfer (Replaces) is not supported"}

	// The SIPS-only policy (policy.go): about the caller's own request.
	refuseVersion      = refusal{code: 505}
	refuseSIPScheme    = refusal{code: 416, warning: "only sips: URIs are accepted"}
	refuseBodyType     = refusal{code: 415, warning: "only application/sdp and multipart/mixed bodies"}
	refuseExtension    = refusal{code: 420}
	refuseContactStar  = refusal{code: 400, warning: "Contact: * is only allowed in REGISTER"}
	refuseRURIUserHost = refusal{code: 400, warning: "a sips: URI with a user and a host is required"}
)

// refuseNoLiveTarget is the 503 when health pings say every target of the
// destination is down; the caller may retry after the next ping.
func refuseNoLiveTarget(retry int) refusal {
	return refusal{code: 503, warning: "destination unavailable", retryAfter: retry}
}

// malformed is the 400 for a request that breaks RFC 3261 itself; what is
// named is part of the caller's own request.
func malformed(what string) *refusal {
	return &refusal{code: 400, warning: what}
}

// statusFor maps an internal error to the refusal sent back. It is the one
// place that does so.
func statusFor(err error) refusal {
	switch {
	case err == nil:
		return refusal{code: sip.StatusOK}
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrNotOwnDomain):
		return refusal{code: sip.StatusForbidden, warning: "not permitted"}
	case errors.Is(err, ErrNoRoute):
		return refusal{code: sip.StatusNotFound, warning: "no route"}
	case errors.Is(err, ErrLoop):
		return refuseLoop
	case errors.Is(err, ErrGlare):
		return refuseGlare
	case errors.Is(err, ErrMedia):
		return refusal{code: sip.StatusNotAcceptableHere, warning: "media not acceptable"}
	case errors.Is(err, ErrNoAnswer), errors.Is(err, context.DeadlineExceeded):
		return refuseNoAnswer
	case errors.Is(err, ErrShuttingDown):
		return refuseDraining
	case errors.Is(err, ErrMediaCapacity), errors.Is(err, ErrAllTargets), errors.Is(err, ErrUnreachable),
		errors.Is(err, ErrTLS), errors.Is(err, ErrResolve), errors.Is(err, ErrIdentity),
		errors.Is(err, dnsresolve.ErrNoTargets), errors.Is(err, ErrConnClosed), errors.Is(err, ErrTxTimeout):
		return refusal{code: sip.StatusServiceUnavailable, warning: "destination unavailable", retryAfter: 30}
	default:
		return refuseInternal
	}
}

// reasonPhrase is the SBC's reason phrase for code (RFC 3261 §21 and the
// extensions the SBC meets). Relayed responses carry it too: the other
// side's phrase never crosses.
func reasonPhrase(code int) string {
	switch code {
	case 100:
		return "Trying"
	case 180:
		return "Ringing"
	case 181:
		return "Call Is Being Forwarded"
	case 182:
		return "Queued"
	case 183:
		return "Session Progress"
	case 199:
		return "Early Dialog Terminated"
	case 200:
		return "OK"
	case 202:
		return "Accepted"
	case 300:
		return "Multiple Choices"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Moved Temporarily"
	case 305:
		return "Use Proxy"
	case 380:
		return "Alternative Service"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 402:
		return "Payment Required"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 406:
		return "Not Acceptable"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 410:
		return "Gone"
	case 413:
		return "Request Entity Too Large"
	case 414:
		return "Request-URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Unsupported URI Scheme"
	case 420:
		return "Bad Extension"
	case 421:
		return "Extension Required"
	case 422:
		return "Session Interval Too Small"
	case 423:
		return "Interval Too Brief"
	case 480:
		return "Temporarily Unavailable"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 482:
		return "Loop Detected"
	case 483:
		return "Too Many Hops"
	case 484:
		return "Address Incomplete"
	case 485:
		return "Ambiguous"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 489:
		return "Bad Event"
	case 491:
		return "Request Pending"
	case 493:
		return "Undecipherable"
	case 500:
		return "Server Internal Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Server Time-out"
	case 505:
		return "Version Not Supported"
	case 513:
		return "Message Too Large"
	case 580:
		return "Precondition Failure"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	case 604:
		return "Does Not Exist Anywhere"
	case 606:
		return "Not Acceptable"
	}
	switch {
	case code < 200:
		return "Session Progress"
	case code < 300:
		return "OK"
	case code < 400:
		return "Redirection"
	case code < 500:
		return "Request Failure"
	case code < 600:
		return "Server Failure"
	}
	return "Global Failure"
}

// newResponse builds a response to req with the SBC's reason phrase.
// toTag, when not empty, is the SBC's tag on that dialog (sipgo would
// invent one otherwise).
func newResponse(req *sip.Request, code int, toTag string) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reasonPhrase(code), nil)
	if to := res.To(); to != nil && toTag != "" && code > 100 {
		to.Params.Add("tag", toTag)
	}
	// sipgo copies Record-Route into every dialog-creating response; the
	// SBC, a UAS, never echoes the other hops' Record-Route.
	for res.RemoveHeader("Record-Route") {
	}
	return res
}

// refusalResponse builds the response for r, with the Warning (and the
// call's correlation id when ref is not empty), Retry-After, and the
// headers some codes require (Allow with 405, Supported with 420/421,
// Accept with 415).
func (b *B2BUA) refusalResponse(req *sip.Request, r refusal, toTag, ref string) *sip.Response {
	res := newResponse(req, r.code, toTag)
	if r.warning != "" {
		text := r.warning
		if ref != "" {
			text += " (ref " + ref + ")"
		}
		res.AppendHeader(sip.NewHeader("Warning", "399 "+b.conf().Node.FQDN+" "+strconv.Quote(text)))
	}
	if r.retryAfter > 0 {
		res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(r.retryAfter)))
	}
	switch r.code {
	case 405:
		res.AppendHeader(sip.NewHeader("Allow", methodsAllowed))
	case 415:
		res.AppendHeader(sip.NewHeader("Accept", "application/sdp, multipart/mixed"))
	case 416, 420, 421:
		res.AppendHeader(sip.NewHeader("Supported", optionTags))
	}
	return res
}

// reject sends r as the final response of tx (ref: the call's id, or "").
func (b *B2BUA) reject(tx *serverTx, r refusal, toTag, ref string) {
	res := b.refusalResponse(tx.req, r, toTag, ref)
	if r.code == 420 {
		if u := unsupportedTags(tx.req); u != "" {
			res.AppendHeader(sip.NewHeader("Unsupported", u))
		}
	}
	b.respond(tx, res)
}

// rejectInline answers a request that has no transaction of its own (an
// out-of-dialog request refused by the reader) on the connection it came
// from.
func (b *B2BUA) rejectInline(c *conn, req *sip.Request, r refusal) {
	if req.IsAck() {
		return
	}
	res := b.refusalResponse(req, r, "", "")
	b.count(res)
	if err := c.send(res); err != nil {
		b.log.Debug().Err(err).Str("remote", c.remote).Msg("refusal not sent")
	}
}

// unsupportedTags lists the option tags of req's Require that the SBC does
// not implement (for 420 Bad Extension), or "".
func unsupportedTags(req *sip.Request) string {
	var out []string
	for h := range headersNamed(req, "Require") {
		for _, t := range strings.Split(h.Value(), ",") {
			t = strings.ToLower(strings.TrimSpace(t))
			if t != "" && !supportedTag(t) {
				out = append(out, t)
			}
		}
	}
	return strings.Join(out, ", ")
}
