package sip_test

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

// TestFailureTextHidesInternals: a call whose inside target is down gets a
// 503 whose Warning and reason phrase carry a generic text and the call's
// correlation id, never the inside address or the error text.
func TestFailureTextHidesInternals(t *testing.T) {
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	sbc := siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: "127.0.0.1:9"})
	a := siptest.Dial(t, pki, sbc.MTLS, "caller.test", true)
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
	a.Send(inv)
	res := a.Response(wait, sip.INVITE, 503)
	a.Send(siptest.AckNon2xx(inv, res))
	text := res.String()
	for _, leak := range []string{"127.0.0.1:9", "dial", "connection refused", "unreachable", "every target"} {
		if strings.Contains(text, leak) {
			t.Errorf("the caller's 503 leaks %q:\n%s", leak, text)
		}
	}
	w := res.GetHeader("Warning")
	if w == nil || !strings.Contains(w.Value(), "(ref ") {
		t.Fatalf("Warning %v: want a generic text with the call's ref", w)
	}
	ref := w.Value()[strings.Index(w.Value(), "(ref ")+5:]
	ref = strings.TrimSuffix(strings.TrimSuffix(ref, `"`), ")")
	if !strings.Contains(sbc.Log.String(), `"call":"`+ref+`"`) || !strings.Contains(sbc.Log.String(), "127.0.0.1:9") {
		t.Errorf("the details are not in the log under call %s", ref)
	}
	if res.Reason != "Service Unavailable" {
		t.Errorf("reason phrase %q", res.Reason)
	}
	sbc.WaitIdle(t, wait)
}

// TestIdentityHeadersFromUnauthenticated: P-Asserted-Identity from a
// caller without a certificate never reaches the inside; from a trunk
// identified by its certificate it does.
func TestIdentityHeadersFromUnauthenticated(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	pai := sip.NewHeader("P-Asserted-Identity", "<sips:+15550100@sbc.test>")
	for _, tc := range []struct {
		name    string
		addr    string
		cert    bool
		crosses bool
	}{{"unauthenticated", bd.sbc.TLS, false, false}, {"trusted_trunk", bd.sbc.MTLS, true, true}} {
		a := siptest.Dial(t, bd.pki, tc.addr, "caller.test", tc.cert)
		inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""), pai)
		a.Send(inv)
		b := bd.calleePeer()
		invB := b.Request(wait, sip.INVITE)
		if got := invB.GetHeader("P-Asserted-Identity") != nil; got != tc.crosses {
			t.Errorf("%s: P-Asserted-Identity crossed=%v, want %v", tc.name, got, tc.crosses)
		}
		b.Send(b.Reply(invB, 486, siptest.Tag(), nil))
		b.Request(wait, sip.ACK)
		r := a.Response(wait, sip.INVITE, 486)
		a.Send(siptest.AckNon2xx(inv, r))
	}
	bd.sbc.WaitIdle(t, wait)
}

// TestMediaStreamCap: an offer with more m-lines than
// limits.max_media_streams (8) is refused 488 before any media port is
// taken.
func TestMediaStreamCap(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	a := bd.caller(t)
	var sdp strings.Builder
	sdp.WriteString("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n")
	for i := range 9 {
		fmt.Fprintf(&sdp, "m=audio %d RTP/AVP 0\r\n", 30000+2*i)
	}
	inv := a.NewInvite("sips:bob@sbc.test", []byte(sdp.String()))
	a.Send(inv)
	r := a.Response(wait, sip.INVITE, 488)
	a.Send(siptest.AckNon2xx(inv, r))
	if n := bd.sbc.Engine.PortsInUse(); n != 0 {
		t.Errorf("%d media ports taken for a refused offer", n)
	}
	bd.sbc.WaitIdle(t, wait)
}

// TestTCPMediaLineRejected: a TCP/BFCP m-line is sent on with port 0 (no
// TCP relay): content sharing fails visibly, audio works.
func TestTCPMediaLineRejected(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	a := bd.caller(t)
	sdp := string(siptest.SDP(siptest.NewRTP(t).Port(), 1, "")) + "m=application 5070 TCP/BFCP *\r\na=floorctrl:c-s\r\n"
	inv := a.NewInvite("sips:bob@sbc.test", []byte(sdp))
	a.Send(inv)
	b := bd.calleePeer()
	invB := b.Request(wait, sip.INVITE)
	if !strings.Contains(string(invB.Body()), "m=application 0 TCP/BFCP") {
		t.Errorf("TCP/BFCP m-line not rejected toward the callee:\n%s", invB.Body())
	}
	b.Send(b.Reply(invB, 486, siptest.Tag(), nil))
	b.Request(wait, sip.ACK)
	r := a.Response(wait, sip.INVITE, 486)
	a.Send(siptest.AckNon2xx(inv, r))
	bd.sbc.WaitIdle(t, wait)
}

