package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edge-sbc/edge-sbc/test/internal/proc"
)

// Section 1: the call rate over mutual TLS of edge-sbc next to Kamailio,
// ramped in the same run:
//
//	sipp-tls UAC --mTLS--> edge-sbc --mTLS--> sipp-tls UAS
//	sipp-tls UAC --mTLS--> Kamailio --mTLS--> sipp-tls UAS
//
// Each side of each system is one TLS connection (-t l1). Every step offers
// the same rate to each system in turn (edge-sbc first), so that both see
// the same machine at nearly the same time; a system's ramp ends at its
// first step with a failed call. The system under test is measured from
// /proc: utime+stime and RSS of its process group (edge-sbc: one process;
// Kamailio: its main process and every worker).

// RateStep is one step of the ramp for one system (bench.json).
type RateStep struct {
	System     string  `json:"system"` // "edge-sbc" or "kamailio"
	Offered    int     `json:"offered_cps"`
	Achieved   float64 `json:"achieved_cps"` // successful calls / (sipp wall time - call hold)
	Calls      int     `json:"calls"`
	Successful int     `json:"successful"`
	Failed     int     `json:"failed"`        // calls not successful at the caller
	CalleeFail int     `json:"callee_failed"` // failed calls counted by the callee's sipp
	CPUms      float64 `json:"cpu_ms_per_call"`
	CPUPct     float64 `json:"cpu_percent"` // of one core, over the step's wall time
	// OtherPct is the CPU used on the machine by processes this bench did
	// not start (other users), % of one core: a busy step is not comparable.
	OtherPct  float64 `json:"other_cpu_percent"`
	RSSMiB    float64 `json:"rss_mib"` // at the end of the step (sum over the processes)
	PSSMiB    float64 `json:"pss_mib"` // same, shared pages divided among their users
	Procs     int     `json:"processes"`
	WallS     float64 `json:"wall_s"`
	Sustained bool    `json:"sustained"`
	// Behind is set on a step that is not sustained only because the
	// callers fell behind their schedule: every call completed, none
	// failed. The system held the offered rate back (edge-sbc's setup
	// gate queues new calls while it is behind) instead of failing calls,
	// so the ramp goes on; it ends at the first step with a failed call.
	Behind bool   `json:"behind,omitempty"`
	Why    string `json:"why,omitempty"`
	// Retried is set on a failed attempt that was run again (-retries):
	// the next step of the same system at the same rate replaces it.
	Retried bool `json:"retried,omitempty"`
	// LoadCPU is the CPU of the load tools during the step, % of one core.
	LoadCPU map[string]float64 `json:"load_cpu_percent,omitempty"`
	// edge-sbc only, from its Go runtime metrics over the step: bytes and
	// heap allocations per successful call, and the share of its CPU
	// the garbage collector took.
	AllocKiB float64 `json:"alloc_kib_per_call,omitempty"`
	Allocs   float64 `json:"allocs_per_call,omitempty"`
	GCPct    float64 `json:"gc_cpu_percent,omitempty"`
}

// goRuntime is what rateStep reads from edge-sbc's Go collector.
type goRuntime struct{ bytes, mallocs, gcCPU, totalCPU float64 }

func readGoRuntime(port int) (goRuntime, bool) {
	if port == 0 {
		return goRuntime{}, false
	}
	m, err := scrape(port)
	if err != nil {
		return goRuntime{}, false
	}
	return goRuntime{m["go_memstats_alloc_bytes_total"], m["go_memstats_mallocs_total"],
		m["go_cpu_classes_gc_total_cpu_seconds_total"], m["go_cpu_classes_total_cpu_seconds_total"]}, true
}

// CallRate is section 1 in bench.json.
type CallRate struct {
	Tool       string      `json:"tool"` // "sipp-tls" or "socat" (fallback)
	ToolDetail string      `json:"tool_detail"`
	Baseline   string      `json:"baseline"`
	BaseDetail string      `json:"baseline_detail,omitempty"`
	StepS      float64     `json:"step_s"`
	SBCLimits  string      `json:"sbc_limits,omitempty"` // -sbc-limits
	Steps      []*RateStep `json:"steps"`
	RSSRun     *RSSRun     `json:"rss_run,omitempty"`
}

