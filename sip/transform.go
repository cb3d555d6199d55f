package sip

import (
	"regexp"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/config"
)

// This file rewrites calls leaving the SBC (like Expressway transforms):
// ordered regular-expression rewrites of the Request-URI, From, To and
// P-Asserted-Identity, and header operations. They are compiled once per
// configuration snapshot (route's first, then the destination trunk's) and
// applied to leg B's INVITE after it was built, never to the headers the
// B2BUA builds.

// transformRule is one compiled config.Transform.
type transformRule struct {
	field   string
	re      *regexp.Regexp
	replace string // in regexp.Expand syntax ($1)
	last    bool
}

// rewrites is an ordered list of transforms and header operations.
type rewrites struct {
	rules   []transformRule
	headers []config.HeaderOp
}

// backref turns Expressway-style \1 into $1 (regexp.Expand's syntax).
var backref = regexp.MustCompile(`\\([0-9])`)

func compileRewrites(ts []config.Transform, hs []config.HeaderOp) rewrites {
	var r rewrites
	for _, t := range ts {
		re, err := regexp.Compile(t.Match)
		if err != nil {
			continue // refused by config validation
		}
		r.rules = append(r.rules, transformRule{field: t.Field, re: re, replace: backref.ReplaceAllString(t.Replace, "$${$1}"), last: t.Last})
	}
	r.headers = hs
	return r
}

func (r rewrites) empty() bool { return len(r.rules) == 0 && len(r.headers) == 0 }

// apply applies the transforms to the value of field (a URI without its
// parameters); it returns the new value and whether a Last rule stopped
// the list.
func (r rewrites) apply(field, value string) (string, bool) {
	for _, t := range r.rules {
		if t.field != field {
			continue
		}
		m := t.re.FindStringSubmatchIndex(value)
		if m == nil {
			continue
		}
		value = string(t.re.ExpandString(nil, t.replace, value, m))
		if t.last {
			return value, true
		}
	}
	return value, false
}

// uriText is a URI as transforms see it: scheme:user@host[:port].
func uriText(u sip.Uri) string {
	v := sip.Uri{Scheme: u.Scheme, User: u.User, Host: u.Host, Port: u.Port}
	if v.Scheme == "" {
		v.Scheme = "sips"
	}
	return v.String()
}

// rewriteURI applies lists to u; ok is false when nothing changed or the
// result is not a URI (the original is kept).
func rewriteURI(field string, u sip.Uri, lists ...rewrites) (sip.Uri, bool) {
	orig := uriText(u)
	v := orig
	for _, l := range lists {
		var stop bool
		if v, stop = l.apply(field, v); stop {
			break
		}
	}
	if v == orig {
		return u, false
	}
	var out sip.Uri
	if err := sip.ParseUri(v, &out); err != nil || out.Host == "" || hasCTL(v) {
		return u, false
	}
	out.UriParams = u.UriParams
	return out, true
}

// applyRewrites rewrites leg B's INVITE and the leg's own identifiers (the
// From and To of later requests on the leg must match the INVITE's).
func (c *call) applyRewrites(req *sip.Request, l *leg) {
	lists := []rewrites{c.plan.route, c.plan.to.rewrites}
	if c.plan.route.empty() && c.plan.to.rewrites.empty() {
		return
	}
	// The Request-URI is matched as the caller sent it (user@its host);
	// a rewrite replaces the one built toward the trunk.
	in := sip.Uri{Scheme: "sips", User: c.ruriUser, Host: c.ruriHost}
	if u, ok := rewriteURI("ruri", in, lists...); ok {
		c.log.Debug().Str("from", uriText(in)).Str("to", uriText(u)).Msg("transform: Request-URI")
		if l.scheme() == "sip" {
			u.Scheme = "sip"
			u.UriParams = sip.NewParams()
			u.UriParams.Add("transport", "tls")
		}
		req.Recipient = u
		l.remoteTarget = u
	}
	if f := req.From(); f != nil {
		if u, ok := rewriteURI("from", f.Address, lists...); ok {
			f.Address = u
			l.localURI = u
		}
	}
	if to := req.To(); to != nil {
		if u, ok := rewriteURI("to", to.Address, lists...); ok {
			to.Address = u
			l.remoteURI = u
		}
	}
	for h := range headersNamed(req, "P-Asserted-Identity") {
		v := h.Value()
		i, j := strings.Index(v, "<"), strings.Index(v, ">")
		if i < 0 || j < i {
			continue
		}
		var u sip.Uri
		if sip.ParseUri(v[i+1:j], &u) != nil {
			continue
		}
		if nu, ok := rewriteURI("pai", u, lists...); ok {
			nv := v[:i+1] + nu.String() + v[j:]
			req.RemoveHeader("P-Asserted-Identity")
			req.AppendHeader(sip.NewHeader("P-Asserted-Identity", nv))
		}
		break
	}
	for _, list := range lists {
		for _, op := range list.headers {
			switch op.Op {
			case "add":
				req.AppendHeader(sip.NewHeader(op.Name, op.Value))
			case "set":
				for req.RemoveHeader(op.Name) {
				}
				req.AppendHeader(sip.NewHeader(op.Name, op.Value))
			case "remove":
				for req.RemoveHeader(op.Name) {
				}
			}
		}
	}
}
