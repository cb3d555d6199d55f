package sip

import (
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The SIPS-only policy and the RFC 3261 checks: what a request must be
// before the SBC acts on it.

// checkRequest applies the checks every request gets (RFC 3261 §8.2):
// mandatory headers present once, CSeq method matching, no control
// characters, SIP/2.0, Max-Forwards not exhausted.
func checkRequest(req *sip.Request) *refusal {
	if req.SipVersion != "SIP/2.0" {
		return &refuseVersion
	}
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
		return malformed("missing mandatory header")
	}
	for _, name := range []string{"From", "To", "Call-ID", "CSeq"} {
		if countHeaders(req, name) != 1 {
			return malformed("repeated " + name + " header")
		}
	}
	if req.CSeq().MethodName != req.Method {
		return malformed("CSeq method does not match")
	}
	if uriHasCTL(&req.Recipient) {
		return malformed("control character in the Request-URI")
	}
	for _, h := range req.Headers() {
		if headerHasCTL(h) {
			return malformed("control character in " + h.Name())
		}
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 && !req.IsAck() && req.Method != sip.CANCEL {
		return &refuseTooManyHops
	}
	return nil
}

// checkInvite applies the SIPS-only policy to an out-of-dialog INVITE that
// passed checkRequest; allowSIP admits sip: URIs too (over TLS, from a
// trunk with accept_sip_scheme). It returns nil when the request may
// proceed.
func checkInvite(req *sip.Request, allowSIP bool) *refusal {
	if ct := req.Contact(); ct != nil && ct.Address.Wildcard {
		return &refuseContactStar
	}
	if !strings.EqualFold(req.Recipient.Scheme, "sips") && !(allowSIP && strings.EqualFold(req.Recipient.Scheme, "sip")) {
		// RFC 3261 §8.2.2.1: 416 for a scheme the UAS does not serve.
		return &refuseSIPScheme
	}
	if req.Recipient.User == "" || req.Recipient.Host == "" {
		return &refuseRURIUserHost
	}
	if len(req.Body()) > 0 && !isSDP(req) && !isMultipart(req) {
		return &refuseBodyType
	}
	if unsupportedTags(req) != "" {
		return &refuseExtension
	}
	return nil
}

// parseSessionExpires reads "1800;refresher=uac": the interval and the
// refresher ("uac", "uas" or "").
func parseSessionExpires(v string) (time.Duration, string) {
	val, params, _ := strings.Cut(v, ";")
	n, err := strconv.Atoi(strings.TrimSpace(val))
	if err != nil || n <= 0 {
		return 0, ""
	}
	refresher := ""
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "refresher") {
			refresher = strings.ToLower(strings.TrimSpace(v))
		}
	}
	return time.Duration(n) * time.Second, refresher
}

// retryAfter reads a Retry-After header in seconds (0 when absent).
func retryAfter(res *sip.Response) time.Duration {
	h := res.GetHeader("Retry-After")
	if h == nil {
		return 0
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	v, _, _ = strings.Cut(strings.TrimSpace(v), " ")
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}