// RSSRun is edge-sbc's RSS during one longer run at a fixed rate.
type RSSRun struct {
	Rate       int       `json:"offered_cps"`
	DurS       float64   `json:"duration_s"`
	Marks      []RSSMark `json:"marks"`
	Successful int       `json:"successful"`
	Failed     int       `json:"failed"`
	Achieved   float64   `json:"achieved_cps"`
	Why        string    `json:"why,omitempty"`
}

// RSSMark is one RSS reading, at AtS seconds after the caller started.
type RSSMark struct {
	AtS     float64 `json:"at_s"`
	RSSMiB  float64 `json:"rss_mib"`              // /proc
	Metrics float64 `json:"metrics_rss_mib"`      // process_resident_memory_bytes
	Active  float64 `json:"calls_active"`         // edge_sbc_calls_active
	Gorout  float64 `json:"goroutines,omitempty"` // go_goroutines
}

// sut is one system under test with its callee.
type sut struct {
	name    string // "edge-sbc" or "kamailio"
	label   string // for tables: "edge-sbc", "Kamailio 5.6.3"
	proc    *proc.Proc
	target  int // port the caller's sipp dials (the system, or a socat in front)
	metrics int // edge-sbc's /metrics; 0 for Kamailio
	uasStat string
	cfg     string // edge-sbc's configuration, for restartSBC
	steps   []*RateStep
	done    bool   // the ramp ended (a failed step)
	err     string // why it could not be measured at all
}

const callHold = 100 * time.Millisecond // -d: ACK to BYE

// sbcMediaRange is edge-sbc's media port range in section 1 (sipp's own
// UDP ports are below it, see freeUDPRange).
const sbcMediaRange = "20000-64999"

func runCallRate(ctx context.Context, e *env, rep *report) error {
	pki, err := e.devPKI()
	if err != nil {
		return err
	}
	tool := e.chooseLoadTool(ctx)
	cr := &CallRate{Tool: tool.name(), ToolDetail: tool.describe(), StepS: e.o.stepDur.Seconds(), SBCLimits: e.o.sbcLimits}
	rep.callRate = cr

	sbc := &sut{name: "edge-sbc", label: "edge-sbc"}
	if err := e.startSBCSut(tool, sbc); err != nil {
		return fmt.Errorf("edge-sbc: %w", err)
	}
	kam := &sut{name: "kamailio", label: "Kamailio"}
	if !e.o.baseline {
		kam.err = "-baseline=false"
	} else if k, err := e.findKamailio(); err != nil {
		kam.err = err.Error()
	} else {
		kam.label = k.shortVersion()
		cr.BaseDetail = fmt.Sprintf("%s (%s; %s): tm + rr proxy, mutual TLS in, client certificate out, %d TCP workers, -m %d -M %d",
			k.version, k.bin, k.how, e.o.kamWorkers, kamailioShmMB, kamailioPkgMB)
		if err := e.startKamailioSut(tool, k, kam); err != nil {
			kam.err = err.Error()
		}
	}
	cr.Baseline = kam.label
	if kam.err != "" {
		logf("  Kamailio not measured: %s", kam.err)
	}
	systems := []*sut{sbc, kam}

	// Warm-up: opens each system's connection to its callee.
	caller := pki["caller.test"]
	for _, s := range systems {
		if s.err != "" {
			continue
		}
		st, err := e.rateStep(ctx, tool, &caller, s, 20, time.Second, false)
		if err != nil {
			return err
		}
		if !st.Sustained {
			s.err = "warm-up (20 calls at 20 calls/s) failed: " + st.Why
			logf("  %s: %s", s.label, s.err)
		}
	}
	if sbc.err != "" {
		return fmt.Errorf("edge-sbc: %s", sbc.err)
	}

	for _, rate := range e.o.rates {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ran := false
		for _, s := range systems {
			if s.err != "" || s.done {
				continue
			}
			for attempt := 0; ; attempt++ {
				st, err := e.rateStep(ctx, tool, &caller, s, rate, e.o.stepDur, true)
				if err != nil {
					return err
				}
				cr.Steps = append(cr.Steps, st)
				time.Sleep(time.Second) // TIME_WAIT, sipp teardown
				if st.failed() && attempt < e.o.retries && ctx.Err() == nil {
					st.Retried = true
					logf("    %s: %d cps once more (-retries %d)", s.label, rate, e.o.retries)
					time.Sleep(2 * time.Second)
					continue
				}
				s.steps = append(s.steps, st)
				s.done = st.failed()
				break
			}
			ran = true
		}
		if !ran {
			break
		}
	}

	if e.o.rssDur > 0 && ctx.Err() == nil {
		// The RSS run measures the steady state at its rate, on a fresh
		// process: the ramp ended with an overloaded step, whose garbage
		// the runtime returns to the system only slowly.
		if err := e.restartSBC(ctx, tool, &caller, sbc); err != nil {
			logf("  edge-sbc RSS: %v", err)
		} else {
			cr.RSSRun = e.rssRun(ctx, tool, &caller, sbc)
		}
	}
	summarizeCallRate(e, rep, tool, sbc, kam)
	return nil
}

