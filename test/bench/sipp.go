package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edge-sbc/edge-sbc/test/internal/proc"
)

// freeUDPRange returns p such that UDP p..p+n-1 are free on loopback.
func (e *env) freeUDPRange(n int) (int, error) {
	for range 100 {
		p, err := e.freePort(true)
		if err != nil {
			return 0, err
		}
		if p%2 == 1 || p+n > 65535 {
			continue
		}
		ok := true
		for i := 1; i < n && ok; i++ {
			c, err := net.ListenPacket("udp4", net.JoinHostPort(loopback, strconv.Itoa(p+i)))
			if err != nil {
				ok = false
				break
			}
			_ = c.Close()
			e.mu.Lock()
			ok = !e.used[p+i]
			e.used[p+i] = true
			e.mu.Unlock()
		}
		if ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free UDP port range")
}

// sippRun describes one sipp process.
type sippRun struct {
	scenario  string // path
	remote    string // UAC: host:port; "" for a UAS
	transport string // t1 or tn
	rate      int
	calls     int // -m; 0 = unlimited (UAS)
	limit     int // -l; 0 = sipp default
	pause     time.Duration
	timeout   time.Duration // -timeout (whole run)
	port      int           // local port (UAS listens there)
	stat      string        // -stf file
}

func (e *env) sippArgs(r *sippRun) ([]string, error) {
	var err error
	if r.port == 0 {
		if r.port, err = e.freePort(false); err != nil {
			return nil, err
		}
	}
	cp, err := e.freeUDPRange(1)
	if err != nil {
		return nil, err
	}
	mp, err := e.freeUDPRange(4)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.seq++
	r.stat = filepath.Join(e.dir, fmt.Sprintf("%02d-sipp-stat.csv", e.seq))
	e.mu.Unlock()
	var a []string
	if r.remote != "" {
		a = append(a, r.remote)
	}
	a = append(a, "-sf", r.scenario, "-t", r.transport,
		"-i", loopback, "-p", strconv.Itoa(r.port), "-bind_local",
		"-ci", loopback, "-cp", strconv.Itoa(cp),
		"-mi", loopback, "-mp", strconv.Itoa(mp),
		"-s", "alice", "-key", "ruri_scheme", "sips", "-key", "ruri_host", "sbc.test",
		"-r", strconv.Itoa(max(r.rate, 1)),
		"-d", strconv.FormatInt(r.pause.Milliseconds(), 10),
		"-nostdin", "-max_socket", "8000",
		"-trace_stat", "-stf", r.stat, "-fd", "1")
	if r.calls > 0 {
		a = append(a, "-m", strconv.Itoa(r.calls))
	}
	if r.limit > 0 {
		a = append(a, "-l", strconv.Itoa(r.limit))
	}
	if r.timeout > 0 {
		a = append(a, "-timeout", strconv.FormatInt(r.timeout.Milliseconds(), 10)+"ms", "-timeout_error")
	}
	return a, nil
}

// startUAS starts a sipp UAS and waits until it listens.
func (e *env) startUAS(scenario, transport string) (*proc.Proc, *sippRun, error) {
	r := &sippRun{scenario: scenario, transport: transport, pause: 100 * time.Millisecond}
	args, err := e.sippArgs(r)
	if err != nil {
		return nil, nil, err
	}
	p, err := e.start("sipp-uas", "sipp", args...)
	if err != nil {
		return nil, nil, err
	}
	return p, r, proc.WaitListening(r.port, 10*time.Second, p)
}

// uacResult is the outcome of one UAC run.
type uacResult struct {
	rate, calls        int
	succ, fail, exit   int
	elapsed            time.Duration
	sustained          bool
	why                string
	cpu                map[string]float64 // CPU seconds per process name during the run
	sbcRSS, sbcCPU     float64            // SBC RSS at the end (bytes), CPU seconds used
	sbcGoroutinesAfter float64
}

// runUAC runs a sipp UAC to completion (bounded by ctx and a timeout).
func (e *env) runUAC(ctx context.Context, r *sippRun) (uacResult, *proc.Proc, error) {
	res := uacResult{rate: r.rate, calls: r.calls}
	args, err := e.sippArgs(r)
	if err != nil {
		return res, nil, err
	}
	cpu0 := groupCPU()
	t0 := time.Now()
	p, err := e.start("sipp-uac", "sipp", args...)
	if err != nil {
		return res, nil, err
	}
	bound := time.Duration(r.calls/max(r.rate, 1))*time.Second + r.pause + 20*time.Second
	cctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	_ = wait(cctx, p)
	res.elapsed = time.Since(t0)
	res.cpu = cpuDelta(cpu0, groupCPU(), e)
	if p.Exited() {
		res.cpu["sipp-uac"] = p.CPU().Seconds()
	}
	res.exit = p.ExitCode()
	e.forget(p)
	if st, err := proc.ReadSippStats(r.stat); err == nil {
		res.succ, res.fail = st.Successful, st.Failed
	} else {
		res.why = "no statistics from sipp: " + err.Error()
	}
	return res, p, nil
}

// forget drops a finished process from the list cleanupProcs stops.
func (e *env) forget(p *proc.Proc) {
	p.Stop(syscall.SIGKILL, time.Second)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.procs = slices.DeleteFunc(e.procs, func(q *proc.Proc) bool { return q == p })
}

// groupCPU returns the CPU time (user+sys, seconds) of every process group
// of the system, summed over its members (socat fork children included).
func groupCPU() map[int]float64 {
	m := map[int]float64{}
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
		f := strings.Fields(s[i+1:])
		// fields after ')': state ppid pgrp session ... utime(14) stime(15)
		// cutime(16) cstime(17): waited-for children (socat forks)
		if len(f) < 15 {
			continue
		}
		pg, _ := strconv.Atoi(f[2])
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		cut, _ := strconv.ParseFloat(f[13], 64)
		cst, _ := strconv.ParseFloat(f[14], 64)
		m[pg] += (ut + st + cut + cst) / 100 // USER_HZ
	}
	return m
}

// cpuDelta maps the CPU used between two groupCPU snapshots to the names
// of the processes this run started (summed by name).
func cpuDelta(a, b map[int]float64, e *env) map[string]float64 {
	out := map[string]float64{}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.procs {
		pg := p.Pid()
		if d := b[pg] - a[pg]; d > 0 {
			out[p.Name()] += d
		}
	}
	return out
}

func fmtCPU(m map[string]float64, wall time.Duration) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.SortFunc(names, func(x, y string) int {
		switch {
		case m[x] > m[y]:
			return -1
		case m[x] < m[y]:
			return 1
		}
		return strings.Compare(x, y)
	})
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", n, 100*m[n]/wall.Seconds()))
	}
	return strings.Join(parts, ", ")
}
