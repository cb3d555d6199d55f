package sip_test

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

// spin keeps n goroutines runnable (each yields and is runnable again at
// once) until the returned function is called: the process is behind, as
// when its CPU cannot keep up, whatever else the machine does.
func spin(n int) (stop func()) {
	var done atomic.Bool
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				runtime.Gosched()
			}
		}()
	}
	return func() { done.Store(true); wg.Wait() }
}

// waitBehind returns once the SBC's gate has seen the run queue too long.
func waitBehind(t *testing.T, bd *bed) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for metricValue(t, bd.sbc, "edge_sbc_overloaded", "") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("edge_sbc_overloaded never 1 with the run queue full")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestNewCallWaitsWhileBehind: while more goroutines wait for a processor
// than the SBC runs in a few milliseconds, a new call gets its 100 Trying
// and waits (no relay sockets, no INVITE to the callee); it is placed as
// soon as the process catches up, and completes.
func TestNewCallWaitsWhileBehind(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	basicCall(t, bd) // up: the SBC's connection to the callee exists
	ports := bd.sbc.Engine.PortsInUse()

	queued := metricValue(t, bd.sbc, "edge_sbc_setup_queued_total", "")
	stop := spin(40 * runtime.GOMAXPROCS(0))
	waitBehind(t, bd)
	a := bd.caller(t)
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
	a.Send(inv)
	a.Response(wait, sip.INVITE, 100)
	b := bd.calleePeer()
	b.Nothing(300*time.Millisecond, "INVITE while the SBC is behind", siptest.IsRequest(sip.INVITE))
	if q := metricValue(t, bd.sbc, "edge_sbc_setup_queue", ""); q != 1 {
		t.Errorf("edge_sbc_setup_queue = %v while the call waits, want 1", q)
	}
	if n := bd.sbc.Engine.PortsInUse(); n != ports {
		t.Errorf("relay ports in use %d while the call waits, want %d (none taken yet)", n, ports)
	}
	t0 := time.Now()
	stop()
	invB := b.Request(wait, sip.INVITE)
	t.Logf("placed %v after the process caught up", time.Since(t0).Round(time.Millisecond))
	tag := siptest.Tag()
	b.Send(b.Reply(invB, 200, tag, siptest.SDP(siptest.NewRTP(t).Port(), 1, "")))
	ok := a.Response(wait, sip.INVITE, 200)
	a.Send(a.UACDialog(inv, ok).Request(sip.ACK, nil, inv.CSeq().SeqNo))
	b.Request(wait, sip.ACK)
	if v := metricValue(t, bd.sbc, "edge_sbc_setup_queued_total", ""); v != queued+1 {
		t.Errorf("edge_sbc_setup_queued_total = %v, want %v", v, queued+1)
	}
}

// TestNewCallRefusedAfterSetupQueueTimeout: a new call that waited longer
// than limits.setup_queue_timeout gets 503 with Retry-After, and the
// callee never sees it.
func TestNewCallRefusedAfterSetupQueueTimeout(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{Limits: "{ setup_queue_timeout: 400ms }"})
	basicCall(t, bd)

	stop := spin(40 * runtime.GOMAXPROCS(0))
	defer stop()
	waitBehind(t, bd)
	a := bd.caller(t)
	t0 := time.Now()
	a.Send(a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, "")))
	res := a.Response(wait, sip.INVITE, 503)
	waited := time.Since(t0)
	if waited < 400*time.Millisecond {
		t.Errorf("503 after %v, before setup_queue_timeout (400ms)", waited)
	}
	if h := res.GetHeader("Retry-After"); h == nil || h.Value() == "" {
		t.Errorf("503 without Retry-After")
	}
	t.Logf("503 after %v", waited.Round(time.Millisecond))
	stop()
	bd.calleePeer().Nothing(300*time.Millisecond, "INVITE of a refused call", siptest.IsRequest(sip.INVITE))
	if v := metricValue(t, bd.sbc, "edge_sbc_admission_refused_total", "setup_queue_timeout"); v != 1 {
		t.Errorf("edge_sbc_admission_refused_total{reason=setup_queue_timeout} = %v, want 1", v)
	}
}

// TestCancelWhileWaiting: the caller gives up while its call waits for
// the SBC to catch up: 200 to the CANCEL, 487 to the INVITE, and the
// callee never sees the call, also after the process caught up.
func TestCancelWhileWaiting(t *testing.T) {
	bd := newBed(t, siptest.SBCOptions{})
	basicCall(t, bd)
	stop := spin(40 * runtime.GOMAXPROCS(0))
	defer stop()
	waitBehind(t, bd)
	a := bd.caller(t)
	inv := a.NewInvite("sips:bob@sbc.test", siptest.SDP(siptest.NewRTP(t).Port(), 1, ""))
	a.Send(inv)
	a.Response(wait, sip.INVITE, 100)
	a.Send(siptest.Cancel(inv))
	a.Response(wait, sip.CANCEL, 200)
	a.Response(wait, sip.INVITE, 487)
	stop()
	bd.calleePeer().Nothing(300*time.Millisecond, "INVITE of a cancelled call", siptest.IsRequest(sip.INVITE))
	if q := metricValue(t, bd.sbc, "edge_sbc_setup_queue", ""); q != 0 {
		t.Errorf("edge_sbc_setup_queue = %v after the cancelled call, want 0", q)
	}
}