// startSBCSut starts the callee, edge-sbc in front of it, and (fallback)
// the socat proxies.
func (e *env) startSBCSut(tool loadTool, s *sut) error {
	callee, err := e.startCallee(tool, s)
	if err != nil {
		return err
	}
	mtls, err := e.freePort(false)
	if err != nil {
		return err
	}
	if s.metrics, err = e.freePort(false); err != nil {
		return err
	}
	// Every call holds 4 media ports (2 legs, RTP and RTCP) for its length
	// plus the 2 s quarantine: 4,000 calls/s need ~34,000.
	cfg := sbcConfig(e.pki, mtls, callee, s.metrics, sbcMediaRange)
	if e.o.sbcLimits != "" {
		cfg += "limits: { " + e.o.sbcLimits + " }\n"
	}
	if e.o.sbcMedia != "" {
		cfg = strings.Replace(cfg, "\nmedia:\n", "\nmedia:\n  "+e.o.sbcMedia+"\n", 1)
	}
	s.cfg = cfg
	if s.proc, err = e.startSBC(cfg, s.metrics); err != nil {
		return err
	}
	s.target, err = e.callerTarget(tool, mtls)
	return err
}

func (e *env) startKamailioSut(tool loadTool, k *kamailioInstall, s *sut) error {
	callee, err := e.startCallee(tool, s)
	if err != nil {
		return err
	}
	port, err := e.freePort(false)
	if err != nil {
		return err
	}
	if s.proc, err = e.startKamailio(k, port, callee); err != nil {
		return err
	}
	s.target, err = e.callerTarget(tool, port)
	return err
}

// startCallee starts the callee's sipp and returns its TLS port: sipp-tls
// itself (callee certificate, client certificate required), or a socat
// TLS server in front of a TCP sipp.
func (e *env) startCallee(tool loadTool, s *sut) (int, error) {
	callee := e.pki["callee.test"]
	if tool.native {
		_, r, err := e.startUAS(tool, scenario(e, "uas_basic.xml"), "sipp-uas-"+s.name, &callee)
		if err != nil {
			return 0, err
		}
		s.uasStat = r.stat
		return r.port, nil
	}
	// Behind socat the callee's Contact must name socat's TLS port, not
	// sipp's TCP port: a proxy sends the ACK and BYE there.
	tlsPort, err := e.freePort(false)
	if err != nil {
		return 0, err
	}
	scen, err := e.contactVariant("uas_basic.xml", tlsPort)
	if err != nil {
		return 0, err
	}
	_, r, err := e.startUAS(tool, scen, "sipp-uas-"+s.name, nil)
	if err != nil {
		return 0, err
	}
	s.uasStat = r.stat
	return tlsPort, e.tlsServerProxyOn(callee, tlsPort, r.port)
}

