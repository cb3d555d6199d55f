package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/edge-sbc/edge-sbc/test/internal/proc"
)

// callBed is sipp UAS <- socat (TLS server) <- [edge-sbc] <- socat (TLS
// client) <- sipp UAC: the bed of section 2 (concurrent calls). Section 1
// has its own (rate.go).
type callBed struct {
	uasPort    int // sipp UAS TCP
	calleeTLS  int // socat in front of the UAS
	sbcMTLS    int // edge-sbc mutual TLS listener
	metrics    int // edge-sbc /metrics
	viaSBC     int // socat client -> edge-sbc
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
	if b.uasProc, r, err = e.startUAS(loadTool{}, scenario(e, uasScen), "sipp-uas", nil); err != nil {
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
	res, _, err := e.runUAC(ctx, r, "sipp-uac")
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
	res.sustained, res.why = judge(res, n, uas1.Failed-uas0.Failed, dur, pause)
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
