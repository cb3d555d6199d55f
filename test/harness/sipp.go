package harness

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/internal/proc"
)

// SippOptions configures one sipp run. sipp always runs in TCP mode
// (-t t1, one connection) on 127.0.0.1; TLS is provided by socat.
type SippOptions struct {
	// Scenario is a file name in test/sipp (e.g. "uac_basic.xml") or an
	// absolute path.
	Scenario string
	// RemoteAddr is "127.0.0.1:port" the UAC sends to (normally the port of
	// a StartTLSClientProxy). Ignored for a UAS.
	RemoteAddr string
	// LocalPort is sipp's own TCP port (-p, [local_port]); 0 = a free port.
	// A UAS listens there.
	LocalPort int
	// Service is the user part of the Request-URI (-s, [service]); default
	// "service".
	Service string
	// RURIHost is the host of the Request-URI (-key ruri_host,
	// [ruri_host]); default the host of RemoteAddr, else 127.0.0.1.
	RURIHost string
	// Calls is the number of calls (-m). Default 1 for a UAC; 0 for a UAS
	// means "run until Stop".
	Calls int
	// Rate is calls per second (-r); default 10.
	Rate int
	// Pause is the length of <pause/> in the scenarios (-d); default 500 ms.
	Pause time.Duration
	// Timeout bounds the whole run (-timeout with -timeout_error); default
	// 30 s for a UAC and 60 s for a UAS.
	Timeout time.Duration
	// Keys are extra -key name value pairs ([name] in scenarios). They
	// override the defaults ruri_scheme=sips and ruri_host=RURIHost.
	Keys map[string]string
	// Extra are additional raw sipp arguments.
	Extra []string
}

// SippResult is the outcome of a finished sipp run.
type SippResult struct {
	// ExitCode is sipp's exit status: 0 all calls successful, 1 at least one
	// failed call, 97 exit on internal command, 99 no call processed,
	// 255 fatal error or -timeout reached (with -timeout_error);
	// 128+signal when killed.
	ExitCode int
	// Successful and Failed are the cumulative call counters
	// (SuccessfulCall(C)/FailedCall(C) of the -trace_stat CSV).
	Successful, Failed int
	// Messages is the -trace_msg log (every message sent/received).
	Messages string
	// Errors is the -trace_err log.
	Errors string
	// Stdout is sipp's stdout+stderr (screens).
	Stdout string
	// Screen is the final -trace_screen dump (may be empty).
	Screen string
	// Dir is the directory holding the trace files.
	Dir string
}

// Sipp is a running sipp process.
type Sipp struct {
	t      testing.TB
	name   string
	opts   SippOptions
	p      *proc.Proc
	dir    string
	port   int
	files  sippFiles
	mu     sync.Mutex
	result *SippResult
}

type sippFiles struct{ msg, err, screen, stat, stdout string }

// Port is the TCP port sipp listens on ([local_port]).
func (s *Sipp) Port() int { return s.port }

// Addr is "127.0.0.1:<Port()>".
func (s *Sipp) Addr() string { return net.JoinHostPort(LoopbackIP, strconv.Itoa(s.port)) }

// StartSippUAS starts sipp as a server and returns once it listens on
// o.LocalPort (or a free port, see Port). With o.Calls > 0 sipp exits after
// that many calls (use Wait); otherwise it runs until Stop. It is stopped by
// t.Cleanup in any case.
func StartSippUAS(t testing.TB, o SippOptions) *Sipp {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	s := startSipp(t, o, false)
	if err := proc.WaitListening(s.port, 10*time.Second, s.p); err != nil {
		r := s.Stop()
		t.Fatalf("harness: sipp UAS %s: %v\n%s", o.Scenario, err, r.Diagnostics())
	}
	return s
}

