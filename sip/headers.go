package sip

import (
	"crypto/rand"
	"encoding/hex"
	"iter"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Topology hiding lives here: every request and response the SBC sends is
// built from scratch, and only headers on the allow-list are copied from the
// other leg. Via, Record-Route, Route, Contact, Call-ID and tags of one leg
// never reach the other; Allow, Supported, Require and Accept state what
// the SBC itself does; identity headers cross only from trusted trunks
// (RFC 3325); Warning never crosses.

// builtHeaders are always built by the B2BUA, never copied across legs.
var builtHeaders = map[string]bool{
	"via": true, "from": true, "to": true, "call-id": true, "cseq": true,
	"contact": true, "route": true, "record-route": true, "max-forwards": true,
	"content-length": true, "content-type": true, "rack": true, "rseq": true,
	"allow": true, "supported": true, "require": true, "accept": true,
	"unsupported": true, "warning": true, "proxy-require": true,
	"www-authenticate": true, "proxy-authenticate": true, "authorization": true,
	"proxy-authorization": true, "retry-after": true,
}

// identityHeaders carry asserted or claimed identities: they cross only
// from a trusted trunk (RFC 3325 §5).
var identityHeaders = map[string]bool{
	"p-asserted-identity": true, "p-preferred-identity": true,
	"remote-party-id": true, "diversion": true, "history-info": true,
}

// methodsAllowed is the Allow header the SBC sends: the methods it handles.
const methodsAllowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, NOTIFY"

// optionTags is the Supported header the SBC sends.
const optionTags = "timer, 100rel"

func supportedTag(t string) bool { return t == "timer" || t == "100rel" }

func newToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newTag() string    { return newToken(8) }
func newCallID() string { return newToken(16) }
func newBranch() string { return branchPrefix + newToken(10) }

// branchPrefix marks the branches of this SBC (loop detection, stray
// responses).
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

// copyAllowed copies the allow-listed headers of src into dst. Identity
// headers are copied only when trusted.
func copyAllowed(src headerSource, dst sip.Message, allow map[string]bool, trusted bool) {
	var lower [64]byte
	for _, h := range src.Headers() {
		// The lower-cased name stays on the stack: indexing a map with
		// string(bytes) does not allocate.
		name := lowerASCII(lower[:0], h.Name())
		if builtHeaders[string(name)] || !allow[string(name)] || headerHasCTL(h) {
			continue
		}
		if identityHeaders[string(name)] && !trusted {
			continue
		}
		v := h.Value()
		if string(name) == "reason" {
			if v = sanitizeReason(v); v == "" {
				continue
			}
		}
		dst.AppendHeader(sip.NewHeader(h.Name(), v))
	}
}

// lowerASCII appends s to b with ASCII letters lower-cased.
func lowerASCII(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// sanitizeReason keeps the protocol and cause of an RFC 3326 Reason header
// and drops its free text (the other side's words never cross).
func sanitizeReason(v string) string {
	var out []string
	for _, r := range strings.Split(v, ",") {
		parts := strings.Split(r, ";")
		proto := strings.TrimSpace(parts[0])
		if proto == "" || strings.ContainsAny(proto, " \"") {
			continue
		}
		keep := proto
		for _, p := range parts[1:] {
			k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "cause") {
				if _, err := strconv.Atoi(val); err == nil {
					keep += ";cause=" + val
				}
			}
		}
		out = append(out, keep)
	}
	return strings.Join(out, ", ")
}

// hasCTL reports control characters (other than HTAB) in a header value: a
// bare CR or LF there would smuggle a header line to the other leg.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}

// headerHasCTL is hasCTL(h.Value()) without serialising the header: a
// parsed header's value is its fields joined by separators that are not
// control characters, so its fields are checked one by one (the headers
// of every request are checked, and Value() of a parsed From, To, Via or
// Contact builds a new string).
func headerHasCTL(h sip.Header) bool {
	switch v := h.(type) {
	case *sip.FromHeader:
		return hasCTL(v.DisplayName) || uriHasCTL(&v.Address) || paramsHaveCTL(v.Params)
	case *sip.ToHeader:
		return hasCTL(v.DisplayName) || uriHasCTL(&v.Address) || paramsHaveCTL(v.Params)
	case *sip.ContactHeader:
		return hasCTL(v.DisplayName) || uriHasCTL(&v.Address) || paramsHaveCTL(v.Params)
	case *sip.ViaHeader:
		return hasCTL(v.ProtocolName) || hasCTL(v.ProtocolVersion) || hasCTL(v.Transport) ||
			hasCTL(v.Host) || paramsHaveCTL(v.Params)
	case *sip.RouteHeader:
		return uriHasCTL(&v.Address)
	case *sip.RecordRouteHeader:
		return uriHasCTL(&v.Address)
	case *sip.CSeqHeader:
		return hasCTL(string(v.MethodName))
	case *sip.CallIDHeader:
		return hasCTL(string(*v))
	case *sip.MaxForwardsHeader, *sip.ContentLengthHeader, *sip.ExpiresHeader:
		return false
	}
	return hasCTL(h.Value())
}

// uriHasCTL is hasCTL(u.String()) without serialising u.
func uriHasCTL(u *sip.Uri) bool {
	return hasCTL(u.Scheme) || hasCTL(u.Raw()) || hasCTL(u.User) || hasCTL(u.Password) ||
		hasCTL(u.Host) || paramsHaveCTL(u.UriParams) || paramsHaveCTL(u.Headers)
}

func paramsHaveCTL(ps sip.HeaderParams) bool {
	for _, p := range ps {
		if hasCTL(p.K) || hasCTL(p.V) {
			return true
		}
	}
	return false
}

// hideHost replaces an IP-literal host (a private address, say) with ours.
func hideHost(u sip.Uri, fqdn string) sip.Uri {
	out := sip.Uri{Scheme: u.Scheme, User: u.User, Host: u.Host}
	if out.Scheme == "" || !strings.EqualFold(out.Scheme, "sips") {
		out.Scheme = "sips"
	}
	if _, err := netip.ParseAddr(strings.Trim(u.Host, "[]")); err == nil {
		out.Host = fqdn
	}
	return out
}

// contact is the SBC's own Contact: sips:sbc@<fqdn>:<port>;transport=tls.
func (b *B2BUA) contact() *sip.ContactHeader { return b.contactScheme("sips") }

// contactScheme is the SBC's Contact with scheme (sip: toward a trunk with
// accept_sip_scheme; still over TLS).
func (b *B2BUA) contactScheme(scheme string) *sip.ContactHeader {
	u := sip.Uri{Scheme: scheme, User: "sbc", Host: b.conf().Node.FQDN, Port: b.sipPort}
	u.UriParams = sip.NewParams()
	u.UriParams.Add("transport", "tls")
	return &sip.ContactHeader{Address: u}
}

// allowFor is the Allow header toward leg l: REFER only where the SBC
// handles it (trunks[].refer: local).
func allowFor(l *leg) string {
	if l != nil && l.trunk != nil && l.trunk.refer == "local" {
		return methodsAllowed + ", REFER"
	}
	return methodsAllowed
}

// contactFor is the SBC's Contact on leg l.
func (c *call) contactFor(l *leg) *sip.ContactHeader { return c.b.contactScheme(l.scheme()) }

// scheme is the URI scheme the SBC uses on leg l: sips:, or sip: (over
// TLS) toward a trunk with accept_sip_scheme.
func (l *leg) scheme() string {
	if l.trunk != nil && l.trunk.sipScheme {
		return "sip"
	}
	return "sips"
}

// via is a new Via for a request the SBC originates.
func (b *B2BUA) via(branch string) *sip.ViaHeader {
	p := sip.NewParams()
	p.Add("branch", branch)
	return &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TLS",
		Host: b.conf().Node.FQDN, Port: b.sipPort, Params: p}
}