// contactVariant writes a copy of scenario name whose Contact headers name
// port instead of sipp's own [local_port].
func (e *env) contactVariant(name string, port int) (string, error) {
	b, err := os.ReadFile(scenario(e, name))
	if err != nil {
		return "", err
	}
	const from = "@[local_ip]:[local_port];transport=tls>"
	if !strings.Contains(string(b), from) {
		return "", fmt.Errorf("%s: no Contact with %s", name, from)
	}
	out := strings.ReplaceAll(string(b), from, fmt.Sprintf("@[local_ip]:%d;transport=tls>", port))
	p := filepath.Join(e.dir, fmt.Sprintf("%s-contact-%d.xml", strings.TrimSuffix(name, ".xml"), port))
	return p, os.WriteFile(p, []byte(out), 0o644)
}

// callerTarget is the port the caller's sipp dials to reach the TLS
// listener on port: that port, or a socat TLS client (caller certificate)
// in front of it.
func (e *env) callerTarget(tool loadTool, port int) (int, error) {
	if tool.native {
		return port, nil
	}
	return e.tlsClientProxy(fmt.Sprintf("%s:%d", loopback, port), e.pki["caller.test"], "sbc.test")
}

// uacRun is the caller's sipp for rate calls/s during dur.
func (e *env) uacRun(tool loadTool, caller *tlsFiles, s *sut, rate int, dur time.Duration) *sippRun {
	r := &sippRun{tool: tool, scenario: scenario(e, "uac_basic.xml"), remote: fmt.Sprintf("%s:%d", loopback, s.target), transport: "t1",
		rate: rate, calls: int(float64(rate) * dur.Seconds()), pause: callHold, limit: max(rate*4, 200), timeout: dur + callHold + 15*time.Second}
	if tool.native {
		r.tls = caller
	}
	return r
}

// rateStep offers rate calls/s to s during dur and measures it.
func (e *env) rateStep(ctx context.Context, tool loadTool, caller *tlsFiles, s *sut, rate int, dur time.Duration, log bool) (*RateStep, error) {
	r := e.uacRun(tool, caller, s, rate, dur)
	if log {
		e.waitQuiet(ctx)
	}
	uas0, _ := proc.ReadSippStats(s.uasStat) // periodic dump; none yet is 0
	g0 := readGroupStat(s.proc.Pid())
	logOff := fileSize(s.proc.Log())
	busy0, self0 := machineBusy(), selfCPU()
	rt0, rtOK := readGoRuntime(s.metrics)
	stopProfile := e.profileStep(ctx, s, rate, dur)
	res, _, err := e.runUAC(ctx, r, "sipp-uac")
	stopProfile()
	if err != nil {
		return nil, err
	}
	// Let the callee write its statistics row (every second).
	time.Sleep(1100 * time.Millisecond)
	uas1, _ := proc.ReadSippStats(s.uasStat)
	g1 := readGroupStat(s.proc.Pid())
	if s.proc.Exited() {
		res.why = fmt.Sprintf("%s exited: %v: %s", s.label, s.proc.Err(), lastLines(s.proc.LogTail(2000), 3))
	}
	st := &RateStep{System: s.name, Offered: rate, Calls: r.calls, Successful: res.succ, Failed: r.calls - res.succ,
		CalleeFail: uas1.Failed - uas0.Failed, RSSMiB: g1.rss / (1 << 20), PSSMiB: g1.pss / (1 << 20), Procs: g1.procs,
		WallS: res.elapsed.Seconds(), LoadCPU: map[string]float64{}}
	st.Sustained, st.Why = judge(res, r.calls, st.CalleeFail, dur, callHold)
	st.Behind = !st.Sustained && callFailure(res, r.calls, st.CalleeFail) == ""
	if !st.Sustained {
		if res.errs != "" {
			st.Why += "; caller: " + res.errs
		}
		if d := logDigest(s.proc.Log(), logOff); d != "" {
			st.Why += "; " + s.name + " log: " + d
		}
	}
	if busy := res.elapsed - callHold; busy > 0 {
		st.Achieved = float64(res.succ) / busy.Seconds()
	}
	cpu := g1.cpu - g0.cpu
	if res.succ > 0 {
		st.CPUms = 1000 * cpu / float64(res.succ)
	}
	st.CPUPct = 100 * cpu / res.elapsed.Seconds()
	if rt1, ok := readGoRuntime(s.metrics); ok && rtOK && res.succ > 0 {
		st.AllocKiB = (rt1.bytes - rt0.bytes) / 1024 / float64(res.succ)
		st.Allocs = (rt1.mallocs - rt0.mallocs) / float64(res.succ)
		if d := rt1.totalCPU - rt0.totalCPU; d > 0 {
			st.GCPct = 100 * (rt1.gcCPU - rt0.gcCPU) / d
		}
	}
	ours := selfCPU() - self0
	for n, v := range res.cpu {
		ours += v
		if strings.HasPrefix(n, "sipp") || strings.HasPrefix(n, "socat") {
			st.LoadCPU[n] = 100 * v / res.elapsed.Seconds()
		}
	}
	// busy0..now also covers the 1.1 s after sipp; close enough for a
	// warning sign.
	st.OtherPct = max(0, 100*(machineBusy()-busy0-ours)/res.elapsed.Seconds())
	if log {
		status := "ok"
		if !st.Sustained {
			status = "FAIL: " + st.Why
		}
		heap := ""
		if st.Allocs > 0 {
			heap = fmt.Sprintf("; %.1f KiB and %.0f allocations per call, GC %.0f%% of its CPU", st.AllocKiB, st.Allocs, st.GCPct)
		}
		logf("    %-14s %5d cps x %2.0fs: %s; %.0f cps achieved, %d failed; %.3f ms CPU/call (%.0f%% of a core); RSS %.1f MiB (%d procs, PSS %.1f)%s; load: %s; other users: %.0f%%",
			s.label, rate, dur.Seconds(), status, st.Achieved, st.Failed, st.CPUms, st.CPUPct, st.RSSMiB, st.Procs, st.PSSMiB, heap, fmtPct(st.LoadCPU), st.OtherPct)
	}
	return st, nil
}