// RunSippUAC runs sipp as a client against o.RemoteAddr until it exits
// (bounded by o.Timeout plus a grace period) and returns the result.
func RunSippUAC(t testing.TB, o SippOptions) SippResult {
	t.Helper()
	if o.RemoteAddr == "" {
		t.Fatalf("harness: RunSippUAC: RemoteAddr is required")
	}
	if o.Calls == 0 {
		o.Calls = 1
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	s := startSipp(t, o, true)
	r := s.Wait(o.Timeout + 10*time.Second)
	if r.Successful == 0 && r.Failed == 0 && strings.Contains(r.Errors, "Unable to bind") {
		// Another process took one of the free ports between the probe
		// and sipp's bind: once more, with other ports.
		t.Logf("harness: sipp could not bind its ports; starting it again")
		r = startSipp(t, o, true).Wait(o.Timeout + 10*time.Second)
	}
	return r
}

func startSipp(t testing.TB, o SippOptions, client bool) *Sipp {
	t.Helper()
	LookTools(t)
	scenario := ScenarioPath(o.Scenario)
	if _, err := os.Stat(scenario); err != nil {
		t.Fatalf("harness: scenario %s: %v", o.Scenario, err)
	}
	if o.LocalPort == 0 {
		o.LocalPort = FreePort(t)
	}
	if o.Service == "" {
		o.Service = "service"
	}
	if o.Rate == 0 {
		o.Rate = 10
	}
	if o.Pause == 0 {
		o.Pause = 500 * time.Millisecond
	}
	if o.RURIHost == "" {
		o.RURIHost = LoopbackIP
		if h, _, err := net.SplitHostPort(o.RemoteAddr); err == nil && h != "" {
			o.RURIHost = h
		}
	}
	keys := map[string]string{
		"ruri_scheme": "sips",
		"ruri_host":   o.RURIHost,
	}
	for k, v := range o.Keys {
		keys[k] = v
	}
	name := strings.TrimSuffix(filepath.Base(scenario), ".xml")
	dir := t.TempDir()
	f := sippFiles{
		msg:    filepath.Join(dir, name+"_messages.log"),
		err:    filepath.Join(dir, name+"_errors.log"),
		screen: filepath.Join(dir, name+"_screen.log"),
		stat:   filepath.Join(dir, name+"_stat.csv"),
		stdout: filepath.Join(dir, name+"_stdout.log"),
	}
	recvTimeout := 5*time.Second + 2*o.Pause
	if recvTimeout > o.Timeout {
		recvTimeout = o.Timeout
	}
	var args []string
	if client {
		args = append(args, o.RemoteAddr)
	}
	args = append(args,
		"-sf", scenario,
		"-t", "t1",
		"-i", LoopbackIP, "-p", strconv.Itoa(o.LocalPort), "-bind_local",
		// control socket: default is UDP 0.0.0.0:8888
		"-ci", LoopbackIP, "-cp", strconv.Itoa(freeUDPRange(t, 1)),
		"-mi", LoopbackIP, "-mp", strconv.Itoa(freeUDPRange(t, 4)),
		"-s", o.Service,
		"-r", strconv.Itoa(o.Rate),
		"-d", strconv.FormatInt(o.Pause.Milliseconds(), 10),
		"-timeout", strconv.FormatInt(o.Timeout.Milliseconds(), 10)+"ms", "-timeout_error",
		"-recv_timeout", strconv.FormatInt(recvTimeout.Milliseconds(), 10),
		"-nostdin",
		"-trace_msg", "-message_file", f.msg,
		"-trace_err", "-error_file", f.err,
		"-trace_screen", "-screen_file", f.screen,
		"-trace_stat", "-stf", f.stat, "-fd", "1",
	)
	if o.Calls > 0 {
		args = append(args, "-m", strconv.Itoa(o.Calls))
	}
	knames := make([]string, 0, len(keys))
	for k := range keys {
		knames = append(knames, k)
	}
	slices.Sort(knames)
	for _, k := range knames {
		args = append(args, "-key", k, keys[k])
	}
	args = append(args, o.Extra...)

	p, err := proc.Start(proc.Options{Path: "sipp", Args: args, Dir: dir, Log: f.stdout})
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	role := "uas"
	if client {
		role = "uac"
	}
	t.Logf("harness: sipp %s %s on %s:%d: sipp %s", role, name, LoopbackIP, o.LocalPort, shellJoin(args))
	s := &Sipp{t: t, name: role + " " + name, opts: o, p: p, dir: dir, port: o.LocalPort, files: f}
	t.Cleanup(func() { s.Stop() })
	return s
}

// Wait waits up to timeout for sipp to exit by itself (UAS with Calls > 0,
// or a UAC), stopping it when the timeout expires.
func (s *Sipp) Wait(timeout time.Duration) SippResult {
	if !s.p.Wait(timeout) {
		s.t.Logf("harness: sipp %s still running after %v, stopping it", s.name, timeout)
	}
	return s.Stop()
}

// Stop ends sipp (SIGINT, then SIGKILL after a grace period) and collects
// the result. Calling it again returns the same result.
func (s *Sipp) Stop() SippResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.result != nil {
		return *s.result
	}
	s.p.Stop(syscall.SIGINT, 3*time.Second)
	r := SippResult{
		ExitCode: s.p.ExitCode(),
		Messages: readFile(s.files.msg),
		Errors:   readFile(s.files.err),
		Stdout:   readFile(s.files.stdout),
		Screen:   readFile(s.files.screen),
		Dir:      s.dir,
	}
	if st, err := proc.ReadSippStats(s.files.stat); err == nil {
		r.Successful, r.Failed = st.Successful, st.Failed
	} else {
		r.Successful, r.Failed = parseScreen(r.Screen + "\n" + r.Stdout)
	}
	s.result = &r
	s.t.Logf("harness: sipp %s finished: %s", s.name, r.Summary())
	return r
}

