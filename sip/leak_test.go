package sip_test

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

// autoAnswer answers every INVITE on p with 200 and SDP, every BYE with
// 200, until stop is closed.
func autoAnswer(p *siptest.Peer, stop chan struct{}) {
	sdp := siptest.SDP(9, 1, "")
	for {
		select {
		case <-stop:
			return
		default:
		}
		m := p.Next(50 * time.Millisecond)
		req, ok := m.(*sip.Request)
		if !ok {
			continue
		}
		switch req.Method {
		case sip.INVITE:
			p.Send(p.Reply(req, 200, siptest.Tag(), sdp))
		case sip.BYE:
			p.Send(p.Reply(req, 200, "", nil))
		}
	}
}

// liveHeap is the heap in use after forced collections.
func liveHeap() uint64 {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestNothingLeftPerCall: thousands of short calls leave nothing behind:
// calls, dialogs, transactions, media ports back to zero, goroutines back
// to the baseline, and at most 1 KiB of live heap per ended call after a
// forced GC. LEAK_CALLS sets the number of calls (default 2000).
func TestNothingLeftPerCall(t *testing.T) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("LEAK_CALLS")); err == nil && v > 0 {
		n = v
	}
	if testing.Short() {
		n = 300
	}
	bd := newBed(t, siptest.SBCOptions{LogLevel: "off"})
	a := bd.caller(t)
	run := func(calls int, b *siptest.Peer) {
		for range calls {
			inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(9, 1, ""))
			a.Send(inv)
			if b == nil {
				b = bd.calleePeer()
				stop := make(chan struct{})
				t.Cleanup(func() { close(stop) })
				go autoAnswer(b, stop)
			}
			ok := a.Response(wait, sip.INVITE, 200)
			d := a.UACDialog(inv, ok)
			a.Send(d.Request(sip.ACK, nil, 1), d.Request(sip.BYE, nil))
			a.Response(wait, sip.BYE, 200)
			a.Forget() // the 100 Trying the test did not wait for
		}
	}
	// Warm up (connections, pools, maps at their working size).
	run(200, nil)
	bd.sbc.WaitIdle(t, wait)
	time.Sleep(100 * time.Millisecond)
	g0 := runtime.NumGoroutine()
	h0 := liveHeap()
	start := time.Now()
	run(n, bd.peerB)
	elapsed := time.Since(start)
	bd.sbc.WaitIdle(t, wait)
	time.Sleep(100 * time.Millisecond)
	h1 := liveHeap()
	// Workers started for the load exit after 5 s idle (workers.go): the
	// goroutine count is read once they may have, at the latest.
	g1 := runtime.NumGoroutine()
	for end := time.Now().Add(6 * time.Second); g1 > g0+2 && time.Now().Before(end); g1 = runtime.NumGoroutine() {
		time.Sleep(50 * time.Millisecond)
	}
	per := (float64(h1) - float64(h0)) / float64(n)
	t.Logf("%d calls in %s (%.0f calls/s); live heap %d -> %d bytes: %.0f bytes per ended call; goroutines %d -> %d",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), h0, h1, per, g0, g1)
	if per > 1024 {
		t.Errorf("live heap grew %.0f bytes per ended call, want at most 1024", per)
	}
	if g1 > g0+2 {
		t.Errorf("goroutines %d -> %d after the calls ended", g0, g1)
	}
}