// failed reports whether a call of the step failed: neither sustained
// nor only behind its schedule.
func (st *RateStep) failed() bool { return !st.Sustained && !st.Behind }

// callFailure says why a step had a failed call, or "" when every call
// succeeded at both ends and sipp exited 0 (whatever the time it took).
func callFailure(res uacResult, n, calleeFail int) string {
	switch {
	case res.why != "":
		return res.why
	case res.fail > 0 || res.succ != n:
		return fmt.Sprintf("%d/%d successful, %d failed", res.succ, n, res.fail)
	case calleeFail > 0:
		return fmt.Sprintf("%d failed calls at the callee", calleeFail)
	case res.exit != 0:
		return fmt.Sprintf("sipp exit %d", res.exit)
	}
	return ""
}

// judge says whether a step was sustained: no failed call (callFailure)
// and sipp kept the rate (finished within the schedule plus slack).
func judge(res uacResult, n, calleeFail int, dur, pause time.Duration) (bool, string) {
	if why := callFailure(res, n, calleeFail); why != "" {
		return false, why
	}
	if slack := dur/5 + 2*time.Second; res.elapsed > dur+pause+slack {
		return false, fmt.Sprintf("sipp fell behind: %.1fs for a %.0fs schedule", res.elapsed.Seconds(), dur.Seconds())
	}
	return true, ""
}

// restartSBC stops edge-sbc (SIGTERM), starts it again with the same
// configuration and ports, and warms it up (its connection to the callee).
func (e *env) restartSBC(ctx context.Context, tool loadTool, caller *tlsFiles, s *sut) error {
	s.proc.Stop(syscall.SIGTERM, 15*time.Second)
	var err error
	if s.proc, err = e.startSBC(s.cfg, s.metrics); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	st, err := e.rateStep(ctx, tool, caller, s, 20, time.Second, false)
	if err != nil {
		return err
	}
	if !st.Sustained {
		return fmt.Errorf("warm-up after the restart failed: %s", st.Why)
	}
	logf("  edge-sbc restarted for the RSS run (a fresh process: steady state, not the ramp's last overload)")
	return nil
}

