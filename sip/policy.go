package sip

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The SIPS-only policy: what a request must be before the SBC acts on it.

// refusal is a SIP status with a reason phrase and an optional Warning.
type refusal struct {
	code    int
	reason  string
	warning string
}

// checkInvite applies RFC 3261 checks and the SIPS-only policy to an
// out-of-dialog INVITE. It returns nil when the request may proceed.
func checkInvite(req *sip.Request) *refusal {
	if req.SipVersion != "SIP/2.0" {
		return &refusal{505, "Version Not Supported", ""}
	}
	if req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil {
		return &refusal{400, "Bad Request", "missing mandatory header"}
	}
	for _, name := range []string{"From", "To", "Call-ID", "CSeq"} {
		if len(req.GetHeaders(name)) != 1 {
			return &refusal{400, "Bad Request", "repeated " + name + " header"}
		}
	}
	if ct := req.Contact(); ct != nil && ct.Address.Wildcard {
		return &refusal{400, "Bad Request", "Contact: * is only allowed in REGISTER"}
	}
	if hasCTL(req.Recipient.String()) {
		return &refusal{400, "Bad Request", "control character in the Request-URI"}
	}
	for _, h := range req.Headers() {
		if hasCTL(h.Value()) {
			return &refusal{400, "Bad Request", "control character in " + h.Name()}
		}
	}
	if req.CSeq().MethodName != req.Method {
		return &refusal{400, "Bad Request", "CSeq method does not match"}
	}
	if !strings.EqualFold(req.Recipient.Scheme, "sips") {
		// RFC 3261 §8.2.2.1: 416 for a scheme the UAS does not serve.
		return &refusal{416, "Unsupported URI Scheme", "only sips: URIs are accepted"}
	}
	if req.Recipient.User == "" || req.Recipient.Host == "" {
		return &refusal{400, "Bad Request", "a sips: URI with a user and a host is required"}
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return &refusal{483, "Too Many Hops", ""}
	}
	if len(req.Body()) > 0 && !isSDP(req) && !isMultipart(req) {
		return &refusal{415, "Unsupported Media Type", "only application/sdp bodies"}
	}
	return nil
}

func isMultipart(m bodyMessage) bool {
	return strings.HasPrefix(strings.ToLower(contentType(m)), "multipart/")
}

// respondRefusal sends a refusal as the final response of tx.
func (b *B2BUA) respondRefusal(req *sip.Request, tx sip.ServerTransaction, r *refusal) {
	res := sip.NewResponseFromRequest(req, r.code, r.reason, nil)
	if r.warning != "" {
		res.AppendHeader(sip.NewHeader("Warning", fmt.Sprintf("399 %s %q", b.conf().Node.FQDN, r.warning)))
	}
	if r.code == 405 {
		res.AppendHeader(sip.NewHeader("Allow", methodsAllowed))
	}
	if r.code == 503 {
		res.AppendHeader(sip.NewHeader("Retry-After", "30"))
	}
	if r.code == 416 || r.code == 420 {
		res.AppendHeader(sip.NewHeader("Supported", "timer, 100rel"))
	}
	if err := b.respond(tx, res); err != nil {
		b.log.Debug().Err(err).Msg("respond failed")
	}
}

// parseSessionExpires reads "1800;refresher=uac".
func parseSessionExpires(v string) time.Duration {
	v, _, _ = strings.Cut(v, ";")
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
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
