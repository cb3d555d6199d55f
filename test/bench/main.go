// Command bench is the benchmark suite of edge-sbc (make bench).
//
// It measures, on loopback only, and prints next to each figure a baseline
// measured in the same run:
//
//  1. call rate over mutual TLS: a TLS-native sipp (sipp-tls, installed
//     when missing) as caller and callee, one TLS connection per side,
//     ramped in steps through edge-sbc and, in the same run, through
//     Kamailio as a stateful record-routing proxy (rate.go, kamailio/);
//     sipp behind socat when sipp-tls cannot be installed;
//  2. concurrent calls: RSS and goroutines per held call (with media ports
//     allocated), and the setup rate of a burst while loaded;
//  3. relay throughput, CPU per packet, added latency and fairness of the
//     media package in process; baseline a bare recvmmsg/sendmmsg
//     forwarder with the same sockets and batching;
//  4. the same relay measurement with SRTP terminated on both legs
//     (test/bench/srtpterm, a separate program so that this one builds
//     whether or not the media package has terminate mode);
//  5. go test -bench figures of the hot paths (./media, ./dnsresolve).
//
// Usage: go run ./test/bench [-out bench.json] [-quick] [-sections 1,2,3,4,5,6]
// (-h for the rest).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Result is one figure of the JSON output.
type Result struct {
	Section  int     `json:"section"`
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline,omitempty"`
	// BaseName says what the baseline is ("Kamailio 5.6.3", "bare forwarder").
	BaseName string `json:"baseline_name,omitempty"`
	Note     string `json:"note,omitempty"`
	// NA is set when the figure could not be measured (Note says why).
	NA bool `json:"na,omitempty"`
	// Hidden figures are in the JSON only (the table shows them in the
	// note of a neighbouring line).
	Hidden bool `json:"-"`
}

// report collects results in the order they are measured.
type report struct {
	results  []Result
	notes    []string
	callRate *CallRate // section 1 per step
}

func (r *report) add(x Result) {
	r.results = append(r.results, x)
	if x.Hidden {
		return
	}
	logf("  = %s: %s %s%s", x.Name, fmtVal(x.Value), x.Unit, ifs(x.Baseline != 0, fmt.Sprintf(" (baseline %s)", fmtVal(x.Baseline)), ""))
}

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

type options struct {
	out       string
	quick     bool
	sections  map[int]bool
	stepDur   time.Duration
	rates     []int
	calls     []int
	holdPause time.Duration
	holdRate  int
	streams   []int
	relayDur  time.Duration
	sbcBin    string
	keep      bool
	install   bool // install what section 1 needs when missing

	// section 1
	sippTLS        string // a sipp-tls binary to use as is
	sippTLSInstall string // the shared install script
	sippTLSPrefix  string
	socat          bool // force the fallback (Debian's sipp behind socat)
	kamWorkers     int
	retries        int
	quietWait      time.Duration
	quietMax       float64
	sbcLimits      string // extra limits: keys of edge-sbc's config in section 1
	sbcMedia       string // one extra media: key of edge-sbc's config in section 1
	rssRate        int
	rssDur         time.Duration
	profileDir     string // -profile: CPU and allocation profiles of edge-sbc
	profileRate    int    // the step they are taken in
	baseline       bool   // section 1 measures Kamailio too
}

var start = time.Now()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func ifs(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}

