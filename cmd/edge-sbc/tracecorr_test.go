package main

import (
	"strings"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/sip"
)

func sipMsg(start, callID, to string) []byte {
	return []byte(start + "\r\nVia: SIP/2.0/TLS x;branch=z9hG4bK1\r\nTo: " + to + "\r\nCall-ID: " + callID + "\r\nContent-Length: 0\r\n\r\n")
}

type emitted struct{ start, call string }

func record(out *[]emitted) func(sip.TraceEvent) {
	return func(ev sip.TraceEvent) {
		line, _, _ := strings.Cut(string(ev.Data), "\r\n")
		*out = append(*out, emitted{line, ev.Call})
	}
}

func TestCorrelatorFillsIn(t *testing.T) {
	var out []emitted
	c := newCorrelator(record(&out))
	now := time.Now()
	// The SIP layer traces the INVITE before the call exists.
	inv := sipMsg("INVITE sips:bob@sbc.test SIP/2.0", "a1", "<sips:bob@sbc.test>")
	c.Trace(sip.TraceEvent{Time: now, Received: true, Data: inv})
	copy(inv, "XXXXXX") // Trace must not keep Data
	if len(out) != 0 {
		t.Fatalf("the uncorrelated INVITE went out at once: %v", out)
	}
	c.Trace(sip.TraceEvent{Time: now, Data: sipMsg("SIP/2.0 100 Trying", "a1", "<sips:bob@sbc.test>"), Call: "C1"})
	c.Trace(sip.TraceEvent{Time: now, Data: sipMsg("INVITE sips:bob@callee SIP/2.0", "b1", "<sips:bob@callee>"), Call: "C1"})
	// After the call was forgotten: the 200 to the BYE, with compact headers.
	c.Trace(sip.TraceEvent{Time: now, Received: true, Data: []byte("SIP/2.0 200 OK\r\ni: b1\r\nt: <sips:bob@callee>;tag=x\r\n\r\n")})
	// Outside any call.
	c.Trace(sip.TraceEvent{Time: now, Received: true, Data: sipMsg("OPTIONS sips:sbc.test SIP/2.0", "o1", "<sips:sbc.test>")})
	c.Trace(sip.TraceEvent{Time: now, Data: []byte("\r\n\r\n")})
	want := []emitted{
		{"INVITE sips:bob@sbc.test SIP/2.0", "C1"},
		{"SIP/2.0 100 Trying", "C1"},
		{"INVITE sips:bob@callee SIP/2.0", "C1"},
		{"SIP/2.0 200 OK", "C1"},
		{"OPTIONS sips:sbc.test SIP/2.0", ""},
		{"", ""},
	}
	if len(out) != len(want) {
		t.Fatalf("emitted %v, want %v", out, want)
	}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("emitted[%d] = %v, want %v (all: %v)", i, out[i], want[i], out)
		}
	}
}

func TestCorrelatorRefusedAndUnclaimedInvites(t *testing.T) {
	var out []emitted
	c := newCorrelator(record(&out))
	now := time.Now()
	// A refused INVITE: its final response releases it, both without id.
	c.Trace(sip.TraceEvent{Time: now, Received: true, Data: sipMsg("INVITE sips:x@sbc.test SIP/2.0", "r1", "<sips:x@sbc.test>")})
	c.Trace(sip.TraceEvent{Time: now, Data: sipMsg("SIP/2.0 403 Forbidden", "r1", "<sips:x@sbc.test>;tag=1")})
	if len(out) != 2 || out[0] != (emitted{"INVITE sips:x@sbc.test SIP/2.0", ""}) || out[1].start != "SIP/2.0 403 Forbidden" {
		t.Fatalf("refused INVITE: %v", out)
	}
	// A re-INVITE (To tag) is never held.
	c.Trace(sip.TraceEvent{Time: now, Received: true, Data: sipMsg("INVITE sips:x@sbc.test SIP/2.0", "d1", "<sips:x@sbc.test>;tag=9")})
	if len(out) != 3 {
		t.Fatalf("re-INVITE held: %v", out)
	}
	// An INVITE nothing follows (a trunk with trace: false) is dropped.
	c.Trace(sip.TraceEvent{Time: now.Add(-3 * time.Second), Received: true, Data: sipMsg("INVITE sips:y@sbc.test SIP/2.0", "off1", "<sips:y@sbc.test>")})
	c.lastSweep = time.Time{}
	c.Trace(sip.TraceEvent{Time: now, Received: true, Data: sipMsg("OPTIONS sips:sbc.test SIP/2.0", "o2", "<sips:sbc.test>")})
	if len(c.held) != 0 {
		t.Fatalf("unclaimed INVITE still held: %v", c.held)
	}
	c.Trace(sip.TraceEvent{Time: now, Data: sipMsg("SIP/2.0 100 Trying", "off1", "<sips:y@sbc.test>")})
	for _, e := range out {
		if strings.Contains(e.start, "y@sbc.test") {
			t.Fatalf("an unclaimed INVITE went out: %v", out)
		}
	}
}

func TestCorrelatorForgets(t *testing.T) {
	var out []emitted
	c := newCorrelator(record(&out))
	c.Trace(sip.TraceEvent{Time: time.Now(), Data: sipMsg("BYE sips:x SIP/2.0", "f1", "<sips:x>;tag=1"), Call: "C9"})
	c.known["f1"] = knownCall{corr: "C9", expires: time.Now().Add(-time.Second)}
	c.lastSweep = time.Time{}
	c.Trace(sip.TraceEvent{Time: time.Now(), Received: true, Data: sipMsg("SIP/2.0 200 OK", "f1", "<sips:x>;tag=1")})
	if out[1].call != "" || len(c.known) != 0 {
		t.Fatalf("an expired Call-ID was used: %v, %v", out, c.known)
	}
}

func TestSIPIDs(t *testing.T) {
	for _, tc := range []struct {
		msg    string
		callID string
		toTag  bool
		invite bool
	}{
		{"INVITE sips:a@b SIP/2.0\r\nCall-ID:  abc@h \r\nTo: <sips:a@b>\r\n\r\nCall-ID: body", "abc@h", false, true},
		{"SIP/2.0 180 Ringing\r\ncall-id: x\r\nTO: <sips:a@b>;TAG=77\r\n\r\n", "x", true, false},
		{"INVITE sips:a@b SIP/2.0\ni: y\nt: b <sips:a@b>;tag=1\n\n", "y", true, true},
		{"INVITE sips:a@b SIP/2.0", "", false, true},
		{"", "", false, false},
	} {
		id, tag, inv := sipIDs([]byte(tc.msg))
		if id != tc.callID || tag != tc.toTag || inv != tc.invite {
			t.Errorf("%q: %q %v %v, want %q %v %v", tc.msg, id, tag, inv, tc.callID, tc.toTag, tc.invite)
		}
	}
}
