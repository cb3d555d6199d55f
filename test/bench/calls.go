package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	"github.com/edge-sbc/edge-sbc/test/internal/proc"
)

// callBed is sipp UAS <- socat (TLS server) <- [edge-sbc] <- socat (TLS
// client) <- sipp UAC, plus a direct client proxy to the UAS's socat.
type callBed struct {
	uasPort    int // sipp UAS TCP
	calleeTLS  int // socat in front of the UAS
	sbcMTLS    int // edge-sbc mutual TLS listener
	metrics    int // edge-sbc /metrics
	viaSBC     int // socat client -> edge-sbc
	direct     int // socat client -> calleeTLS
	sbc        *proc.Proc
	uasScen    string
	uacScen    string
	uasProc    *proc.Proc
	uasStatCSV string
}

func (e *env) newCallBed(portRange, uacScen, uasScen string) (*callBed, error) {
	pki, err := e.devPKI()
	if err != nil {
		return nil, err
	}
	b := &callBed{uasScen: uasScen, uacScen: uacScen}
	// The UAS runs in t1 mode: as a server it accepts any number of
	// connections either way, and the SBC uses one connection per trunk.
	var r *sippRun
	if b.uasProc, r, err = e.startUAS(scenario(e, uasScen), "t1"); err != nil {
		return nil, err
	}
	b.uasPort, b.uasStatCSV = r.port, r.stat
	if b.calleeTLS, err = e.tlsServerProxy(pki["callee.test"], b.uasPort); err != nil {
		return nil, err
	}
	if b.sbcMTLS, err = e.freePort(false); err != nil {
		return nil, err
	}
	if b.metrics, err = e.freePort(false); err != nil {
		return nil, err
	}
	if b.sbc, err = e.startSBC(sbcConfig(pki, b.sbcMTLS, b.calleeTLS, b.metrics, portRange), b.metrics); err != nil {
		return nil, err
	}
	if b.viaSBC, err = e.tlsClientProxy(fmt.Sprintf("%s:%d", loopback, b.sbcMTLS), pki["caller.test"], "sbc.test"); err != nil {
		return nil, err
	}
	if b.direct, err = e.tlsClientProxy(fmt.Sprintf("%s:%d", loopback, b.calleeTLS), pki["caller.test"], "callee.test"); err != nil {
		return nil, err
	}
	return b, nil
}

func scenario(e *env, name string) string { return filepath.Join(e.root, "test", "sipp", name) }

// step runs one call-rate step: rate calls/s for dur through port.
func (e *env) step(ctx context.Context, b *callBed, port int, transport string, rate int, dur, pause time.Duration, viaSBC bool) (uacResult, error) {
	n := rate * int(dur/time.Second)
	var m0 map[string]float64
	if viaSBC {
		m0, _ = scrape(b.metrics)
	}
	uas0, _ := proc.ReadSippStats(b.uasStatCSV) // periodic dump; none yet is 0
	r := &sippRun{scenario: scenario(e, b.uacScen), remote: fmt.Sprintf("%s:%d", loopback, port), transport: transport,
		rate: rate, calls: n, pause: pause, limit: max(rate*4, 200), timeout: dur + pause + 15*time.Second}
	res, _, err := e.runUAC(ctx, r)
	if err != nil {
		return res, err
	}
	// Let the UAS write its statistics row (every second).
	time.Sleep(1100 * time.Millisecond)
	uas1, _ := proc.ReadSippStats(b.uasStatCSV)
	if viaSBC {
		if m1, err := scrape(b.metrics); err == nil && m0 != nil {
			res.sbcRSS = m1["process_resident_memory_bytes"]
			res.sbcCPU = m1["process_cpu_seconds_total"] - m0["process_cpu_seconds_total"]
			res.sbcGoroutinesAfter = m1["go_goroutines"]
		}
	}
	// Sustained: every call successful, none failed on either side, and
	// sipp kept the rate (it finished within the schedule plus slack).
	slack := dur/5 + 2*time.Second
	switch {
	case res.why != "":
	case res.fail > 0 || res.succ != n:
		res.why = fmt.Sprintf("%d/%d successful, %d failed", res.succ, n, res.fail)
	case uas1.Failed > uas0.Failed:
		res.why = fmt.Sprintf("%d failed calls at the UAS", uas1.Failed-uas0.Failed)
	case res.exit != 0:
		res.why = fmt.Sprintf("sipp exit %d", res.exit)
	case res.elapsed > dur+pause+slack:
		res.why = fmt.Sprintf("sipp fell behind: %.1fs for a %.0fs schedule", res.elapsed.Seconds(), dur.Seconds())
	default:
		res.sustained = true
	}
	st := "ok"
	if !res.sustained {
		st = "FAIL: " + res.why
	}
	rss := ""
	if viaSBC && res.sbcRSS > 0 {
		rss = fmt.Sprintf("; edge-sbc RSS %.1f MiB", res.sbcRSS/(1<<20))
	}
	logf("    %-8s %-3s %5d cps x %2.0fs: %s (%.1fs; CPU: %s%s)", ifs(viaSBC, "edge-sbc", "direct"), transport, rate, dur.Seconds(),
		st, res.elapsed.Seconds(), fmtCPU(res.cpu, res.elapsed), rss)
	return res, nil
}