func main() {
	raiseFileLimit()
	var o options
	var sections, rates, calls, streams string
	flag.StringVar(&o.out, "out", "", "write the results as JSON to this file")
	flag.BoolVar(&o.quick, "quick", false, "short steps and small sizes (smoke run, about 2 minutes)")
	flag.StringVar(&sections, "sections", "1,2,3,4,5,6", "sections to run (comma separated)")
	flag.DurationVar(&o.stepDur, "step", 0, "duration of one call-rate step (default 15s, 5s with -quick)")
	flag.StringVar(&rates, "rates", "", "call rates to ramp, calls/s (default 500,1000,...,4000; 500,1000,2000 with -quick)")
	flag.StringVar(&calls, "calls", "", "concurrent call counts to hold (default 1000,3000,6000; 200,500 with -quick)")
	flag.DurationVar(&o.holdPause, "hold", 0, "how long each held call lasts, -d of sipp (default 60s, 15s with -quick)")
	flag.IntVar(&o.holdRate, "hold-rate", 200, "setup rate of the held calls, calls/s")
	flag.StringVar(&streams, "streams", "", "concurrent relay streams (default 50,200; 50 with -quick)")
	flag.DurationVar(&o.relayDur, "relay-dur", 0, "duration of one relay measurement (default 3s, 1s with -quick)")
	flag.StringVar(&o.sbcBin, "sbc", "bin/edge-sbc", "edge-sbc binary (built with go build when missing)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, sipp statistics)")
	flag.BoolVar(&o.install, "install", true, "install sipp-tls and Kamailio when missing (section 1)")
	flag.StringVar(&o.sippTLS, "sipp-tls", "", "TLS-native sipp to use (default: PREFIX/bin/sipp-tls, installed when missing)")
	flag.StringVar(&o.sippTLSInstall, "sipp-tls-install", os.Getenv("SIPP_TLS_INSTALL"), "sipp-tls install script (default $SIPP_TLS_INSTALL, else shared/tools/sipp-tls/install.sh next to the repository)")
	flag.StringVar(&o.sippTLSPrefix, "sipp-tls-prefix", defaultSippTLSPrefix, "where sipp-tls is installed")
	flag.BoolVar(&o.socat, "socat", false, "section 1 with Debian's sipp behind socat instead of sipp-tls (the fallback)")
	flag.IntVar(&o.kamWorkers, "kamailio-workers", 4, "Kamailio TCP/TLS worker processes (tcp_children)")
	flag.DurationVar(&o.quietWait, "quiet-wait", 30*time.Second, "before each call-rate step, wait up to this long while other users of the machine use more than -quiet-max (10s with -quick; 0: never wait)")
	flag.Float64Var(&o.quietMax, "quiet-max", 25, "CPU of other users (% of one core) above which a call-rate step waits (-quiet-wait)")
	flag.StringVar(&o.sbcMedia, "sbc-media", "", `one extra "media:" key of edge-sbc in section 1, e.g. "socket_cache: 0"`)
	flag.StringVar(&o.sbcLimits, "sbc-limits", "", `extra "limits:" keys of edge-sbc in section 1, e.g. "max_pending_per_connection: 1024" (default: edge-sbc's defaults)`)
	flag.IntVar(&o.retries, "retries", 1, "how often a failed call-rate step is run again before the ramp of that system ends (the machine may be shared)")
	flag.StringVar(&o.profileDir, "profile", "", "write edge-sbc's CPU and allocation profiles of one call-rate step (-profile-rate) to this directory (go tool pprof reads them)")
	flag.BoolVar(&o.baseline, "baseline", true, "section 1 measures Kamailio next to edge-sbc (false: edge-sbc alone, for profiling; the ratios are then missing)")
	flag.IntVar(&o.profileRate, "profile-rate", 2000, "the call-rate step -profile is taken in, calls/s")
	flag.IntVar(&o.rssRate, "rss-rate", 0, "rate of edge-sbc's RSS run, calls/s (default 2000; 1000 with -quick)")
	flag.DurationVar(&o.rssDur, "rss-dur", 0, "length of edge-sbc's RSS run, RSS read half way and at the end (default 60s; 10s with -quick; -1s: none)")
	flag.Parse()

	o.sections = map[int]bool{}
	for _, s := range strings.Split(sections, ",") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(s), "%d", &n); err == nil {
			o.sections[n] = true
		}
	}
	def := func(d *time.Duration, full, quick time.Duration) {
		if *d == 0 {
			*d = full
			if o.quick {
				*d = quick
			}
		}
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick && !set["quiet-wait"] {
		o.quietWait = 10 * time.Second
	}
	def(&o.stepDur, 15*time.Second, 5*time.Second)
	def(&o.rssDur, 60*time.Second, 10*time.Second)
	if o.rssRate == 0 {
		o.rssRate = 2000
		if o.quick {
			o.rssRate = 1000
		}
	}
	def(&o.holdPause, 60*time.Second, 15*time.Second)
	def(&o.relayDur, 3*time.Second, time.Second)
	o.rates = intList(rates, []int{500, 1000, 1500, 2000, 2500, 3000, 3500, 4000}, []int{500, 1000, 2000}, o.quick)
	o.calls = intList(calls, []int{1000, 3000, 6000}, []int{200, 500}, o.quick)
	o.streams = intList(streams, []int{50, 200}, []int{50}, o.quick)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A hard bound on the whole run, whatever happens.
	ctx, cancel := context.WithTimeout(ctx, 25*time.Minute)
	defer cancel()

	en, err := newEnv(o)
	if err != nil {
		fatalf("%v", err)
	}
	defer en.close()

	rep := &report{}
	type section struct {
		n    int
		name string
		run  func(context.Context, *env, *report) error
	}
	for _, s := range []section{
		{5, "go test -bench of the hot paths", runGoBench},
		{3, "relay throughput (in process)", runRelay},
		{4, "terminate-mode SRTP relay", runTerminate},
		{1, "call rate over mutual TLS", runCallRate},
		{2, "concurrent calls", runConcurrent},
		{6, "kernel fast path (eBPF) in network namespaces", runFastpath},
	} {
		if !o.sections[s.n] || ctx.Err() != nil {
			continue
		}
		logf("section %d: %s", s.n, s.name)
		t0 := time.Now()
		if err := s.run(ctx, en, rep); err != nil {
			logf("section %d failed: %v", s.n, err)
			rep.add(Result{Section: s.n, Name: fmt.Sprintf("section %d (%s)", s.n, s.name), NA: true, Note: "failed: " + err.Error()})
		}
		logf("section %d done in %.0fs", s.n, time.Since(t0).Seconds())
		en.cleanupProcs()
	}

	mi := machineInfo()
	printTable(os.Stdout, mi, rep)
	if o.out != "" {
		out := struct {
			Machine  map[string]string `json:"machine"`
			Quick    bool              `json:"quick"`
			Results  []Result          `json:"results"`
			CallRate *CallRate         `json:"call_rate,omitempty"`
			Notes    []string          `json:"notes"`
		}{mi, o.quick, rep.results, rep.callRate, rep.notes}
		b, _ := json.MarshalIndent(out, "", "  ")
		if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
			fatalf("%v", err)
		}
		logf("wrote %s", o.out)
	}
}

func intList(s string, full, quick []int, q bool) []int {
	if s == "" {
		if q {
			return quick
		}
		return full
	}
	var l []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%d", &n); err == nil && n > 0 {
			l = append(l, n)
		}
	}
	return l
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

func machineInfo() map[string]string {
	m := map[string]string{
		"go":    runtime.Version(),
		"os":    runtime.GOOS + "/" + runtime.GOARCH,
		"cores": fmt.Sprint(runtime.NumCPU()),
		"date":  time.Now().UTC().Format(time.RFC3339),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	return m
}

// raiseFileLimit lifts RLIMIT_NOFILE (inherited by the SBC and sipp): 6000
// calls without rtcp-mux hold 24,000 media sockets. Best effort; as root the
// hard limit can be raised up to fs.nr_open.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	want := uint64(200000)
	if lim.Cur >= want {
		return
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(want, lim.Max)}); err != nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}
