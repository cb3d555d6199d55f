package media

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// audioBFCPSDP is an SRTP audio stream with the given direction attribute
// ("" for none) at ip:audio plus a UDP/BFCP application stream at ip:bfcp,
// which like every BFCP m-line has no direction attribute.
func audioBFCPSDP(ip netip.Addr, audio, bfcp int, dir string) []byte {
	s := fmt.Sprintf(`v=0
o=peer 1 1 IN IP4 %[1]s
s=-
c=IN IP4 %[1]s
t=0 0
m=audio %[2]d RTP/SAVP 0
a=rtpmap:0 PCMU/8000
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31
a=rtcp-mux
`, ip, audio)
	if dir != "" {
		s += "a=" + dir + "\n"
	}
	s += fmt.Sprintf(`m=application %d UDP/BFCP *
a=floorctrl:c-s
a=confid:1
a=userid:2
a=floorid:2 mstrm:12
`, bfcp)
	return sdpLines(s)
}

// TestDeadMediaHoldWithBFCP: a held call with an idle BFCP stream is not
// timed out (the BFCP m-line does not count as a live stream); once the
// audio is resumed and stays idle, the timeout fires, once.
func TestDeadMediaHoldWithBFCP(t *testing.T) {
	for _, hold := range []struct{ name, offer, answer string }{
		{"sendonly/recvonly", "sendonly", "recvonly"},
		{"sendonly both ways", "sendonly", "sendonly"},
		{"inactive", "inactive", "inactive"},
	} {
		t.Run(hold.name, func(t *testing.T) {
			e := testEngine(t, func(c *Config) { c.Timeout = 100 * time.Millisecond })
			if err := e.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			a, b := newPeer(t), newPeer(t)
			var fired atomic.Int32
			s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo, OnTimeout: func() { fired.Add(1) }})
			defer s.Close()
			if _, err := s.Offer(SideA, audioBFCPSDP(lo, a.port(), a.port()+1, hold.offer)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Answer(SideB, audioBFCPSDP(lo, b.port(), b.port()+1, hold.answer)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // 5 x the timeout, nothing sent
			if n := fired.Load(); n != 0 {
				t.Fatalf("held call with an idle BFCP stream timed out (%d)", n)
			}
			// Resume; the audio stays idle: the timer runs and fires once.
			if _, err := s.Offer(SideA, audioBFCPSDP(lo, a.port(), a.port()+1, "sendrecv")); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Answer(SideB, audioBFCPSDP(lo, b.port(), b.port()+1, "")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 2*time.Second, "OnTimeout after resume", func() bool { return fired.Load() == 1 })
			time.Sleep(300 * time.Millisecond)
			if n := fired.Load(); n != 1 {
				t.Fatalf("OnTimeout called %d times, want once", n)
			}
		})
	}
}

// TestDeadMediaBFCPDoesNotKeepAlive: BFCP packets flowing do not keep a call
// whose audio is dead alive.
func TestDeadMediaBFCPDoesNotKeepAlive(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.Timeout = 150 * time.Millisecond })
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := newPeer(t), newPeer(t)
	var fired atomic.Int32
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo, OnTimeout: func() { fired.Add(1) }})
	defer s.Close()
	if _, err := s.Offer(SideA, audioBFCPSDP(lo, a.port(), a.port(), "")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideB, audioBFCPSDP(lo, b.port(), b.port(), "")); err != nil {
		t.Fatal(err)
	}
	bfcpA, _ := s.Ports(1)
	deadline := time.Now().Add(2 * time.Second)
	for fired.Load() == 0 && time.Now().Before(deadline) {
		a.send(bfcpA, []byte{0x20, 0x01, 0x00, 0x00, 0, 0, 0, 1, 0, 1, 0, 2}) // a BFCP Hello every 10 ms
		time.Sleep(10 * time.Millisecond)
	}
	if fired.Load() != 1 {
		t.Fatal("BFCP traffic kept a call with dead audio alive")
	}
	if st := s.Stats()[1]; st.FromA.Packets == 0 {
		t.Fatal("the BFCP packets were not relayed")
	}
}