// ramp runs the rates in order until a step fails; it returns the last
// sustained step (rate 0 if none) and the first failed one.
func (e *env) ramp(ctx context.Context, b *callBed, port int, transport string, viaSBC bool) (best, failed *uacResult, err error) {
	for _, rate := range e.o.rates {
		if ctx.Err() != nil {
			return best, failed, ctx.Err()
		}
		r, err := e.step(ctx, b, port, transport, rate, e.o.stepDur, 100*time.Millisecond, viaSBC)
		if err != nil {
			return best, failed, err
		}
		if !r.sustained {
			return best, &r, nil
		}
		best = &r
		time.Sleep(time.Second) // TIME_WAIT, sipp teardown
	}
	return best, nil, nil
}

func runCallRate(ctx context.Context, e *env, rep *report) error {
	b, err := e.newCallBed("20000-39999", "uac_basic.xml", "uas_basic.xml")
	if err != nil {
		return err
	}
	// Warm-up: opens the SBC's connection to the callee.
	if _, err := e.step(ctx, b, b.viaSBC, "t1", 10, time.Second, 100*time.Millisecond, true); err != nil {
		return err
	}
	modes := []string{"t1", "tn"}
	if e.o.transport != "" {
		modes = []string{e.o.transport}
	}
	directBest := map[string]*uacResult{}
	directFail := map[string]*uacResult{}
	chosen := modes[0]
	for _, m := range modes {
		logf("  ramp sipp direct (no SBC), -t %s", m)
		best, failed, err := e.ramp(ctx, b, b.direct, m, false)
		if err != nil {
			return err
		}
		directBest[m], directFail[m] = best, failed
		if rateOf(best) > rateOf(directBest[chosen]) {
			chosen = m
		}
	}
	if len(modes) == 2 {
		rep.note("sipp transport: -t t1 (one TCP connection, one socat child, one TLS session) sustained %d calls/s direct, -t tn (a TCP connection, a forked socat and a TLS handshake per call) %d calls/s: -t %s is used",
			rateOf(directBest["t1"]), rateOf(directBest["tn"]), chosen)
	}
	logf("  ramp through edge-sbc, -t %s", chosen)
	best, failed, err := e.ramp(ctx, b, b.viaSBC, chosen, true)
	if err != nil {
		return err
	}
	top := e.o.rates[len(e.o.rates)-1]
	note := func(best, failed *uacResult) string {
		switch {
		case failed == nil && best != nil:
			return fmt.Sprintf("top of the ramp (%d) reached", top)
		case failed != nil:
			return fmt.Sprintf("%d cps failed: %s", failed.rate, failed.why)
		}
		return ""
	}
	db := directBest[chosen]
	rep.add(Result{Section: 1, Name: "calls/s sustained, 0 failures (-t " + chosen + ")", Value: float64(rateOf(best)), Unit: "calls/s",
		Baseline: float64(rateOf(db)), BaseName: "sipp direct",
		Note: fmt.Sprintf("%gs steps; %s; direct: %s", e.o.stepDur.Seconds(), note(best, failed), note(db, directFail[chosen]))})
	for _, m := range modes {
		if m != chosen {
			rep.add(Result{Section: 1, Name: "calls/s sipp direct (-t " + m + ")", Value: float64(rateOf(directBest[m])), Unit: "calls/s",
				Note: note(directBest[m], directFail[m])})
		}
	}
	if best != nil && best.succ > 0 {
		rep.add(Result{Section: 1, Name: fmt.Sprintf("edge-sbc CPU per call at %d cps", best.rate), Value: 1000 * best.sbcCPU / float64(best.succ), Unit: "ms/call",
			Note: "process_cpu_seconds_total delta / calls (INVITE+ACK+BYE, both legs, TLS)"})
		rep.add(Result{Section: 1, Name: fmt.Sprintf("edge-sbc RSS after %d cps", best.rate), Value: best.sbcRSS / (1 << 20), Unit: "MiB"})
		rep.note("CPU during the %d cps step through edge-sbc (2 cores = 200%%): %s", best.rate, fmtCPU(best.cpu, best.elapsed))
	}
	if failed != nil {
		rep.note("CPU during the failed %d cps step through edge-sbc: %s", failed.rate, fmtCPU(failed.cpu, failed.elapsed))
		if dir := filepath.Dir(b.uasStatCSV); e.o.keep {
			rep.note("sipp statistics and logs: %s", dir)
		}
	}
	rep.note("section 1 is bounded by the load tools: Debian's sipp 3.6.1 has no TLS, so socat (OpenSSL) wraps every sipp connection; sipp, socat and edge-sbc share the same %d cores", runtime.NumCPU())
	return nil
}

func rateOf(r *uacResult) int {
	if r == nil {
		return 0
	}
	return r.rate
}
