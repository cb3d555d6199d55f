package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// The tests in this file run the real edge-sbc binary, built once into a
// temporary directory, and talk to it with signals, files and sockets.

var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		_ = os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// sbcBinary builds ./cmd/edge-sbc (this package) once per test run.
func sbcBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		binary.dir, binary.err = os.MkdirTemp("", "edge-sbc-cmd-test")
		if binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "edge-sbc")
		out, err := exec.Command("go", "build", "-o", binary.path, ".").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// proc is a running edge-sbc whose log (stderr) is collected.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs strings.Builder
	grew chan struct{} // signalled on each log line
	done chan struct{} // closed when the process has exited
	err  error         // exit status, once done
}

// startProc starts the binary with args (and extra environment) without
// waiting for anything; it is killed at cleanup if still running.
func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startCmd(t, env, sbcBinary(t), args...)
}

// startCmd is startProc for another command line (one that execs edge-sbc).
func startCmd(t *testing.T, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, grew: make(chan struct{}, 1), done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.grew <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		<-lines
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("edge-sbc log:\n%s", p.Logs())
		}
	})
	return p
}

func (p *proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// waitLog waits until the log contains s; it fails the test on timeout or
// if the process exits first.
func (p *proc) waitLog(s string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.After(timeout)
	for !strings.Contains(p.Logs(), s) {
		select {
		case <-p.grew:
		case <-p.done:
			if strings.Contains(p.Logs(), s) {
				return
			}
			p.t.Fatalf("edge-sbc exited (%v) before logging %q", p.err, s)
		case <-deadline:
			p.t.Fatalf("edge-sbc did not log %q within %s", s, timeout)
		}
	}
}

func (p *proc) signal(s syscall.Signal) {
	p.t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, s); err != nil {
		p.t.Fatalf("kill %s: %v", s, err)
	}
}