// TestTrustedSourceNotThrottled: handshakes_per_ip 2: a stranger
// (127.0.0.2) gets two handshakes and then is refused; the inside trunk's
// address (127.0.0.1, its URI's IP) is not throttled.
func TestTrustedSourceNotThrottled(t *testing.T) {
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	sbc := siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: "127.0.0.1:9",
		Limits: "{ max_connections_per_ip: 100, handshakes_per_ip: 2, unauthenticated_cps: 100 }"})
	served := func(from string) int {
		n := 0
		for range 6 {
			c, err := siptest.DialFrom(pki, from, sbc.TLS, "callee.test", true)
			if err != nil {
				continue
			}
			_, werr := c.Write([]byte("OPTIONS sips:sbc.test SIP/2.0\r\nVia: SIP/2.0/TLS " + c.LocalAddr().String() + ";branch=z9hG4bKx" + siptest.Tag() +
				"\r\nFrom: <sips:x@callee.test>;tag=1\r\nTo: <sips:sbc.test>\r\nCall-ID: " + siptest.Tag() + "\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"))
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 512)
			if k, err := c.Read(buf); werr == nil && err == nil && strings.HasPrefix(string(buf[:k]), "SIP/2.0 200") {
				n++
			}
			_ = c.Close()
		}
		return n
	}
	if n := served("127.0.0.1"); n != 6 {
		t.Errorf("the trunk's address got %d of 6 connections served, want all", n)
	}
	if n := served("127.0.0.2"); n != 2 {
		t.Errorf("a stranger got %d of 6 connections served, want 2 (handshakes_per_ip)", n)
	}
}

// TestNonReadingFlood: 16 connections without a certificate pipeline
// OPTIONS and never read. The SBC disconnects each once its write queue
// is full (1 MiB for a peer that is no trunk) or a write has been blocked
// for limits.write_timeout. Goroutines and heap stay bounded and a normal
// call completes meanwhile.
func TestNonReadingFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("12 s")
	}
	bd := newBed(t, siptest.SBCOptions{LogLevel: "warn",
		Limits: "{ max_connections_per_ip: 100, handshakes_per_ip: 100, write_timeout: 2s }"})
	g0 := runtime.NumGoroutine()
	h0 := liveHeap()
	options := func(local string, i int) []byte {
		return []byte(fmt.Sprintf("OPTIONS sips:sbc.test SIP/2.0\r\nVia: SIP/2.0/TLS %s;branch=z9hG4bKf%d\r\n"+
			"From: <sips:m@evil.test>;tag=f\r\nTo: <sips:sbc.test>\r\nCall-ID: flood%d\r\nCSeq: %d OPTIONS\r\n"+
			"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", local, i, i, i))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := 0
	for range 16 {
		c, err := siptest.DialWith(bd.pki, "127.0.0.3", bd.sbc.TLS, "", false, 4096)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			// Each pipelines 4 MiB of OPTIONS (far more responses than
			// the socket buffers hold) and never reads.
			batch := make([]byte, 0, 64<<10)
			written := 0
			for i := 0; written < 4<<20; i++ {
				select {
				case <-stop:
					return
				default:
				}
				batch = append(batch[:0], options(c.LocalAddr().String(), i)...)
				for len(batch) < 32<<10 {
					batch = append(batch, options(c.LocalAddr().String(), i)...)
				}
				// Longer than write_timeout: a write fails only when the
				// SBC, blocked on its own writes, dropped the connection
				// (a merely slow SBC is waited for).
				_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				n, err := c.Write(batch)
				written += n
				mu.Lock()
				sent += n
				mu.Unlock()
				if err != nil {
					break // the SBC dropped us
				}
			}
			<-stop
		}()
	}
	// A normal call completes during the flood.
	time.Sleep(2 * time.Second)
	_, _, during := bd.sbc.B2BUA.Counts()
	c := basicCall(t, bd)
	c.hangup(t, bd)
	// Each flood connection is dropped once a write of the SBC has been
	// blocked for write_timeout (the kernel buffers fill first).
	var after int
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, _, after = bd.sbc.B2BUA.Counts(); after <= 2 {
			break
		}
	}
	g1 := runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	close(stop)
	wg.Wait()
	mu.Lock()
	t.Logf("flood: %d KiB written; SBC connections %d during the flood, %d after write_timeout; goroutines %d -> %d; heap in use %d -> %d KiB",
		sent>>10, during, after, g0, g1, h0>>10, ms.HeapInuse>>10)
	mu.Unlock()
	if after > 2 { // the caller's and the callee's
		buf := make([]byte, 1<<22)
		n := runtime.Stack(buf, true)
		var keep []string
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "edge-sbc/sip.") && !strings.Contains(g, "_test.go") {
				keep = append(keep, g)
			}
		}
		t.Errorf("%d connections still open after write_timeout, want only the call's 2; SBC goroutines:\n%s", after, strings.Join(keep, "\n\n"))
	}
	if g1 > g0+16*3+20 {
		t.Errorf("goroutines grew %d -> %d: more than a few per connection", g0, g1)
	}
	if ms.HeapInuse > h0+64<<20 {
		t.Errorf("heap in use grew by %d MiB", (ms.HeapInuse-h0)>>20)
	}
}