// parseRAck splits an RAck value "rseq cseq method".
func parseRAck(v string) (rseq, cseq uint32, method string, ok bool) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return 0, 0, "", false
	}
	n, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return 0, 0, "", false
	}
	m, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return 0, 0, "", false
	}
	return uint32(n), uint32(m), f[2], true
}

// headerList is what headersNamed reads: a request or a response.
type headerList interface{ Headers() []sip.Header }

// headersNamed ranges over the headers of m called name, in order. Names
// match case-insensitively and in their compact form (RFC 3261 §7.3.3).
// sipgo's GetHeaders lower-cases every header name of the message on each
// call, an allocation per name that is not all lower case; this allocates
// nothing (it is small enough to be inlined, and its closure with it).
func headersNamed(m headerList, name string) iter.Seq[sip.Header] {
	return func(yield func(sip.Header) bool) {
		for _, h := range m.Headers() {
			if headerIs(h, name) && !yield(h) {
				return
			}
		}
	}
}

// headerIs reports whether h is called name, or name's compact form.
func headerIs(h sip.Header, name string) bool {
	n := h.Name()
	if len(n) == 1 && len(name) > 1 {
		return strings.EqualFold(n, compactName(name))
	}
	return strings.EqualFold(n, name)
}

// countHeaders is the number of headers of m called name.
func countHeaders(m headerList, name string) int {
	n := 0
	for _, h := range m.Headers() {
		if headerIs(h, name) {
			n++
		}
	}
	return n
}

