package sip

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// This file is where a message body is taken apart and put together: the
// SDP (a plain application/sdp body or the application/sdp part of a
// multipart/mixed body) goes to the media anchor, other parts cross only
// when their content type is on sip.body_allow_list. An SDP is never
// passed on without being anchored.

// maxParts bounds the parts of a multipart body.
const maxParts = 8

var errBadBody = errors.New("malformed message body")

// bodyPart is a non-SDP body part that may cross.
type bodyPart struct {
	ctype       string
	disposition string
	data        []byte
}

// msgBody is a body split for the B2BUA.
type msgBody struct {
	sdp   []byte
	parts []bodyPart
}

type bodyMessage interface {
	Body() []byte
	ContentType() *sip.ContentTypeHeader
}

func contentType(m interface{ ContentType() *sip.ContentTypeHeader }) string {
	if ct := m.ContentType(); ct != nil {
		return ct.Value()
	}
	return ""
}

// isSDP reports whether the message body is SDP.
func isSDP(m bodyMessage) bool {
	if len(m.Body()) == 0 {
		return false
	}
	ct := strings.ToLower(contentType(m))
	return ct == "" || strings.HasPrefix(ct, "application/sdp")
}

func isMultipart(m bodyMessage) bool {
	return strings.HasPrefix(strings.ToLower(contentType(m)), "multipart/")
}

// splitBody takes a message body apart. Parts whose type is not allowed
// are dropped; a multipart body with more than one SDP part, or one that
// cannot be parsed, is an error wrapping errBadBody.
func splitBody(m bodyMessage, allow map[string]bool) (msgBody, error) {
	data := m.Body()
	if len(data) == 0 {
		return msgBody{}, nil
	}
	if isSDP(m) {
		return msgBody{sdp: data}, nil
	}
	mt, params, err := mime.ParseMediaType(contentType(m))
	if err != nil {
		return msgBody{}, fmt.Errorf("%w: content type: %w", errBadBody, err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		if allow[mt] {
			return msgBody{parts: []bodyPart{{ctype: contentType(m), data: data}}}, nil
		}
		return msgBody{}, nil
	}
	if mt != "multipart/mixed" && mt != "multipart/alternative" && mt != "multipart/related" {
		return msgBody{}, fmt.Errorf("%w: %s", errBadBody, mt)
	}
	boundary := params["boundary"]
	if boundary == "" {
		return msgBody{}, fmt.Errorf("%w: multipart without boundary", errBadBody)
	}
	var out msgBody
	r := multipart.NewReader(bytes.NewReader(data), boundary)
	for i := 0; ; i++ {
		p, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return msgBody{}, fmt.Errorf("%w: %w", errBadBody, err)
		}
		if i >= maxParts {
			return msgBody{}, fmt.Errorf("%w: more than %d parts", errBadBody, maxParts)
		}
		b, err := io.ReadAll(io.LimitReader(p, int64(len(data))+1))
		if err != nil {
			return msgBody{}, fmt.Errorf("%w: %w", errBadBody, err)
		}
		ct := p.Header.Get("Content-Type")
		pmt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			pmt = "text/plain" // RFC 2046 §5.1: the default
		}
		switch {
		case pmt == "application/sdp":
			if out.sdp != nil {
				return msgBody{}, fmt.Errorf("%w: two SDP parts", errBadBody)
			}
			out.sdp = b
		case strings.HasPrefix(pmt, "multipart/"):
			// Nested multipart never crosses (and its SDP is never anchored).
		case allow[pmt]:
			disp := p.Header.Get("Content-Disposition")
			if hasCTL(ct) || hasCTL(disp) {
				continue
			}
			out.parts = append(out.parts, bodyPart{ctype: ct, disposition: disp, data: b})
		}
	}
	return out, nil
}

// joinBody puts an anchored SDP and the crossing parts back into a body:
// a plain SDP when there is nothing else, else multipart/mixed with a new
// boundary.
func joinBody(sdp []byte, parts []bodyPart) (ctype string, data []byte) {
	switch {
	case len(parts) == 0 && len(sdp) == 0:
		return "", nil
	case len(parts) == 0:
		return "application/sdp", sdp
	case len(sdp) == 0 && len(parts) == 1 && parts[0].disposition == "":
		return parts[0].ctype, parts[0].data
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if len(sdp) > 0 {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", "application/sdp")
		pw, _ := w.CreatePart(h)
		_, _ = pw.Write(sdp)
	}
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", p.ctype)
		if p.disposition != "" {
			h.Set("Content-Disposition", p.disposition)
		}
		pw, _ := w.CreatePart(h)
		_, _ = pw.Write(p.data)
	}
	_ = w.Close()
	return "multipart/mixed;boundary=" + w.Boundary(), buf.Bytes()
}

// setBody sets a body and its Content-Type on dst.
func setBody(dst interface {
	sip.Message
	RemoveHeader(string) bool
}, ctype string, body []byte) {
	for dst.RemoveHeader("Content-Type") {
	}
	if len(body) == 0 {
		dst.SetBody(nil)
		return
	}
	ct := sip.ContentTypeHeader(ctype)
	dst.AppendHeader(&ct)
	dst.SetBody(body)
}

// countMLines counts the m= lines of an SDP (before it is parsed: the
// stream cap is checked before any media port is taken).
func countMLines(sdp []byte) int {
	n := 0
	if bytes.HasPrefix(sdp, []byte("m=")) {
		n++
	}
	n += bytes.Count(sdp, []byte("\nm="))
	return n
}
