package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edge-sbc/edge-sbc/test/internal/proc"
)

// sippUDPMin and sippUDPMax bound the UDP ports of sipp (-cp, -mp): below
// the SBC's media ranges (from 20000) and the kernel's ephemeral ports
// (from 32768), so that neither takes a port the other is about to bind.
const sippUDPMin, sippUDPMax = 10000, 19999

// freeUDPRange returns an even p such that UDP p..p+n-1 are free on
// loopback and not handed out before in this run, within sippUDPMin..Max.
func (e *env) freeUDPRange(n int) (int, error) {
	for range 500 {
		p := sippUDPMin + 2*rand.IntN((sippUDPMax-sippUDPMin)/2)
		if p+n-1 > sippUDPMax {
			continue
		}
		e.mu.Lock()
		ok := true
		for i := range n {
			ok = ok && !e.used[p+i]
		}
		e.mu.Unlock()
		for i := 0; i < n && ok; i++ {
			c, err := net.ListenPacket("udp4", net.JoinHostPort(loopback, strconv.Itoa(p+i)))
			if err != nil {
				ok = false
				break
			}
			_ = c.Close()
		}
		if !ok {
			continue
		}
		e.mu.Lock()
		for i := range n {
			ok = ok && !e.used[p+i]
			e.used[p+i] = true
		}
		e.mu.Unlock()
		if ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free UDP port range in %d-%d", sippUDPMin, sippUDPMax)
}

// sippRun describes one sipp process.
type sippRun struct {
	// tool is Debian's sipp (zero value) or sipp-tls; with sipp-tls and tls
	// set, sipp speaks TLS itself (-t l1) with that certificate and
	// verifies the peer's against tls.ca.
	tool      loadTool
	tls       *tlsFiles
	scenario  string // path
	remote    string // UAC: host:port; "" for a UAS
	transport string // t1 or tn (ignored with tls: l1)
	rate      int
	calls     int // -m; 0 = unlimited (UAS)
	limit     int // -l; 0 = sipp default
	pause     time.Duration
	timeout   time.Duration // -timeout (whole run)
	port      int           // local port (UAS listens there)
	stat      string        // -stf file
	errf      string        // -error_file (-trace_err)
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
	r.errf = filepath.Join(e.dir, fmt.Sprintf("%02d-sipp-errors.log", e.seq))
	e.mu.Unlock()
	var a []string
	if r.remote != "" {
		a = append(a, r.remote)
	}
	transport := r.transport
	if r.tls != nil {
		transport = "l1"
		a = append(a, "-tls_cert", r.tls.cert, "-tls_key", r.tls.key, "-tls_ca", r.tls.ca)
	}
	a = append(a, "-sf", r.scenario, "-t", transport,
		"-i", loopback, "-p", strconv.Itoa(r.port), "-bind_local",
		"-ci", loopback, "-cp", strconv.Itoa(cp),
		"-mi", loopback, "-mp", strconv.Itoa(mp),
		"-s", "alice", "-key", "ruri_scheme", "sips", "-key", "ruri_host", "sbc.test",
		"-r", strconv.Itoa(max(r.rate, 1)),
		"-d", strconv.FormatInt(r.pause.Milliseconds(), 10),
		"-nostdin", "-max_socket", "8000",
		// A UAS lives for a whole section on a shared, loaded machine:
		// late timer ticks must not end it (3 s stalls still do).
		"-watchdog_minor_maxtriggers", "1000000",
		"-trace_stat", "-stf", r.stat, "-fd", "1",
		"-trace_err", "-error_file", r.errf)
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

// startUAS starts a sipp UAS (-t t1, or sipp-tls -t l1 when tls is set:
// then it is a TLS server with that certificate that requires a client
// certificate of tls.ca) and waits until it listens.
func (e *env) startUAS(tool loadTool, scenario, name string, tls *tlsFiles) (*proc.Proc, *sippRun, error) {
	r := &sippRun{tool: tool, tls: tls, scenario: scenario, transport: "t1", pause: 100 * time.Millisecond}
	args, err := e.sippArgs(r)
	if err != nil {
		return nil, nil, err
	}
	p, err := e.start(name, tool.sipp(), args...)
	if err != nil {
		return nil, nil, err
	}
	return p, r, waitListening(r.port, 10*time.Second, p)
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
	errs               string // the most frequent error of sipp's -trace_err file
}

// runUAC runs a sipp UAC to completion (bounded by ctx and a timeout).
// name names its process (log file, CPU accounting).
func (e *env) runUAC(ctx context.Context, r *sippRun, name string) (uacResult, *proc.Proc, error) {
	res := uacResult{rate: r.rate, calls: r.calls}
	args, err := e.sippArgs(r)
	if err != nil {
		return res, nil, err
	}
	cpu0 := groupCPU()
	t0 := time.Now()
	p, err := e.start(name, r.tool.sipp(), args...)
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
		res.cpu[name] = p.CPU().Seconds()
	}
	res.exit = p.ExitCode()
	e.forget(p)
	if st, err := proc.ReadSippStats(r.stat); err == nil {
		res.succ, res.fail = st.Successful, st.Failed
	} else {
		res.why = "no statistics from sipp: " + err.Error()
	}
	res.errs = sippErrDigest(r.errf)
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
	eachProcStat(func(_ string, f []string) {
		// fields after ')': state ppid pgrp session ... utime(11) stime(12)
		// cutime(13) cstime(14): waited-for children (socat forks)
		if len(f) < 15 {
			return
		}
		pg, _ := strconv.Atoi(f[2])
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		cut, _ := strconv.ParseFloat(f[13], 64)
		cst, _ := strconv.ParseFloat(f[14], 64)
		m[pg] += (ut + st + cut + cst) / 100 // USER_HZ
	})
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

var (
	sippErrLine = regexp.MustCompile(`^\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: (.*)$`)
	sippCallID  = regexp.MustCompile(`Call-I[dD] '[^']*'`)
)

// sippErrDigest names the most frequent error in a sipp -trace_err file
// (Call-IDs left out; a received response with its Warning header), e.g.
// `378× "... received 'SIP/2.0 503 Service Unavailable | Warning: 399 ..."`.
func sippErrDigest(path string) string {
	raw, _ := os.ReadFile(path)
	b := string(raw)
	if b == "" {
		return ""
	}
	count := map[string]int{}
	total := 0
	key := ""
	flush := func() {
		if key != "" {
			count[key]++
			total++
		}
		key = ""
	}
	for _, l := range strings.Split(b, "\n") {
		if m := sippErrLine.FindStringSubmatch(l); m != nil {
			flush()
			key = strings.TrimSpace(sippCallID.ReplaceAllString(m[1], "Call-Id"))
			if strings.HasSuffix(key, "Retrying...") || strings.HasPrefix(key, "Overload warning:") {
				key = "" // SSL_ERROR_WANT_READ/WRITE retried; sipp's own timer late: not call errors
			}
			continue
		}
		if key != "" && strings.HasPrefix(l, "Warning:") {
			key += " | " + strings.TrimSpace(l)
		}
	}
	flush()
	best, n := "", 0
	for k, c := range count {
		if c > n || (c == n && k < best) {
			best, n = k, c
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d× %q (of %d errors)", n, best, total)
}