// rssRun offers e.o.rssRate to edge-sbc for e.o.rssDur and reads its RSS
// half way and at the end of the schedule.
func (e *env) rssRun(ctx context.Context, tool loadTool, caller *tlsFiles, s *sut) *RSSRun {
	rr := &RSSRun{Rate: e.o.rssRate, DurS: e.o.rssDur.Seconds()}
	logf("  edge-sbc RSS: %d cps for %.0fs, read at %.0fs and %.0fs", rr.Rate, rr.DurS, rr.DurS/2, rr.DurS)
	r := e.uacRun(tool, caller, s, e.o.rssRate, e.o.rssDur)
	e.waitQuiet(ctx)
	logOff := fileSize(s.proc.Log())
	done := make(chan uacResult, 1)
	t0 := time.Now()
	go func() {
		res, _, err := e.runUAC(ctx, r, "sipp-uac")
		if err != nil {
			res.why = err.Error()
		}
		done <- res
	}()
	for _, at := range []time.Duration{e.o.rssDur / 2, e.o.rssDur} {
		select {
		case <-time.After(time.Until(t0.Add(at))):
		case <-ctx.Done():
		}
		g := readGroupStat(s.proc.Pid())
		m := RSSMark{AtS: at.Seconds(), RSSMiB: g.rss / (1 << 20)}
		if v, err := scrape(s.metrics); err == nil {
			m.Metrics, m.Active, m.Gorout = v["process_resident_memory_bytes"]/(1<<20), v["edge_sbc_calls_active"], v["go_goroutines"]
		}
		rr.Marks = append(rr.Marks, m)
		logf("    at %3.0fs: edge-sbc RSS %.1f MiB (metrics %.1f), %.0f calls active, %.0f goroutines", at.Seconds(), m.RSSMiB, m.Metrics, m.Active, m.Gorout)
	}
	res := <-done
	rr.Successful, rr.Failed = res.succ, r.calls-res.succ
	if busy := res.elapsed - callHold; busy > 0 {
		rr.Achieved = float64(res.succ) / busy.Seconds()
	}
	if ok, why := judge(res, r.calls, 0, e.o.rssDur, callHold); !ok {
		rr.Why = why
		if res.errs != "" {
			rr.Why += "; caller: " + res.errs
		}
		if d := logDigest(s.proc.Log(), logOff); d != "" {
			rr.Why += "; edge-sbc log: " + d
		}
	}
	logf("    %d/%d successful, %.0f cps achieved%s", rr.Successful, r.calls, rr.Achieved, ifs(rr.Why != "", " ("+rr.Why+")", ""))
	return rr
}

// lastSustained is the highest sustained step before the first failure.
func (s *sut) lastSustained() *RateStep {
	var best *RateStep
	for _, st := range s.steps {
		if !st.Sustained {
			break
		}
		best = st
	}
	return best
}

// firstFailed is the first step with a failed call (a step that only
// fell behind is not one).
func (s *sut) firstFailed() *RateStep {
	for _, st := range s.steps {
		if st.failed() {
			return st
		}
	}
	return nil
}

// lastNoFailure is the highest step before the first failure: sustained,
// or every call completed while the callers fell behind.
func (s *sut) lastNoFailure() *RateStep {
	var best *RateStep
	for _, st := range s.steps {
		if st.failed() {
			break
		}
		best = st
	}
	return best
}

func (s *sut) at(rate int) *RateStep {
	for _, st := range s.steps {
		if st.Offered == rate {
			return st
		}
	}
	return nil
}