// wait waits for the exit and returns its status and how long it took.
func (p *proc) wait(timeout time.Duration) (time.Duration, error) {
	p.t.Helper()
	start := time.Now()
	select {
	case <-p.done:
		return time.Since(start), p.err
	case <-time.After(timeout):
		p.t.Fatalf("edge-sbc still running %s later", timeout)
		return 0, nil
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// fixture is a dev PKI (sbc.test, outside.test, inside.test, all with IP
// 127.0.0.1) and free loopback ports for one SBC.
type fixture struct {
	dir     string
	pki     tlsconf.DevFiles
	listen  string // SIPS listener, mutual TLS
	callee  string // where the "inside" trunk is reached
	mediaLo int
	cdr     string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	pki, err := tlsconf.WriteDevPKI(filepath.Join(dir, "pki"), []string{"sbc.test", "outside.test", "inside.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, pki: pki, listen: freeTCP(t), callee: freeTCP(t), cdr: filepath.Join(dir, "cdr.jsonl")}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.mediaLo = pc.LocalAddr().(*net.UDPAddr).Port &^ 1
	_ = pc.Close()
	if f.mediaLo < 1024 || f.mediaLo+20 > 65535 {
		f.mediaLo = 41000
	}
	return f
}

func freeTCP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// yaml renders the SBC configuration; extra is appended (more sections).
func (f *fixture) yaml(extra string) string {
	us := f.pki.Leaves["sbc.test"]
	return fmt.Sprintf(`node: {fqdn: sbc.test}
tls: {cert: %q, key: %q, ca: %q}
listen:
  - {addr: %q, client_auth: required}
trunks:
  - {name: outside, identity: outside.test, allow_plain_rtp: true}
  - {name: inside, uri: "sips:%s", identity: inside.test, allow_plain_rtp: true}
routes:
  - {from: outside, to: inside}
media: {bind: 127.0.0.1, port_range: "%d-%d"}
cdr: {file: %q}
log: {level: info, format: json}
`, us.Cert, us.Key, f.pki.CA, f.listen, f.callee, f.mediaLo, f.mediaLo+19, f.cdr) + extra
}

func (f *fixture) writeConfig(t *testing.T, extra string) string {
	t.Helper()
	path := filepath.Join(f.dir, "edge-sbc.yaml")
	if err := os.WriteFile(path, []byte(f.yaml(extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// start runs the SBC on the config at path and waits until it is ready.
func (f *fixture) start(t *testing.T, path string, env ...string) *proc {
	t.Helper()
	p := startProc(t, env, "run", "--config", path)
	p.waitLog("edge-sbc ready", 10*time.Second)
	return p
}

// TestReloadRefusedForStartOnlyKeys: SIGHUP after media.bind changed is
// refused, naming media.bind (the relay keeps its sockets, so SDP must not
// advertise the new address); a later change of a live key is applied.
func TestReloadRefusedForStartOnlyKeys(t *testing.T) {
	f := newFixture(t)
	path := f.writeConfig(t, "")
	p := f.start(t, path)

	// media.bind and media.timeout changed in the file.
	moved := strings.Replace(f.yaml(""), "bind: 127.0.0.1,", "bind: 127.0.0.2, timeout: 10s,", 1)
	if err := os.WriteFile(path, []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	p.waitLog("reload refused: start-only keys changed: media.bind, media.timeout; restart needed", 5*time.Second)
	if strings.Contains(p.Logs(), "configuration and certificates applied") {
		t.Fatalf("a refused reload was reported as applied")
	}

	// Back to the running media settings, with a live change.
	if err := os.WriteFile(path, []byte(strings.Replace(f.yaml(""), "level: info", "level: debug", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	p.waitLog("reload: configuration and certificates applied", 5*time.Second)
	if !strings.Contains(p.Logs(), `"log_level":"debug"`) {
		t.Errorf("the applied reload does not report the new log level")
	}
	p.signal(syscall.SIGTERM)
	if _, err := p.wait(10 * time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// TestSIGHUPDuringStartup: a SIGHUP that arrives while the SBC is still
// starting (here: blocked reading its configuration from a FIFO) neither
// kills it nor is lost: once started it reloads.
func TestSIGHUPDuringStartup(t *testing.T) {
	f := newFixture(t)
	fifo := filepath.Join(f.dir, "edge-sbc.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, nil, "run", "--config", fifo)

	// Opening the FIFO for writing returns once the SBC opened it to read
	// its configuration: it is then inside start-up.
	// feed writes the configuration into the FIFO once the SBC reads it;
	// with hup, a SIGHUP is sent first, while the SBC waits for the file.
	feed := func(hup bool) {
		t.Helper()
		opened := make(chan *os.File, 1)
		go func() {
			w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
			if err != nil {
				close(opened)
				return
			}
			opened <- w
		}()
		select {
		case w, ok := <-opened:
			if !ok {
				t.Fatal("cannot open the FIFO")
			}
			defer w.Close()
			if p.exited() {
				t.Fatalf("edge-sbc exited: %v", p.err)
			}
			if hup {
				p.signal(syscall.SIGHUP)
				time.Sleep(300 * time.Millisecond) // Go's default action for SIGHUP is to exit at once
				if p.exited() {
					t.Fatalf("SIGHUP during start-up ended edge-sbc: %v", p.err)
				}
			}
			if _, err := io.WriteString(w, f.yaml("")); err != nil {
				t.Fatal(err)
			}
		case <-p.done:
			t.Fatalf("edge-sbc exited before reading its configuration: %v", p.err)
		case <-time.After(10 * time.Second):
			// Unblock the opener so the goroutine ends.
			if r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
				_ = r.Close()
			}
			t.Fatal("edge-sbc never opened its configuration")
		}
	}
	feed(true)
	p.waitLog("edge-sbc ready", 10*time.Second)
	p.waitLog("SIGHUP received during start-up: reloading now", 5*time.Second)

	// The queued reload reads the configuration again: from the FIFO.
	feed(false)
	p.waitLog("reload: configuration and certificates applied", 5*time.Second)
	p.signal(syscall.SIGTERM)
	if _, err := p.wait(10 * time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if n := strings.Count(p.Logs(), "reload: configuration and certificates applied"); n != 1 {
		t.Errorf("%d reloads applied, want 1", n)
	}
}

// TestSecondSIGTERMEndsDrain: with a call in progress and a 60s drain, the
// first SIGTERM drains (a SIGHUP meanwhile is ignored), the second ends the
// call with BYE on both legs at once, writes its CDR and exits 0.
func TestSecondSIGTERMEndsDrain(t *testing.T) {
	f := newFixture(t)
	callee := newCallee(t, f)
	p := f.start(t, f.writeConfig(t, "shutdown: {drain_timeout: 60s}\n"))
	caller := dialCaller(t, f)
	caller.call(t)
	p.waitLog(`"event":"call_answer"`, 5*time.Second)

	p.signal(syscall.SIGTERM)
	p.waitLog("shutting down", 5*time.Second)
	p.signal(syscall.SIGHUP)
	p.waitLog("reload ignored: shutting down", 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	if p.exited() {
		t.Fatalf("exited during the drain although a call was up: %v", p.err)
	}

	p.signal(syscall.SIGTERM)
	took, err := p.wait(8 * time.Second)
	if err != nil {
		t.Fatalf("exit: %v", err)
	}
	if took > 6*time.Second {
		t.Errorf("exit took %s after the second SIGTERM", took)
	}
	p.waitLog("second stop signal during drain: ending the remaining calls with BYE now", time.Second)
	p.waitLog("edge-sbc stopped", time.Second)
	for name, got := range map[string]<-chan struct{}{"caller": caller.bye, "callee": callee.bye} {
		select {
		case <-got:
		case <-time.After(time.Second):
			t.Errorf("%s got no BYE", name)
		}
	}
	cdr, rerr := os.ReadFile(f.cdr)
	if rerr != nil {
		t.Fatalf("CDR file: %v", rerr)
	}
	if n := strings.Count(string(cdr), "\n"); n != 1 || !strings.Contains(string(cdr), `"hangup_by":"sbc"`) || !strings.Contains(string(cdr), `"reason":"shutdown"`) {
		t.Fatalf("CDR file (%d lines), want one record of a call ended by the SBC at shutdown:\n%s", n, cdr)
	}
}

// sipPeer reads SIP messages from a TLS connection.
type sipPeer struct {
	conn net.Conn
	msgs chan sip.Message
	bye  chan struct{} // closed when a BYE arrived (and was answered)
	once sync.Once
}

func newSIPPeer(conn net.Conn) *sipPeer {
	s := &sipPeer{conn: conn, msgs: make(chan sip.Message, 16), bye: make(chan struct{})}
	go s.read()
	return s
}

// read parses messages; BYE is answered 200 here, the rest is queued.
func (s *sipPeer) read() {
	defer close(s.msgs)
	ps := sip.NewParser().NewSIPStream()
	defer ps.Close()
	buf := make([]byte, 8192)
	for {
		n, err := s.conn.Read(buf)
		if n > 0 {
			_, _ = ps.Write(buf[:n])
			for {
				msg, _, perr := ps.ParseNext()
				if perr != nil {
					break
				}
				if req, ok := msg.(*sip.Request); ok && req.Method == sip.BYE {
					_, _ = io.WriteString(s.conn, sip.NewResponseFromRequest(req, 200, "OK", nil).String())
					s.once.Do(func() { close(s.bye) })
					continue
				}
				s.msgs <- msg
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *sipPeer) next(t *testing.T, what string) sip.Message {
	t.Helper()
	select {
	case m, ok := <-s.msgs:
		if !ok {
			t.Fatalf("connection ended waiting for %s", what)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s", what)
		return nil
	}
}

func leafTLS(t *testing.T, lf tlsconf.LeafFiles) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(lf.Cert, lf.Key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func roots(t *testing.T, ca string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool
}

func sdp(port int) string {
	return fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n", port)
}

// newCallee answers the SBC's INVITE on f.callee (trunk "inside") with 200
// and SDP, and later BYE with 200.
func newCallee(t *testing.T, f *fixture) *sipPeer {
	t.Helper()
	ln, err := tls.Listen("tcp", f.callee, &tls.Config{Certificates: []tls.Certificate{leafTLS(t, f.pki.Leaves["inside.test"])}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	peer := &sipPeer{bye: make(chan struct{})}
	ready := make(chan *sipPeer, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { _ = c.Close() })
		s := newSIPPeer(c)
		ready <- s
		for m := range s.msgs {
			req, ok := m.(*sip.Request)
			if !ok || req.Method != sip.INVITE {
				continue // ACK
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", []byte(sdp(f.mediaLo+40)))
			res.AppendHeader(sip.NewHeader("Contact", "<sips:alice@"+f.callee+";transport=tls>"))
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			_, _ = io.WriteString(c, res.String())
		}
	}()
	// The BYE channel of the accepted connection, once there is one.
	go func() {
		select {
		case s := <-ready:
			<-s.bye
			close(peer.bye)
		case <-time.After(30 * time.Second):
		}
	}()
	return peer
}

// caller is the "outside" trunk calling in over mutual TLS.
type caller struct {
	*sipPeer
	local string
}

func dialCaller(t *testing.T, f *fixture) *caller {
	t.Helper()
	c, err := tls.Dial("tcp", f.listen, &tls.Config{
		Certificates: []tls.Certificate{leafTLS(t, f.pki.Leaves["outside.test"])},
		RootCAs:      roots(t, f.pki.CA), ServerName: "sbc.test", MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &caller{sipPeer: newSIPPeer(c), local: c.LocalAddr().String()}
}

// invite sends an INVITE for sips:alice@sbc.test (Call-ID callID, From
// tag caller-<callID>) and returns its final response.
func (c *caller) invite(t *testing.T, callID string) *sip.Response {
	t.Helper()
	body := sdp(40000)
	msg := "INVITE sips:alice@sbc.test SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS " + c.local + ";branch=z9hG4bK-" + callID + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sips:bob@outside.test>;tag=caller-" + callID + "\r\n" +
		"To: <sips:alice@sbc.test>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sips:bob@" + c.local + ";transport=tls>\r\n" +
		"Content-Type: application/sdp\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	if _, err := io.WriteString(c.conn, msg); err != nil {
		t.Fatal(err)
	}
	for {
		if res, ok := c.next(t, "response to INVITE").(*sip.Response); ok && !res.IsProvisional() {
			return res
		}
	}
}

// call sends an INVITE to sips:alice@sbc.test, waits for the 200 and ACKs.
func (c *caller) call(t *testing.T) {
	t.Helper()
	const callID = "drain-test-1"
	ok := c.invite(t, callID)
	if ok.StatusCode != 200 {
		t.Fatalf("INVITE answered %d %s", ok.StatusCode, ok.Reason)
	}
	target := "sips:sbc.test"
	if ct := ok.Contact(); ct != nil {
		target = ct.Address.String()
	}
	toTag, _ := ok.To().Params.Get("tag")
	ack := "ACK " + target + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS " + c.local + ";branch=z9hG4bK-drain-ack\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sips:bob@outside.test>;tag=caller-" + callID + "\r\n" +
		"To: <sips:alice@sbc.test>;tag=" + toTag + "\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 ACK\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := io.WriteString(c.conn, ack); err != nil {
		t.Fatal(err)
	}
}

// TestWatchdogStopsWhenSIPAcceptLoopDies: under systemd (NOTIFY_SOCKET,
// WATCHDOG_USEC) the SBC pings WATCHDOG=1; when the SIP accept loop dies
// (here: accept fails with EMFILE under a 16-descriptor limit; the SIP
// layer retries with a backoff, every attempt failing), the pings stop
// although the main loop runs on, so systemd would restart it.
func TestWatchdogStopsWhenSIPAcceptLoopDies(t *testing.T) {
	notes := notifySocket(t)
	f := newFixture(t)
	// The 16 descriptors are counted for SIP: the kernel fast path (its
	// program, maps and links, when run as root) is off.
	path := filepath.Join(t.TempDir(), "edge-sbc.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(f.yaml(""), "media: {", "media: {fastpath: off, ", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startCmd(t, []string{"WATCHDOG_USEC=400000"}, "sh", "-c", `ulimit -n 16 && exec "$0" "$@"`, sbcBinary(t), "run", "--config", path)
	p.waitLog("edge-sbc ready", 10*time.Second)
	want := func(msg string) {
		t.Helper()
		deadline := time.After(3 * time.Second)
		for {
			select {
			case m := <-notes:
				if strings.Contains(m, msg) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s on the notify socket", msg)
			}
		}
	}
	want("READY=1")
	want("WATCHDOG=1")

	// Exhaust the descriptors with connections the SBC accepts.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := 0; i < 12 && !strings.Contains(p.Logs(), "accept failed"); i++ {
		c, err := net.Dial("tcp", f.listen)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		time.Sleep(50 * time.Millisecond)
	}
	p.waitLog("accept failed", 3*time.Second)
	p.waitLog("watchdog: not alive", 3*time.Second)
	if !strings.Contains(p.Logs(), "accepting connections fails") {
		t.Errorf("the watchdog log does not say accepting connections fails")
	}
	// Pings sent before the outage was seen may still be queued.
	for drained := false; !drained; {
		select {
		case <-notes:
		default:
			drained = true
		}
	}
	select {
	case m := <-notes:
		if strings.Contains(m, "WATCHDOG=1") {
			t.Fatalf("WATCHDOG=1 sent while nothing accepts SIP connections")
		}
	case <-time.After(1500 * time.Millisecond):
	}
	if p.exited() {
		t.Fatalf("edge-sbc exited: %v", p.err)
	}
}
