package media

import (
	"fmt"
	"testing"
)

// TestTCPMediaLinesRejected: m-lines over TCP (BFCP over TCP or TLS, RTP
// over TCP) get no UDP relay port: the offer forwarded carries port 0 for
// them, no port is allocated, and an answer accepting them anyway is
// forced to port 0 toward the offerer. The UDP streams are anchored as
// usual.
func TestTCPMediaLinesRejected(t *testing.T) {
	offer := sdpLines(fmt.Sprintf(`v=0
		o=peer 1 1 IN IP4 %[1]s
		s=-
		c=IN IP4 %[1]s
		t=0 0
		m=audio 5000 RTP/SAVP 0
		a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31
		a=rtcp-mux
		m=application 5070 TCP/BFCP *
		a=setup:actpass
		a=connection:new
		a=floorctrl:c-s
		m=application 5072 TCP/TLS/BFCP *
		a=setup:actpass
		a=connection:new
		m=video 5004 TCP/RTP/AVP 97
		a=rtpmap:97 H264/90000
		m=application 5006 UDP/BFCP *
		a=floorctrl:c-s`, lo))
	wantPort := []bool{true, false, false, false, true}

	e := testEngine(t, nil)
	s := e.NewSession(SessionConfig{AdvertiseA: advA, AdvertiseB: advB}) // TCP/RTP/AVP without a=crypto: rejected, not 488
	defer s.Close()
	toB, err := s.Offer(SideA, offer)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range wantPort {
		if got := mediaPort(t, toB, i) != 0; got != want {
			t.Errorf("offer to B, m-line %d: port %d, want non-zero %v", i, mediaPort(t, toB, i), want)
		}
		if a, b := s.Ports(i); (a != 0) != want || (b != 0) != want {
			t.Errorf("m-line %d: relay ports %d/%d, want allocated %v", i, a, b, want)
		}
	}
	if got := e.PortsInUse(); got != 2*2*2 { // 2 UDP streams x 2 legs x a pair
		t.Fatalf("ports in use %d, want 8 (UDP streams only)", got)
	}
	// B accepts every m-line, TCP ones included (a broken answerer).
	toA, err := s.Answer(SideB, offer)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range wantPort {
		if got := mediaPort(t, toA, i) != 0; got != want {
			t.Errorf("answer to A, m-line %d: port %d, want non-zero %v", i, mediaPort(t, toA, i), want)
		}
	}
	// A re-offer turning the UDP BFCP stream into TCP/BFCP releases it.
	reoffer := []byte(string(offer[:len(offer)-len("m=application 5006 UDP/BFCP *\r\na=floorctrl:c-s\r\n")]) +
		"m=application 5006 TCP/BFCP *\r\na=floorctrl:c-s\r\n")
	toB, err = s.Offer(SideA, reoffer)
	if err != nil {
		t.Fatal(err)
	}
	if p := mediaPort(t, toB, 4); p != 0 {
		t.Fatalf("re-offer to B, m-line 4 (now TCP): port %d, want 0", p)
	}
	// The stream is released when the answer commits (until then the
	// agreed state is kept for a rollback).
	if _, err := s.Answer(SideB, reoffer); err != nil {
		t.Fatal(err)
	}
	if got := e.PortsInUse(); got != 4 {
		t.Fatalf("ports in use after the re-offer was answered %d, want 4 (audio only)", got)
	}
}