// compactName is the compact form of the header names the SBC reads, or "".
func compactName(name string) string {
	for _, c := range [...]struct{ full, short string }{
		{"Via", "v"}, {"From", "f"}, {"To", "t"}, {"Call-ID", "i"}, {"Contact", "m"},
		{"Supported", "k"}, {"Refer-To", "r"}, {"Content-Type", "c"}, {"Content-Length", "l"},
	} {
		if strings.EqualFold(name, c.full) {
			return c.short
		}
	}
	return ""
}

// headerHasToken reports whether a comma-separated header (Supported,
// Require, Allow) of m lists token.
func headerHasToken(m headerList, name, token string) bool {
	for h := range headersNamed(m, name) {
		for v := range strings.SplitSeq(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(v), token) {
				return true
			}
		}
	}
	return false
}

// tagOf returns the tag parameter of a From or To header.
func tagOf(h interface{ Value() string }, params sip.HeaderParams) string {
	t, _ := params.Get("tag")
	return t
}

func toTag(m sip.Message) string {
	if to := m.To(); to != nil {
		return tagOf(to, to.Params)
	}
	return ""
}

func fromTag(m sip.Message) string {
	if f := m.From(); f != nil {
		return tagOf(f, f.Params)
	}
	return ""
}

func callIDOf(m sip.Message) string {
	if h := m.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

func branchOf(m sip.Message) string {
	if v := m.Via(); v != nil {
		b, _ := v.Params.Get("branch")
		return b
	}
	return ""
}

// routeSetOf is the route set of a dialog learnt from Record-Route: in
// order for the UAS (request), reversed for the UAC (response), RFC 3261
// §12.1.1/§12.1.2.
func routeSetOf(m headerList, reverse bool) []sip.Uri {
	var rs []sip.Uri
	for h := range headersNamed(m, "Record-Route") {
		rr, ok := h.(*sip.RecordRouteHeader)
		if !ok {
			var u sip.Uri
			if err := sip.ParseUri(strings.Trim(h.Value(), "<>"), &u); err != nil {
				continue
			}
			rs = append(rs, u)
			continue
		}
		rs = append(rs, rr.Address)
	}
	if reverse {
		for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
			rs[i], rs[j] = rs[j], rs[i]
		}
	}
	return rs
}
