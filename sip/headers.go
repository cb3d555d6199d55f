package sip

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Topology hiding lives here: every request and response the SBC sends is
// built from scratch, and only headers on the allow-list are copied from the
// other leg. Via, Record-Route, Route, Contact, Call-ID and tags of one leg
// never reach the other.

// builtHeaders are always built by the B2BUA, never copied across legs.
var builtHeaders = map[string]bool{
	"via": true, "from": true, "to": true, "call-id": true, "cseq": true,
	"contact": true, "route": true, "record-route": true, "max-forwards": true,
	"content-length": true, "content-type": true, "rack": true,
}

func newToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newTag() string    { return newToken(8) }
func newCallID() string { return newToken(16) }
func newBranch() string { return branchPrefix + newToken(10) }

// branchPrefix marks the branches of this SBC (loop detection).
const branchPrefix = sip.RFC3261BranchMagicCookie + "-esbc-"

// allowSet lower-cases a header allow-list.
func allowSet(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[strings.ToLower(n)] = true
	}
	return m
}

// headerSource is a request or response whose headers can be listed.
type headerSource interface {
	Headers() []sip.Header
}

// copyAllowed copies the allow-listed headers of src into dst.
func copyAllowed(src headerSource, dst sip.Message, allow map[string]bool) {
	for _, h := range src.Headers() {
		name := strings.ToLower(h.Name())
		if builtHeaders[name] || !allow[name] || hasCTL(h.Value()) {
			continue
		}
		dst.AppendHeader(sip.NewHeader(h.Name(), h.Value()))
	}
}

// hasCTL reports control characters (other than HTAB) in a header value: a
// bare CR or LF there would smuggle a header line to the other leg.
func hasCTL(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f })
}

// cleanReason removes control characters from a reason phrase.
func cleanReason(s string) string {
	return strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// setBody sets the body with its Content-Type taken from src (or SDP).
func setBody(dst sip.Message, body []byte, ctype string) {
	if len(body) == 0 {
		dst.SetBody(nil)
		return
	}
	if ctype == "" {
		ctype = "application/sdp"
	}
	ct := sip.ContentTypeHeader(ctype)
	dst.AppendHeader(&ct)
	dst.SetBody(body)
}

func contentType(m interface{ ContentType() *sip.ContentTypeHeader }) string {
	if ct := m.ContentType(); ct != nil {
		return ct.Value()
	}
	return ""
}

type bodyMessage interface {
	Body() []byte
	ContentType() *sip.ContentTypeHeader
}

// isSDP reports whether the message body is SDP.
func isSDP(m bodyMessage) bool {
	if len(m.Body()) == 0 {
		return false
	}
	ct := strings.ToLower(contentType(m))
	return ct == "" || strings.HasPrefix(ct, "application/sdp")
}

// hideHost replaces an IP-literal host (a private address, say) with ours.
func hideHost(u sip.Uri, fqdn string) sip.Uri {
	out := sip.Uri{Scheme: u.Scheme, User: u.User, Password: "", Host: u.Host}
	if out.Scheme == "" {
		out.Scheme = "sips"
	}
	if _, err := netip.ParseAddr(strings.Trim(u.Host, "[]")); err == nil {
		out.Host = fqdn
	}
	return out
}

// contact is the SBC's own Contact: sips:<fqdn>:<port>;transport=tls.
func (b *B2BUA) contact() *sip.ContactHeader {
	u := sip.Uri{Scheme: "sips", User: "sbc", Host: b.conf().Node.FQDN, Port: b.sipPort}
	u.UriParams = sip.NewParams()
	u.UriParams.Add("transport", "tls")
	return &sip.ContactHeader{Address: u}
}

// via is a new Via for a request the SBC originates.
func (b *B2BUA) via() *sip.ViaHeader {
	p := sip.NewParams()
	p.Add("branch", newBranch())
	return &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TLS",
		Host: b.conf().Node.FQDN, Port: b.sipPort, Params: p}
}

// response builds a response to req as the UAS of leg l: the To tag is
// ours on that leg and the Contact is ours for dialog-creating responses.
func (b *B2BUA) response(req *sip.Request, l *leg, code int, reason string) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil && l != nil && code > 100 {
		// sipgo invents a To tag; the leg's own tag is the one that counts.
		to.Params.Add("tag", l.localTag)
	}
	if code > 100 && code < 300 && (req.IsInvite() || req.Method == sip.UPDATE || req.Method == sip.SUBSCRIBE) {
		res.AppendHeader(b.contact())
	}
	return res
}

// relayResponse builds the response to req on leg from out of the response
// res of the other leg: code, reason, allow-listed headers and a body.
func (b *B2BUA) relayResponse(req *sip.Request, from *leg, res *sip.Response, body []byte) *sip.Response {
	out := b.response(req, from, res.StatusCode, cleanReason(res.Reason))
	copyAllowed(res, out, b.snap().allow)
	setBody(out, body, contentType(res))
	return out
}

// parseRSeqRAck splits an RAck value "rseq cseq method".
func parseRAck(v string) (rseq uint32, method string, ok bool) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return 0, "", false
	}
	n, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return 0, "", false
	}
	return uint32(n), f[2], true
}

// methodsAllowed is the Allow header the SBC answers with.
const methodsAllowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK"

// headerHasToken reports whether a comma-separated header (Supported,
// Require) of m lists token.
func headerHasToken(m interface{ GetHeaders(string) []sip.Header }, name, token string) bool {
	for _, h := range m.GetHeaders(name) {
		for _, v := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(v), token) {
				return true
			}
		}
	}
	return false
}

// stripToken removes token from the comma-separated header name of m,
// dropping the header when nothing is left.
func stripToken(m *sip.Response, name, token string) {
	hs := m.GetHeaders(name)
	if len(hs) == 0 {
		return
	}
	var keep []string
	for _, h := range hs {
		for _, v := range strings.Split(h.Value(), ",") {
			if v = strings.TrimSpace(v); v != "" && !strings.EqualFold(v, token) {
				keep = append(keep, v)
			}
		}
	}
	for m.RemoveHeader(name) {
	}
	if len(keep) > 0 {
		m.AppendHeader(sip.NewHeader(name, strings.Join(keep, ", ")))
	}
}