// TestWildcardCertificateInbound: a partner whose certificate carries
// *.partner.test (or the URI SAN sips:partner.test) calls in and is mapped
// to the trunk whose identity it proves, as the same certificate is
// accepted when the SBC calls out (one check both ways).
func TestWildcardCertificateInbound(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dns      []string
		uris     []string
		identity string
	}{
		{"wildcard DNS SAN", []string{"*.partner.test"}, nil, "sip.partner.test"},
		{"sips URI SAN", nil, []string{"sips:partner.test"}, "partner.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
			pki.Issue(t, "partner", tc.dns, tc.uris)
			l := siptest.Listen(t, pki, "callee.test")
			sbc := siptest.StartSBC(t, pki, siptest.SBCOptions{Callee: l.Addr(),
				Trunks: []string{"{ name: partner, identity: " + tc.identity + ", allow_plain_rtp: true }"},
				Routes: []string{"{ from: partner, to: inside }"}})
			a := siptest.Dial(t, pki, sbc.MTLS, "partner", true)
			inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
			a.Send(inv)
			b := l.Accept(wait)
			invB := b.Request(wait, sip.INVITE)
			b.Send(b.Reply(invB, 486, siptest.Tag(), nil))
			b.Request(wait, sip.ACK)
			r := a.Response(wait, sip.INVITE, 486)
			a.Send(siptest.AckNon2xx(inv, r))
			if !strings.Contains(sbc.Log.String(), `"trunk_a":"partner"`) {
				t.Error("the call was not mapped to the partner trunk")
			}
			sbc.WaitIdle(t, wait)
		})
	}
}

// TestSlowTrunkKeepsItsConnection: a configured trunk (its certificate
// names the caller trunk) that stops reading for longer than
// limits.write_timeout keeps its connection and gets every response once it
// reads again (limits.trunk_write_timeout applies); a stranger doing the
// same is disconnected after write_timeout.
func TestSlowTrunkKeepsItsConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("8 s")
	}
	bd := newBed(t, siptest.SBCOptions{LogLevel: "warn",
		Limits: "{ write_timeout: 1s, trunk_write_timeout: 20s }"})
	type flood struct {
		name string
		c    net.Conn
		sent int
	}
	var floods []*flood
	for _, f := range []struct {
		name, addr string
		cert       bool
	}{{"trunk", bd.sbc.MTLS, true}, {"stranger", bd.sbc.TLS, false}} {
		c, err := siptest.DialWith(bd.pki, "127.0.0.1", f.addr, "caller.test", f.cert, 4096)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		floods = append(floods, &flood{name: f.name, c: c})
	}
	// Each writes 8 MiB of OPTIONS while not reading for 3 s, then reads:
	// the SBC's writes block long before its reads do.
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, f := range floods {
		var batch []byte
		for i := 0; len(batch) < 8<<20; i++ {
			batch = append(batch, fmt.Sprintf("OPTIONS sips:sbc.test SIP/2.0\r\nVia: SIP/2.0/TLS %s;branch=z9hG4bKs%d\r\n"+
				"From: <sips:m@caller.test>;tag=f\r\nTo: <sips:sbc.test>\r\nCall-ID: slow%d\r\nCSeq: %d OPTIONS\r\n"+
				"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", f.c.LocalAddr(), i, i, i)...)
			f.sent++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = f.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := f.c.Write(batch); err != nil {
				t.Logf("%s: write: %v", f.name, err)
			}
		}()
	}
	time.Sleep(3 * time.Second) // not reading: longer than write_timeout
	for _, f := range floods {
		got := 0
		buf := make([]byte, 64<<10)
		var tail []byte
		_ = f.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		var err error
		for got < f.sent {
			var n int
			n, err = f.c.Read(buf)
			if err != nil {
				break
			}
			tail = append(tail, buf[:n]...)
			got += bytes.Count(tail, []byte("SIP/2.0 200 "))
			if i := bytes.LastIndex(tail, []byte("SIP/2.0 200 ")); i >= 0 {
				tail = tail[i+1:]
			}
		}
		t.Logf("%s: %d OPTIONS sent, %d answers read (%v)", f.name, f.sent, got, err)
		switch f.name {
		case "trunk":
			if got < f.sent {
				t.Errorf("the trunk got %d of %d answers: its connection was dropped (%v)", got, f.sent, err)
			}
		case "stranger":
			if got >= f.sent {
				t.Errorf("the stranger that did not read for 3 s was not disconnected (write_timeout 1s)")
			}
		}
	}
}