var (
	screenSucc = regexp.MustCompile(`Successful call\s*\|\s*\d+\s*\|\s*(\d+)`)
	screenFail = regexp.MustCompile(`Failed call\s*\|\s*\d+\s*\|\s*(\d+)`)
)

// parseScreen reads the cumulative "Successful call"/"Failed call" counters
// of the last statistics screen in s.
func parseScreen(s string) (succ, fail int) {
	if m := screenSucc.FindAllStringSubmatch(s, -1); len(m) > 0 {
		succ, _ = strconv.Atoi(m[len(m)-1][1])
	}
	if m := screenFail.FindAllStringSubmatch(s, -1); len(m) > 0 {
		fail, _ = strconv.Atoi(m[len(m)-1][1])
	}
	return succ, fail
}

// OK reports whether sipp exited 0 with exactly calls successful and no
// failed calls.
func (r SippResult) OK(calls int) bool {
	return r.ExitCode == 0 && r.Successful == calls && r.Failed == 0
}

// Summary is a one-line description of the result.
func (r SippResult) Summary() string {
	return fmt.Sprintf("exit=%d successful=%d failed=%d (traces in %s)", r.ExitCode, r.Successful, r.Failed, r.Dir)
}

// Diagnostics returns the summary, the error log and the tails of the
// message trace and stdout, for test failure output.
func (r SippResult) Diagnostics() string {
	var b strings.Builder
	b.WriteString(r.Summary())
	if r.Errors != "" {
		b.WriteString("\n--- sipp errors:\n" + proc.Tail(r.Errors, 4000))
	}
	if r.Messages != "" {
		b.WriteString("\n--- sipp messages (tail):\n" + proc.Tail(r.Messages, 6000))
	}
	if r.Stdout != "" {
		b.WriteString("\n--- sipp stdout (tail):\n" + proc.Tail(r.Stdout, 1500))
	}
	return b.String()
}