func summarizeCallRate(e *env, rep *report, tool loadTool, sbc, kam *sut) {
	top := e.o.rates[len(e.o.rates)-1]
	note := func(s *sut) string {
		switch f := s.firstFailed(); {
		case s.err != "":
			return s.label + " not measured: " + s.err
		case f != nil:
			return fmt.Sprintf("%s failed at %d cps: %s", s.label, f.Offered, f.Why)
		case len(s.steps) > 0:
			return fmt.Sprintf("%s reached the top of the ramp (%d cps)", s.label, top)
		}
		return s.label + ": no step"
	}
	rateOf := func(s *sut) float64 {
		if b := s.lastSustained(); b != nil {
			return float64(b.Offered)
		}
		return 0
	}
	base := kam.label + " (tm+rr)"
	rep.add(Result{Section: 1, Name: "calls/s sustained, 0 failures", Value: rateOf(sbc), Unit: "calls/s",
		Baseline: rateOf(kam), BaseName: base,
		Note: fmt.Sprintf("%s, %gs steps; %s; %s", tool.name(), e.o.stepDur.Seconds(), note(sbc), note(kam))})
	// The highest offered rate without a failed call, and what was
	// achieved there: beyond what a system sustains on schedule, it may
	// still hold calls back rather than fail them.
	offered := func(s *sut) (float64, string) {
		b := s.lastNoFailure()
		if b == nil {
			return 0, ""
		}
		return float64(b.Offered), fmt.Sprintf("%s %.0f achieved%s", s.label, b.Achieved, ifs(b.Behind, " (callers fell behind)", ""))
	}
	sv, sn := offered(sbc)
	kv, kn := offered(kam)
	rep.add(Result{Section: 1, Name: "calls/s offered with 0 failed calls", Value: sv, Unit: "calls/s",
		Baseline: kv, BaseName: base, Note: strings.Join(slices.DeleteFunc([]string{sn, kn}, func(x string) bool { return x == "" }), "; ")})
	// CPU and RSS at the highest rate both sustained.
	if b := sbc.lastSustained(); b != nil {
		r := b.Offered
		if kb := kam.lastSustained(); kb != nil && kb.Offered < r {
			r = kb.Offered
		}
		s, k := sbc.at(r), kam.at(r)
		var kcpu, krss float64
		knote := ""
		if k != nil && k.Sustained {
			kcpu, krss = k.CPUms, k.RSSMiB
			knote = fmt.Sprintf("; Kamailio: %d processes, PSS %.1f MiB (RSS counts its shared memory in every process)", k.Procs, k.PSSMiB)
		}
		rep.add(Result{Section: 1, Name: fmt.Sprintf("CPU per call at %d calls/s", r), Value: s.CPUms, Unit: "ms/call",
			Baseline: kcpu, BaseName: base, Note: "utime+stime of the process group / successful calls (INVITE/180/200/ACK/BYE, both legs)"})
		rep.add(Result{Section: 1, Name: fmt.Sprintf("RSS after the %d calls/s step", r), Value: s.RSSMiB, Unit: "MiB",
			Baseline: krss, BaseName: base, Note: fmt.Sprintf("edge-sbc PSS %.1f MiB%s", s.PSSMiB, knote)})
	}
	if rr := rep.callRate.RSSRun; rr != nil {
		for _, m := range rr.Marks {
			rep.add(Result{Section: 1, Name: fmt.Sprintf("edge-sbc RSS at %.0f s of %d calls/s", m.AtS, rr.Rate), Value: m.RSSMiB, Unit: "MiB",
				Note: fmt.Sprintf("metrics %.1f MiB, %.0f calls active; run: %d/%d successful, %.0f cps achieved",
					m.Metrics, m.Active, rr.Successful, rr.Successful+rr.Failed, rr.Achieved)})
		}
	}
	rep.note("section 1 load tool: %s", tool.describe())
	if e.o.sbcLimits != "" {
		rep.note("section 1 edge-sbc limits: { %s } (-sbc-limits), the rest defaults", e.o.sbcLimits)
	} else {
		rep.note("section 1 edge-sbc runs its default limits: limits.max_pending_per_connection caps the requests awaiting a final response on the caller's one connection (beyond it: 503); -sbc-limits changes them")
	}
	if rep.callRate.BaseDetail != "" {
		rep.note("section 1 baseline: %s; config test/bench/kamailio/{kamailio,tls}.cfg. It relays signalling only; edge-sbc is a B2BUA that also anchors the media of every call", rep.callRate.BaseDetail)
	}
	if e.kamNote != "" {
		rep.note("%s", e.kamNote)
	}
	rep.note("section 1: callers, callees and both systems share the same %d cores; the load tools' CPU per step is in bench.json (load_cpu_percent) and in the log", runtime.NumCPU())
}

func fmtPct(m map[string]float64) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names {
		if m[n] >= 0.5 {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", n, m[n]))
		}
	}
	return strings.Join(parts, ", ")
}

