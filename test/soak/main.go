// Command soak runs edge-sbc under a steady call load for a while and
// checks that it gives back what it took: no failed calls, and goroutines,
// open files and resident memory back near their starting values once the
// load stops.
//
//	sipp UAC --TCP--> socat --TLS--> edge-sbc --TLS--> socat --TCP--> sipp UAS
//
// Everything runs on 127.0.0.1. Run it with `make soak` (10 minutes) or
// `make soak SOAK_DURATION=2m`, or `go run ./test/soak -h` for the flags.
// It exits 1 when a call failed or a figure did not return to baseline.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edge-sbc/edge-sbc/test/internal/proc"
)

type options struct {
	duration    time.Duration
	rate        int
	hold        time.Duration
	sample      time.Duration
	settle      time.Duration
	warmup      time.Duration
	rssWait     time.Duration
	goTol       float64
	fdTol       float64
	rssTol      float64
	keep        bool
	heapPerCall float64
	recvTimeout time.Duration
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long calls are started")
	flag.IntVar(&o.rate, "rate", 20, "calls per second")
	flag.DurationVar(&o.hold, "hold", 3*time.Second, "how long each call stays up")
	flag.DurationVar(&o.sample, "sample", 10*time.Second, "metrics sampling interval")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "wait after the last call before the end sample (and after the warm-up)")
	flag.DurationVar(&o.rssWait, "rss-wait", 180*time.Second,
		"after the settle, keep sampling RSS up to this long until it is back within tolerance: an idle Go process runs a GC only every 2 minutes, and only then returns freed pages (0 = judge RSS at the settle)")
	flag.DurationVar(&o.warmup, "warmup", 15*time.Second, "load at the same rate before the baseline is taken (0 = one call)")
	flag.Float64Var(&o.goTol, "goroutines-tolerance", 5, "end goroutines may exceed the start by this much")
	flag.Float64Var(&o.fdTol, "fds-tolerance", 5, "end open fds may exceed the start by this much")
	flag.Float64Var(&o.rssTol, "rss-tolerance", 0.20, "end RSS may exceed the start by this fraction")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, traces)")
	flag.Float64Var(&o.heapPerCall, "heap-per-call", 1024, "live heap after a forced GC may grow by this many bytes per ended call")
	flag.Parse()
	if o.duration <= 0 || o.rate <= 0 || o.hold <= 0 || o.sample <= 0 {
		fatalf("duration, rate, hold and sample must be positive")
	}
	o.recvTimeout = 10 * time.Second
	code, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		if code == 0 {
			code = 2
		}
	}
	os.Exit(code)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "soak: "+format+"\n", args...)
	os.Exit(2)
}

// ---------------------------------------------------------------------------
// Processes (test/internal/proc): each in its own process group, ended by
// its id at exit.

func start(dir, logName, name string, args ...string) (*proc.Proc, error) {
	return proc.Start(proc.Options{Path: name, Args: args, Dir: dir, Log: filepath.Join(dir, logName)})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freeUDPPair returns an even UDP port p with p..p+3 free (sipp media).
func freeUDPPair() (int, error) {
	for range 100 {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := c.LocalAddr().(*net.UDPAddr).Port
		_ = c.Close()
		if p%2 == 1 || p+4 > 65535 {
			continue
		}
		ok := true
		for i := range 4 {
			c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+i)))
			if err != nil {
				ok = false
				break
			}
			_ = c.Close()
		}
		if ok {
			return p, nil
		}
	}
	return 0, errors.New("no free UDP port range")
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 10 {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/edge-sbc/edge-sbc\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("run from inside the edge-sbc repository")
}

// ---------------------------------------------------------------------------
// Metrics.

var watched = []string{
	"go_gc_duration_seconds_count",
	"go_memstats_heap_idle_bytes",
	"go_memstats_heap_released_bytes",
	"go_memstats_stack_inuse_bytes",
	"go_memstats_sys_bytes",
	"go_memstats_next_gc_bytes",
	"go_memstats_heap_inuse_bytes",
	"process_resident_memory_bytes",
	"go_goroutines",
	"process_open_fds",
	"edge_sbc_calls_active",
	"edge_sbc_media_ports_in_use",
}

type sample struct {
	at    time.Duration // since the start of the load
	phase string
	v     map[string]float64
}