// RequireNotReached stops s and fails t (Errorf) if any request reached it
// or any call failed (use it with uas_never.xml).
func RequireNotReached(t testing.TB, s *Sipp) SippResult {
	t.Helper()
	r := s.Stop()
	if n := r.ReceivedRequests(""); n != 0 || r.Failed != 0 || r.Successful != 0 {
		t.Errorf("sipp %s must not be reached, but it received %d request(s): %s", s.name, n, r.Diagnostics())
	}
	return r
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"\\$;&|<>()*?[]{}") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}

// RequireOK fails t (Errorf) unless r.OK(calls), printing diagnostics.
func RequireOK(t testing.TB, what string, r SippResult, calls int) {
	t.Helper()
	if !r.OK(calls) {
		t.Errorf("%s: want exit 0 and %d successful calls, got %s", what, calls, r.Diagnostics())
	}
}

// TracedMessage is one message of a -trace_msg log.
type TracedMessage struct {
	Received  bool      // false: sent by sipp
	StartLine string    // "INVITE sips:... SIP/2.0" or "SIP/2.0 200 OK"
	Text      string    // whole message
	Time      time.Time // when sipp logged it (zero if the trace has no time)
}

// IsRequest reports whether the message is a request.
func (m TracedMessage) IsRequest() bool { return !strings.HasPrefix(m.StartLine, "SIP/2.0 ") }

// Method is the request method ("" for responses).
func (m TracedMessage) Method() string {
	if !m.IsRequest() {
		return ""
	}
	method, _, _ := strings.Cut(m.StartLine, " ")
	return method
}

// StatusCode is the response status code (0 for requests).
func (m TracedMessage) StatusCode() int {
	if m.IsRequest() {
		return 0
	}
	f := strings.Fields(m.StartLine)
	if len(f) < 2 {
		return 0
	}
	c, _ := strconv.Atoi(f[1])
	return c
}

var (
	traceHeader = regexp.MustCompile(`^(?:UDP|TCP|TLS|SCTP) message (sent|received)`)
	// traceTime is the local time on sipp's separator line,
	// "----...---- 2006-01-02 15:04:05.000000".
	traceTime = regexp.MustCompile(`^-{20,} (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+)`)
)

// TracedMessages parses r.Messages.
func (r SippResult) TracedMessages() []TracedMessage {
	var msgs []TracedMessage
	var cur *TracedMessage
	var text strings.Builder
	var stamp time.Time
	flush := func() {
		if cur != nil {
			cur.Text = strings.TrimSpace(text.String())
			msgs = append(msgs, *cur)
		}
		cur = nil
		text.Reset()
	}
	sc := bufio.NewScanner(strings.NewReader(r.Messages))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(line, "-----------------------------------------------") {
			flush()
			stamp = time.Time{}
			if m := traceTime.FindStringSubmatch(line); m != nil {
				stamp, _ = time.ParseInLocation("2006-01-02 15:04:05.999999", m[1], time.Local)
			}
			continue
		}
		if m := traceHeader.FindStringSubmatch(line); m != nil && cur == nil {
			cur = &TracedMessage{Received: m[1] == "received", Time: stamp}
			continue
		}
		if cur == nil {
			continue
		}
		if cur.StartLine == "" {
			if strings.TrimSpace(line) == "" {
				continue
			}
			cur.StartLine = strings.TrimSpace(line)
		}
		text.WriteString(line + "\n")
	}
	flush()
	return msgs
}

// ReceivedRequests counts the requests with method ("" = any) that sipp
// received, e.g. to assert that no INVITE reached a UAS.
func (r SippResult) ReceivedRequests(method string) int {
	n := 0
	for _, m := range r.TracedMessages() {
		if m.Received && m.IsRequest() && (method == "" || m.Method() == method) {
			n++
		}
	}
	return n
}

// ReceivedResponses counts the responses with the status code (0 = any)
// that sipp received.
func (r SippResult) ReceivedResponses(code int) int {
	n := 0
	for _, m := range r.TracedMessages() {
		if m.Received && !m.IsRequest() && (code == 0 || m.StatusCode() == code) {
			n++
		}
	}
	return n
}
