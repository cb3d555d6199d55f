package sip

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/test/harness"
)

// corpusSeeds returns the hostile-input corpus of the end-to-end tests
// (test/testdata/sip, see test/hostile_test.go for the format) rendered to
// wire bytes with fixed values. Fills are capped at 2 KiB so the seeds stay
// small enough to mutate quickly.
func corpusSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "test", "testdata", "sip", "*.sip"))
	if err != nil {
		tb.Fatal(err)
	}
	var seeds [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		s := string(b)
		for strings.HasPrefix(s, "#") {
			_, s, _ = strings.Cut(s, "\n")
		}
		seeds = append(seeds, harness.RenderSIP(s, harness.SIPVars{CallID: "seed-call-id", Branch: "z9hG4bK-seed",
			FromTag: "ftag", ToTag: "ttag", Local: "127.0.0.1:40404"}, 50, 2048))
	}
	if len(seeds) == 0 {
		tb.Fatal("no corpus found in ../test/testdata/sip")
	}
	return seeds
}

// FuzzRequestPolicy parses arbitrary bytes the way the TLS transport does
// (sipgo's stream parser) and as one datagram, and runs what the B2BUA runs
// on a request before a call exists: the SIPS policy, the body checks, the
// header allow-list copy, the header parsers and the URI hiding, plus the
// stateless refusal built from the request. Nothing may panic: sipgo runs
// handlers in goroutines without recover, so a panic is a crashed SBC.
func FuzzRequestPolicy(f *testing.F) {
	for _, s := range corpusSeeds(f) {
		f.Add(s)
	}
	allow := allowSet(config.DefaultHeaderAllowList())
	f.Fuzz(func(t *testing.T, data []byte) {
		// The transport's path: a stream parser fed what TLS delivered.
		stream := sip.NewParser().NewSIPStream()
		var msgs []sip.Message
		_ = stream.ParseSIPStream(data, func(m sip.Message) { msgs = append(msgs, m) })
		stream.Close()
		if m, err := sip.NewParser().ParseSIP(data); err == nil && m != nil {
			msgs = append(msgs, m)
		}
		for _, m := range msgs {
			switch m := m.(type) {
			case *sip.Request:
				exerciseRequest(m, allow)
			case *sip.Response:
				exerciseResponse(m, allow)
			}
		}
	})
}

func exerciseRequest(req *sip.Request, allow map[string]bool) {
	r := checkRequest(req)
	if r == nil {
		r = checkInvite(req, false)
	}
	_ = isSDP(req)
	_ = isMultipart(req)
	_ = callIDOf(req)
	_ = branchOf(req)
	_ = toTag(req)
	_ = fromTag(req)
	_ = routeSetOf(req, true)
	_, _ = maxForwardsOf(req)
	_ = unsupportedTags(req)
	body, _ := splitBody(req, allowSet([]string{"application/pidf+xml", "text/plain"}))
	_ = countMLines(body.sdp)
	out := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sips", User: "u", Host: "sbc.test"})
	copyAllowed(req, out, allow, true)
	copyAllowed(req, out, allow, false)
	ct, data := joinBody(body.sdp, body.parts)
	setBody(out, ct, data)
	_ = out.String()
	for _, h := range req.Headers() {
		switch strings.ToLower(h.Name()) {
		case "session-expires":
			_, _ = parseSessionExpires(h.Value())
		case "rack":
			_, _, _, _ = parseRAck(h.Value())
		case "reason":
			_ = sanitizeReason(h.Value())
		}
	}
	_ = hideHost(req.Recipient, "sbc.test")
	if from := req.From(); from != nil {
		u := hideHost(from.Address, "sbc.test")
		_ = u.String()
		_, _ = from.Params.Get("tag")
	}
	if to := req.To(); to != nil {
		_, _ = to.Params.Get("tag")
	}
	if ct := req.Contact(); ct != nil {
		_ = ct.Address.String()
	}
	// What respondRefusal sends back, and the 200 of an OPTIONS.
	code := 400
	if r != nil {
		code = r.code
	}
	res := sip.NewResponseFromRequest(req, code, reasonPhrase(code), nil)
	res.AppendHeader(sip.NewHeader("Allow", methodsAllowed))
	_ = res.String()
	if r == nil && req.CSeq() != nil && req.From() != nil && req.To() != nil {
		// What newCall reads from an INVITE that passed the checks.
		_ = req.CSeq().SeqNo
		if mf := req.MaxForwards(); mf != nil {
			_ = sip.MaxForwardsHeader(mf.Val() - 1)
		}
		for _, h := range req.GetHeaders("Record-Route") {
			if rr, ok := h.(*sip.RecordRouteHeader); ok {
				_ = rr.Address.String()
			}
		}
	}
}

func exerciseResponse(res *sip.Response, allow map[string]bool) {
	_ = retryAfter(res)
	_ = isSDP(res)
	out := sip.NewResponse(200, "OK")
	copyAllowed(res, out, allow, false)
	_ = out.String()
	_ = sipsContacts(res)
	_ = reliable(res)
	_ = rseqOf(res)
	_ = routeSetOf(res, true)
	if h := res.GetHeader("Session-Expires"); h != nil {
		_, _ = parseSessionExpires(h.Value())
	}
	if cseq := res.CSeq(); cseq != nil {
		_ = cseq.MethodName
	}
	if from := res.From(); from != nil {
		_, _ = from.Params.Get("tag")
	}
}