// forcedHeap returns the SBC's live heap (HeapAlloc) right after a forced
// GC: /debug/pprof/heap?gc=1 collects first, and its text form ends with
// the runtime.MemStats of that moment.
func forcedHeap(port int) (uint64, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1&debug=1", port))
	if err != nil {
		return 0, fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("heap profile: no HeapAlloc line (metrics.pprof on?)")
}

func scrape(port int) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

func printHeader() {
	fmt.Printf("%8s  %-7s  %9s  %10s  %8s  %12s  %11s\n", "t", "phase", "RSS MiB", "goroutines", "open fds", "calls active", "media ports")
}

func printSample(s sample) {
	fmt.Printf("%8s  %-7s  %9.1f  %10.0f  %8.0f  %12.0f  %11.0f\n", s.at.Round(time.Second), s.phase,
		s.v["process_resident_memory_bytes"]/(1<<20), s.v["go_goroutines"], s.v["process_open_fds"],
		s.v["edge_sbc_calls_active"], s.v["edge_sbc_media_ports_in_use"])
}

// ---------------------------------------------------------------------------

func run(o options) (int, error) {
	for _, tool := range []string{"sipp", "socat", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return 2, fmt.Errorf("%s not found: apt-get install -y sip-tester socat (or make test-deps)", tool)
		}
	}
	repo, err := repoRoot()
	if err != nil {
		return 2, err
	}
	work, err := os.MkdirTemp("", "edge-sbc-soak")
	if err != nil {
		return 2, err
	}
	var procs []*proc.Proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].Stop(syscall.SIGTERM, 5*time.Second)
		}
		if o.keep {
			fmt.Println("work directory kept:", work)
		} else {
			_ = os.RemoveAll(work)
		}
	}()
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	// Build and certificates.
	bin := filepath.Join(work, "edge-sbc")
	build := exec.Command("go", "build", "-o", bin, "./cmd/edge-sbc")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		return 2, fmt.Errorf("go build: %v\n%s", err, out)
	}
	pki := filepath.Join(work, "pki")
	if out, err := exec.Command(bin, "devcert", "--out", pki, "--name", "sbc.test", "--name", "caller.test", "--name", "callee.test").CombinedOutput(); err != nil {
		return 2, fmt.Errorf("devcert: %v\n%s", err, out)
	}
	pem := func(n string) (string, string) { return filepath.Join(pki, n+".pem"), filepath.Join(pki, n+".key") }
	ca := filepath.Join(pki, "ca.pem")

	ports := map[string]int{}
	for _, n := range []string{"uas", "calleeTLS", "mtls", "metrics", "caller", "uac", "uasCtl", "uacCtl"} {
		if ports[n], err = freePort(); err != nil {
			return 2, err
		}
	}
	uasMedia, err := freeUDPPair()
	if err != nil {
		return 2, err
	}
	uacMedia, err := freeUDPPair()
	if err != nil {
		return 2, err
	}
	sippDir := filepath.Join(repo, "test", "sipp")
	holdMS := strconv.FormatInt(o.hold.Milliseconds(), 10)
	recvMS := strconv.FormatInt(o.recvTimeout.Milliseconds(), 10)

	// Callee: sipp UAS behind a socat TLS server (client certificate required).
	uas, err := start(work, "uas.log", "sipp",
		"-sf", filepath.Join(sippDir, "uas_basic.xml"), "-t", "t1",
		"-i", "127.0.0.1", "-p", strconv.Itoa(ports["uas"]), "-bind_local",
		"-ci", "127.0.0.1", "-cp", strconv.Itoa(ports["uasCtl"]),
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(uasMedia),
		"-recv_timeout", recvMS, "-nostdin",
		"-trace_stat", "-stf", filepath.Join(work, "uas_stat.csv"), "-fd", "5",
		"-trace_err", "-error_file", filepath.Join(work, "uas_errors.log"))
	if err != nil {
		return 2, err
	}
	procs = append(procs, uas)
	if err := proc.WaitListening(ports["uas"], 10*time.Second, uas); err != nil {
		return 2, err
	}
	cert, key := pem("callee.test")
	srvProxy, err := start(work, "socat-callee.log", "socat", "-d", "-lh",
		fmt.Sprintf("OPENSSL-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr,cert=%s,key=%s,cafile=%s,verify=1", ports["calleeTLS"], cert, key, ca),
		fmt.Sprintf("TCP:127.0.0.1:%d", ports["uas"]))
	if err != nil {
		return 2, err
	}
	procs = append(procs, srvProxy)
	if err := proc.WaitListening(ports["calleeTLS"], 10*time.Second, srvProxy); err != nil {
		return 2, err
	}

	// The SBC.
	cert, key = pem("sbc.test")
	cfg := fmt.Sprintf(`
node: { fqdn: sbc.test, domains: [sbc.test] }
tls: { cert: %s, key: %s, ca: %s }
listen:
  - { addr: "127.0.0.1:%d", client_auth: required }
trunks:
  - { name: outside, identity: caller.test }
  - { name: inside, uri: "sips:127.0.0.1:%d", identity: callee.test }
routes:
  - { from: outside, to: inside }
media: { port_range: "43000-46999", bind: 127.0.0.1 }
metrics: { listen: "127.0.0.1:%d", pprof: true }
log: { level: info, format: json }
shutdown: { drain_timeout: 5s }
`, cert, key, ca, ports["mtls"], ports["calleeTLS"], ports["metrics"])
	cfgPath := filepath.Join(work, "edge-sbc.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return 2, err
	}
	sbc, err := start(work, "edge-sbc.log", bin, "run", "--config", cfgPath)
	if err != nil {
		return 2, err
	}
	procs = append(procs, sbc)
	if err := sbc.WaitLog("edge-sbc ready", 15*time.Second); err != nil {
		return 2, err
	}

	// Caller side: socat TLS client (caller.test certificate) for sipp UAC.
	cert, key = pem("caller.test")
	cliProxy, err := start(work, "socat-caller.log", "socat", "-d", "-lh",
		fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", ports["caller"]),
		fmt.Sprintf("OPENSSL:127.0.0.1:%d,verify=1,cafile=%s,cert=%s,key=%s,commonname=sbc.test,snihost=sbc.test", ports["mtls"], ca, cert, key))
	if err != nil {
		return 2, err
	}
	procs = append(procs, cliProxy)
	if err := proc.WaitListening(ports["caller"], 10*time.Second, cliProxy); err != nil {
		return 2, err
	}

	uac := func(name string, calls int, timeout time.Duration) (*proc.Proc, string, error) {
		stat := filepath.Join(work, name+"_stat.csv")
		p, err := start(work, name+".log", "sipp", fmt.Sprintf("127.0.0.1:%d", ports["caller"]),
			"-sf", filepath.Join(sippDir, "uac_basic.xml"), "-t", "t1",
			"-i", "127.0.0.1", "-p", strconv.Itoa(ports["uac"]), "-bind_local",
			"-ci", "127.0.0.1", "-cp", strconv.Itoa(ports["uacCtl"]),
			"-mi", "127.0.0.1", "-mp", strconv.Itoa(uacMedia),
			"-s", "soak", "-key", "ruri_scheme", "sips", "-key", "ruri_host", "sbc.test",
			"-r", strconv.Itoa(o.rate), "-m", strconv.Itoa(calls), "-d", holdMS,
			"-l", strconv.Itoa(o.rate*int((o.hold+o.recvTimeout)/time.Second+1)),
			"-timeout", strconv.FormatInt(timeout.Milliseconds(), 10)+"ms", "-timeout_error",
			"-recv_timeout", recvMS, "-nostdin",
			"-trace_stat", "-stf", stat, "-fd", "5",
			"-trace_err", "-error_file", filepath.Join(work, name+"_errors.log"))
		return p, stat, err
	}
	waitProc := func(p *proc.Proc, d time.Duration) error {
		select {
		case <-p.Done():
			return nil
		case <-ctx.Done():
			return errors.New("interrupted")
		case <-time.After(d):
			return fmt.Errorf("%s still running after %s", p.Name(), d)
		}
	}

	var samples []sample
	t0 := time.Now()
	take := func(phase string) error {
		v, err := scrape(ports["metrics"])
		if err != nil {
			return err
		}
		s := sample{at: time.Since(t0), phase: phase, v: v}
		if phase != "idle" && phase != "warm" {
			samples = append(samples, s)
		}
		printSample(s)
		return nil
	}
	calls := max(1, o.rate*int(o.duration/time.Second))
	fmt.Printf("soak: %d calls at %d cps, hold %s, over %s; work dir %s\n", calls, o.rate, o.hold, o.duration, work)
	printHeader()
	if err := take("idle"); err != nil {
		return 2, err
	}

	// Warm-up: the same load for a short while opens the SBC's connection
	// toward the callee (it stays for the run) and grows the Go heap to its
	// working size, so that the baseline is the steady state and the end
	// comparison shows what the long run added.
	warmCalls := max(1, o.rate*int(o.warmup/time.Second))
	warm, warmStat, err := uac("warmup", warmCalls, o.warmup+o.hold+60*time.Second)
	if err != nil {
		return 2, err
	}
	if err := waitProc(warm, o.warmup+o.hold+90*time.Second); err != nil {
		warm.Stop(syscall.SIGINT, 3*time.Second)
		return 2, fmt.Errorf("warm-up: %w", err)
	}
	if ws, err := proc.ReadSippStats(warmStat); err != nil || ws.Successful != warmCalls || ws.Failed != 0 {
		o.keep = true
		return 1, fmt.Errorf("warm-up: %d calls wanted, got %+v (%v); see %s", warmCalls, ws, err, work)
	}
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return 130, errors.New("interrupted")
	}
	if err := take("warm"); err != nil {
		return 2, err
	}
	fmt.Printf("warm-up: %d calls ok; the next row is the baseline\n", warmCalls)
	heap0, err := forcedHeap(ports["metrics"])
	if err != nil {
		return 2, err
	}
	t0 = time.Now()
	if err := take("start"); err != nil {
		return 2, err
	}

	// The load.
	loadTimeout := o.duration + o.hold + 60*time.Second
	load, loadStat, err := uac("load", calls, loadTimeout)
	if err != nil {
		return 2, err
	}
	tick := time.NewTicker(o.sample)
	defer tick.Stop()
	interrupted := false