// groupStat is the CPU and memory of one process group.
type groupStat struct {
	cpu      float64 // utime+stime, seconds (children's waited-for time not included)
	rss, pss float64 // bytes, summed over the processes
	procs    int
}

// readGroupStat sums /proc/<pid>/stat utime+stime and RSS, and
// smaps_rollup Pss, over the processes of process group pgid.
func readGroupStat(pgid int) groupStat {
	var g groupStat
	page := float64(os.Getpagesize())
	eachProcStat(func(pid string, f []string) {
		// after ')': state(0) ppid pgrp(2) ... utime(11) stime(12) ... rss(21)
		if len(f) < 22 {
			return
		}
		if pg, _ := strconv.Atoi(f[2]); pg != pgid {
			return
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		rss, _ := strconv.ParseFloat(f[21], 64)
		g.cpu += (ut + st) / 100 // USER_HZ
		g.rss += rss * page
		g.pss += smapsPss(pid)
		g.procs++
	})
	return g
}

// eachProcStat calls fn for every process of the system with its pid and
// the fields of /proc/<pid>/stat after the command name's closing
// parenthesis (state is f[0]); processes that vanish meanwhile are skipped.
func eachProcStat(fn func(pid string, f []string)) {
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fn(d.Name(), strings.Fields(s[i+1:]))
	}
}

func smapsPss(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "Pss:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb * 1024
		}
	}
	return 0
}

// machineBusy is the CPU time (seconds) the whole machine spent busy since
// boot: the first line of /proc/stat without idle and iowait.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var t float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest is in user already
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		t += x
	}
	return t / 100 // USER_HZ
}

// selfCPU is the CPU time of this process (the bench itself), seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logDigest names the most frequent line written to log after off (for
// edge-sbc's JSON lines, its message and error), with its count.
func logDigest(path string, off int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, off, 64<<20))
	if err != nil || len(b) == 0 {
		return ""
	}
	count := map[string]int{}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		var j struct{ Message, Error string }
		if json.Unmarshal([]byte(l), &j) == nil && j.Message != "" {
			l = j.Message + ifs(j.Error != "", ": "+j.Error, "")
		} else if i := strings.Index(l, "]: "); i >= 0 { // kamailio: "0(pid) ERROR: tm [file:line]: text"
			l = strings.TrimSpace(l[i+3:])
		}
		count[l]++
	}
	best, n := "", 0
	for l, c := range count {
		if c > n || (c == n && l < best) {
			best, n = l, c
		}
	}
	if len(best) > 160 {
		best = best[:160] + "..."
	}
	return fmt.Sprintf("%d× %q (%d kinds of line)", n, best, len(count))
}

// otherCPU is the CPU the machine spends outside this bench's processes,
// % of one core, over one second.
func (e *env) otherCPU() float64 {
	g0, b0, s0, t0 := groupCPU(), machineBusy(), selfCPU(), time.Now()
	time.Sleep(time.Second)
	ours := selfCPU() - s0
	for _, v := range cpuDelta(g0, groupCPU(), e) {
		ours += v
	}
	return max(0, 100*(machineBusy()-b0-ours)/time.Since(t0).Seconds())
}

// waitQuiet waits, up to -quiet-wait, until other users of the machine
// use less than -quiet-max % of a core, so that a step does not measure
// someone else's build; a step that starts busy says so (other_cpu_percent).
func (e *env) waitQuiet(ctx context.Context) {
	if e.o.quietWait <= 0 {
		return
	}
	deadline := time.Now().Add(e.o.quietWait)
	for first := true; ctx.Err() == nil; first = false {
		o := e.otherCPU()
		if o <= e.o.quietMax {
			if !first {
				logf("    (other users now at %.0f%% of a core)", o)
			}
			return
		}
		if time.Now().After(deadline) {
			logf("    other users still at %.0f%% of a core after %v: measuring anyway", o, e.o.quietWait)
			return
		}
		if first {
			logf("    other users at %.0f%% of a core: waiting up to %v for a quieter machine", o, e.o.quietWait)
		}
	}
}
