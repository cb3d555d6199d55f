package harness

import (
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
)

// The hostile-input corpus (test/testdata/sip, format in its README) is
// stored as templates: LF line endings, leading "# ..." comment lines, and
// placeholders rendered here into the bytes sent on the wire.

// SIPVars are the per-message values of a corpus template.
type SIPVars struct{ CallID, Branch, FromTag, ToTag, Local string }

var (
	repeatLine = regexp.MustCompile(`^\[repeatline:(\d+)\]`)
	escapes    = regexp.MustCompile(`\[(nul|cr|lf|hex:[0-9a-fA-F]{2}|fill:\d+|fill0:\d+)\]`)
)

// RenderSIP turns a corpus template (comment lines already removed) into
// wire bytes: CRLF line endings, [repeatline:N] lines repeated, the
// variables of v, [nul]/[cr]/[lf]/[hex:XX]/[fill:N]/[fill0:N] escapes and
// [len] as the body length. maxRepeat and maxFill cap N (0: no cap), e.g.
// to keep fuzz seeds small.
func RenderSIP(tmpl string, v SIPVars, maxRepeat, maxFill int) []byte {
	capN := func(n, limit int) int {
		if limit > 0 {
			return min(n, limit)
		}
		return n
	}
	var lines []string
	for _, l := range strings.Split(tmpl, "\n") {
		if m := repeatLine.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			for range capN(n, maxRepeat) {
				lines = append(lines, l[len(m[0]):])
			}
			continue
		}
		lines = append(lines, l)
	}
	s := strings.Join(lines, "\r\n")
	s = strings.NewReplacer("[call_id]", v.CallID, "[branch]", v.Branch, "[from_tag]", v.FromTag,
		"[to_tag]", v.ToTag, "[local]", v.Local).Replace(s)
	s = escapes.ReplaceAllStringFunc(s, func(e string) string {
		e = e[1 : len(e)-1]
		switch {
		case e == "nul":
			return "\x00"
		case e == "cr":
			return "\r"
		case e == "lf":
			return "\n"
		case strings.HasPrefix(e, "hex:"):
			b, _ := hex.DecodeString(e[4:])
			return string(b)
		case strings.HasPrefix(e, "fill0:"):
			n, _ := strconv.Atoi(e[6:])
			return strings.Repeat("\x00", capN(n, maxFill))
		default:
			n, _ := strconv.Atoi(e[5:])
			return strings.Repeat("a", capN(n, maxFill))
		}
	})
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		s = strings.ReplaceAll(s[:i], "[len]", strconv.Itoa(len(s)-i-4)) + s[i:]
	}
	return []byte(s)
}