loop:
	for {
		select {
		case <-load.Done():
			break loop
		case <-ctx.Done():
			interrupted = true
			load.Stop(syscall.SIGINT, 5*time.Second)
			break loop
		case <-tick.C:
			if sbc.Exited() {
				return 1, fmt.Errorf("edge-sbc exited during the load: %v", sbc.Err())
			}
			if err := take("load"); err != nil {
				fmt.Println("scrape:", err)
			}
			if time.Since(t0) > loadTimeout+15*time.Second {
				load.Stop(syscall.SIGINT, 5*time.Second)
				break loop
			}
		}
	}
	loadEnd := time.Since(t0)

	// Settle, sampling on, then the end sample.
	settle := time.After(o.settle)
	tick.Reset(o.sample)
settling:
	for {
		select {
		case <-settle:
			break settling
		case <-ctx.Done():
			interrupted = true
			break settling
		case <-tick.C:
			if err := take("settle"); err != nil {
				fmt.Println("scrape:", err)
			}
		}
	}
	if sbc.Exited() {
		return 1, fmt.Errorf("edge-sbc exited: %v", sbc.Err())
	}
	if err := take("settled"); err != nil {
		return 1, err
	}
	settled := samples[len(samples)-1]
	base := samples[0].v
	rssLimit := base["process_resident_memory_bytes"] * (1 + o.rssTol)

	// RSS: freed heap goes back to the OS only after a GC cycle, which an
	// idle process runs every 2 minutes; wait for it (bounded).
	end := settled
	if settled.v["process_resident_memory_bytes"] > rssLimit && o.rssWait > 0 && !interrupted {
		fmt.Printf("RSS %.1f MiB > limit %.1f MiB after the settle; waiting up to %s for a GC cycle and page release\n",
			settled.v["process_resident_memory_bytes"]/(1<<20), rssLimit/(1<<20), o.rssWait)
		deadline := time.After(o.rssWait)
	rss:
		for {
			select {
			case <-deadline:
				break rss
			case <-ctx.Done():
				interrupted = true
				break rss
			case <-tick.C:
				if err := take("rss"); err != nil {
					fmt.Println("scrape:", err)
					continue
				}
				end = samples[len(samples)-1]
				if end.v["process_resident_memory_bytes"] <= rssLimit {
					break rss
				}
			}
		}
	}
	if interrupted {
		return 130, errors.New("interrupted")
	}
	heap1, err := forcedHeap(ports["metrics"])
	if err != nil {
		return 1, err
	}

	// Report.
	st, err := proc.ReadSippStats(loadStat)
	if err != nil {
		return 1, err
	}
	uasStats, _ := proc.ReadSippStats(filepath.Join(work, "uas_stat.csv")) // periodic dump; may lag
	first := samples[0]
	peak := map[string]float64{}
	for _, s := range samples {
		for _, k := range watched {
			peak[k] = max(peak[k], s.v[k])
		}
	}
	fmt.Println()
	fmt.Printf("calls: attempted %d (planned %d), successful %d, failed %d; load lasted %s; sipp exit %v\n",
		st.Created, calls, st.Successful, st.Failed, loadEnd.Round(time.Second), load.Err())
	fmt.Printf("callee (sipp UAS, periodic stats): successful %d, failed %d\n", uasStats.Successful, uasStats.Failed)
	fmt.Printf("GC cycles: %.0f at the start, %.0f at the end; end sample %s after the load\n",
		first.v["go_gc_duration_seconds_count"], end.v["go_gc_duration_seconds_count"], (end.at - loadEnd).Round(time.Second))
	fmt.Println()
	fmt.Printf("%-30s  %12s  %12s  %12s  %12s  %-16s  %s\n", "metric", "start", "peak", "settled", "end", "limit", "verdict")
	ok := true
	row := func(name string, scale float64, unit string, limit float64, limitText string, judged sample) {
		v := "ok"
		if limitText == "" {
			v = "-"
		} else if judged.v[name] > limit {
			v = "FAIL"
			ok = false
		}
		fmt.Printf("%-30s  %10.1f%-2s  %10.1f%-2s  %10.1f%-2s  %10.1f%-2s  %-16s  %s\n", name,
			first.v[name]/scale, unit, peak[name]/scale, unit, settled.v[name]/scale, unit, end.v[name]/scale, unit, limitText, v)
	}
	row("process_resident_memory_bytes", 1<<20, "Mi", rssLimit, fmt.Sprintf("end <= +%.0f%%", o.rssTol*100), end)
	row("go_goroutines", 1, "", base["go_goroutines"]+o.goTol, fmt.Sprintf("settled <= +%.0f", o.goTol), settled)
	row("process_open_fds", 1, "", base["process_open_fds"]+o.fdTol, fmt.Sprintf("settled <= +%.0f", o.fdTol), settled)
	row("edge_sbc_calls_active", 1, "", 0, "settled == 0", settled)
	row("edge_sbc_media_ports_in_use", 1, "", 0, "settled == 0", settled)
	// Information: where the resident memory is. heap_idle - heap_released
	// is freed heap the runtime still holds; a leak shows as heap_inuse
	// staying up after a GC cycle.
	for _, n := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes",
		"go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes", "go_memstats_next_gc_bytes"} {
		row(n, 1<<20, "Mi", 0, "", end)
	}
	perCall := (float64(heap1) - float64(heap0)) / float64(max(st.Successful, 1))
	heapVerdict := "ok"
	if perCall > o.heapPerCall {
		heapVerdict = "FAIL"
		ok = false
	}
	fmt.Printf("%-30s  %10.1fKi  %12s  %12s  %10.1fKi  %-16s  %s\n", "live heap after forced GC", float64(heap0)/1024, "", "",
		float64(heap1)/1024, fmt.Sprintf("<= %.0f B/call", o.heapPerCall), heapVerdict)
	fmt.Printf("live heap per ended call: %.0f bytes (%d calls)\n", perCall, st.Successful)
	fmt.Println()
	if st.Failed > 0 || st.Successful != calls || st.Created != calls {
		ok = false
		fmt.Printf("FAIL: %d of %d calls failed or were not placed (errors: %s)\n", calls-st.Successful, calls, filepath.Join(work, "load_errors.log"))
		o.keep = true
	}
	if !ok {
		o.keep = true
		if b, err := os.ReadFile(filepath.Join(work, "load_errors.log")); err == nil && len(b) > 0 {
			fmt.Println("sipp errors (tail):\n" + proc.Tail(string(b), 2000))
		}
		fmt.Println("soak: FAIL")
		return 1, nil
	}
	fmt.Println("soak: PASS")
	return 0, nil
}
