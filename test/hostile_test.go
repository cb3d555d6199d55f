package test

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

// The hostile-input corpus lives in testdata/sip. Each file is one raw SIP
// message stored with LF line ends; the test turns every LF into CRLF (so the
// file is the message, byte for byte, apart from that and the placeholders
// below). Leading lines starting with "#" are directives, not part of the
// message:
//
//	# <what the file is>            first comment line: a description
//	# expect: <reaction> ...        accepted reactions (any of them)
//	# port: tls                     send on the 5061-like port without a
//	                                client certificate (default: mutual TLS)
//
// Reactions: a status code (the first final response), "close" (the SBC
// closed the connection without a final response), "none" (nothing came
// back within the wait and the connection stays usable), "wait" (nothing came
// back: the SBC waits for the rest of the message).
//
// Placeholders: [call_id] [branch] [from_tag] [to_tag] [local] (our ip:port)
// are fresh per send; [len] is the length of the body after expansion;
// [nul] [cr] [lf] are a NUL, a bare CR and a bare LF; [hex:XX] is the byte
// 0xXX; [fill:N] is N letters "a" and [fill0:N] N NUL bytes; a line starting
// with [repeatline:N] is repeated N times.

const corpusDir = "testdata/sip"

type corpusMsg struct {
	name   string
	what   string
	expect []string
	port   string // "mtls" (default) or "tls"
	tmpl   string
}

func loadCorpus(t testing.TB) []corpusMsg {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(corpusDir, "*.sip"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no corpus in %s: %v", corpusDir, err)
	}
	sort.Strings(paths)
	var out []corpusMsg
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m := corpusMsg{name: filepath.Base(p), port: "mtls"}
		s := string(b)
		for strings.HasPrefix(s, "#") {
			line, rest, _ := strings.Cut(s, "\n")
			s = rest
			line = strings.TrimSpace(strings.TrimPrefix(line, "#"))
			switch {
			case strings.HasPrefix(line, "expect:"):
				m.expect = strings.Fields(strings.TrimPrefix(line, "expect:"))
			case strings.HasPrefix(line, "port:"):
				m.port = strings.TrimSpace(strings.TrimPrefix(line, "port:"))
			case m.what == "":
				m.what = line
			}
		}
		if len(m.expect) == 0 || m.what == "" {
			t.Fatalf("%s: needs a description line and an '# expect:' line", m.name)
		}
		m.tmpl = s
		out = append(out, m)
	}
	return out
}

func freshVars(local string) harness.SIPVars {
	return harness.SIPVars{
		CallID:  "hostile-" + randHex(8),
		Branch:  sip.RFC3261BranchMagicCookie + "-h" + randHex(8),
		FromTag: randHex(6),
		ToTag:   randHex(6),
		Local:   local,
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sipConn is a raw TLS connection to the SBC with a SIP stream parser on
// its read side.
type sipConn struct {
	c      *tls.Conn
	local  string
	msgs   chan sip.Message
	closed chan struct{}
	mu     sync.Mutex
	err    error // why the read side ended
}

func dialSBC(addr string, conf *tls.Config) (*sipConn, error) {
	c, err := tls.DialWithDialer(&netDialer, "tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	sc := &sipConn{c: c, local: c.LocalAddr().String(), msgs: make(chan sip.Message, 64), closed: make(chan struct{})}
	go sc.read()
	return sc, nil
}

func (sc *sipConn) read() {
	defer close(sc.closed)
	par := sip.NewParser().NewSIPStream()
	buf := make([]byte, 65536)
	for {
		n, err := sc.c.Read(buf)
		if n > 0 {
			perr := par.ParseSIPStream(buf[:n], func(m sip.Message) {
				select {
				case sc.msgs <- m:
				default: // nobody listens: drop
				}
			})
			if perr != nil && !errors.Is(perr, sip.ErrParseSipPartial) {
				sc.setErr(fmt.Errorf("unparsable data from the SBC: %w", perr))
				return
			}
		}
		if err != nil {
			sc.setErr(err)
			return
		}
	}
}

func (sc *sipConn) setErr(err error) {
	sc.mu.Lock()
	sc.err = err
	sc.mu.Unlock()
}

func (sc *sipConn) isClosed() bool {
	select {
	case <-sc.closed:
		return true
	default:
		return false
	}
}

func (sc *sipConn) send(b []byte) error {
	_ = sc.c.SetWriteDeadline(time.Now().Add(3 * time.Second))
	_, err := sc.c.Write(b)
	return err
}

// awaitFinal waits for a final response (provisionals are skipped) until d
// passes or the connection closes. Requests from the SBC are answered 200
// (none is expected).
func (sc *sipConn) awaitFinal(d time.Duration) (res *sip.Response, closed bool) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	for {
		select {
		case m := <-sc.msgs:
			switch m := m.(type) {
			case *sip.Response:
				if m.StatusCode >= 200 {
					return m, false
				}
			case *sip.Request:
				if !m.IsAck() {
					_ = sc.send([]byte(sip.NewResponseFromRequest(m, 200, "OK", nil).String()))
				}
			}
		case <-sc.closed:
			// Messages parsed just before the close still count.
			for {
				select {
				case m := <-sc.msgs:
					if r, ok := m.(*sip.Response); ok && r.StatusCode >= 200 {
						return r, true
					}
				default:
					return nil, true
				}
			}
		case <-tm.C:
			return nil, false
		}
	}
}

// options sends an out-of-dialog OPTIONS and reports whether 200 came back.
func (sc *sipConn) options(tmpl string) bool {
	if err := sc.send(harness.RenderSIP(tmpl, freshVars(sc.local), 0, 0)); err != nil {
		return false
	}
	res, _ := sc.awaitFinal(2 * time.Second)
	return res != nil && res.StatusCode == 200
}

// hangUp ACKs a 2xx to an INVITE and sends BYE, so a bridged corpus call
// does not linger.
func (sc *sipConn) hangUp(res *sip.Response) error {
	ct := res.Contact()
	if ct == nil || res.To() == nil || res.From() == nil || res.CallID() == nil {
		return fmt.Errorf("2xx without Contact/To/From/Call-ID")
	}
	build := func(method string, seq int) []byte {
		return []byte(fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/TLS %s;branch=%s-h%s\r\nMax-Forwards: 70\r\n"+
			"From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
			method, ct.Address.String(), sc.local, sip.RFC3261BranchMagicCookie, randHex(8),
			res.From().Value(), res.To().Value(), res.CallID().Value(), seq, method))
	}
	if err := sc.send(build("ACK", int(res.CSeq().SeqNo))); err != nil {
		return err
	}
	if err := sc.send(build("BYE", int(res.CSeq().SeqNo)+1)); err != nil {
		return err
	}
	bye, _ := sc.awaitFinal(3 * time.Second)
	if bye == nil || bye.StatusCode != 200 {
		return fmt.Errorf("BYE not answered 200 (%v)", bye)
	}
	return nil
}

func (sc *sipConn) close() { _ = sc.c.Close() }

// outcome is what the SBC did with one corpus message.
type outcome struct {
	name     string
	expect   []string
	reaction string // "416", "close", "none", "wait", "488+close", ...
	usable   string // OPTIONS afterwards on the same connection: "yes", "no", "-"
	note     string
	ok       bool
}

type hostileEnv struct {
	addr    map[string]string // port kind -> 127.0.0.1:port
	conf    map[string]*tls.Config
	options string // template of valid-options.sip
}

// throw sends one corpus message on a fresh connection and judges the
// reaction.
func (e *hostileEnv) throw(m corpusMsg) outcome {
	o := outcome{name: m.name, expect: m.expect, usable: "-"}
	sc, err := dialSBC(e.addr[m.port], e.conf[m.port])
	if err != nil {
		o.reaction, o.note = "dial-failed", err.Error()
		return o
	}
	defer sc.close()
	v := freshVars(sc.local)
	msg := harness.RenderSIP(m.tmpl, v, 0, 0)
	werr := sc.send(msg)

	quiet := slices.Contains(m.expect, "none") || slices.Contains(m.expect, "wait")
	wait := 2 * time.Second
	if quiet && !hasCode(m.expect) {
		wait = 1500 * time.Millisecond // nothing may come: wait that long for it
	}
	res, closed := sc.awaitFinal(wait)
	switch {
	case res != nil:
		o.reaction = strconv.Itoa(res.StatusCode)
		if w := res.GetHeader("Warning"); w != nil {
			o.note = w.Value()
		}
		if res.StatusCode >= 200 && res.StatusCode < 300 && res.CSeq() != nil && res.CSeq().MethodName == sip.INVITE {
			if err := sc.hangUp(res); err != nil {
				o.note = "hang-up: " + err.Error()
			}
		}
	case closed:
		o.reaction = "close"
	case slices.Contains(m.expect, "wait"):
		o.reaction = "wait"
	default:
		o.reaction = "none"
	}
	if werr != nil && o.note == "" {
		o.note = "write: " + werr.Error()
	}
	// Probe the connection unless it is gone or the SBC waits for more bytes.
	if !sc.isClosed() && o.reaction != "wait" {
		if sc.options(e.options) {
			o.usable = "yes"
		} else {
			o.usable = "no"
		}
	}
	if res != nil && sc.isClosed() {
		o.reaction += "+close"
	}
	o.ok = judge(o, m.expect)
	return o
}

func hasCode(expect []string) bool {
	for _, x := range expect {
		if _, err := strconv.Atoi(x); err == nil {
			return true
		}
	}
	return false
}

// judge reports whether an outcome is one of the expected reactions.
func judge(o outcome, expect []string) bool {
	code, closedAfter := strings.CutSuffix(o.reaction, "+close")
	if !slices.Contains(expect, code) {
		return false
	}
	if closedAfter && !slices.Contains(expect, "close") {
		return false // answered, but the connection did not survive it
	}
	switch {
	case closedAfter, code == "close", code == "wait":
		return true
	default:
		return o.usable == "yes"
	}
}

var netDialer = net.Dialer{Timeout: 5 * time.Second}

func TestHostileInput(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	corpus := loadCorpus(t)
	start := time.Now()
	b, uas := newBed(t, bedOptions{uasScenario: "uas_basic.xml"})

	env := &hostileEnv{
		addr: map[string]string{
			"mtls": fmt.Sprintf("127.0.0.1:%d", b.mtlsPort),
			"tls":  fmt.Sprintf("127.0.0.1:%d", b.tlsPort),
		},
		conf: map[string]*tls.Config{},
	}
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(b.pki["caller.test"].CA)
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("CA: %v", err)
	}
	cert, err := tls.LoadX509KeyPair(b.pki["caller.test"].Cert, b.pki["caller.test"].Key)
	if err != nil {
		t.Fatal(err)
	}
	env.conf["mtls"] = &tls.Config{RootCAs: roots, ServerName: "sbc.test", MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	env.conf["tls"] = &tls.Config{RootCAs: roots, ServerName: "sbc.test", MinVersion: tls.VersionTLS12}
	for _, m := range corpus {
		if m.name == "valid-options.sip" {
			env.options = m.tmpl
		}
		if env.addr[m.port] == "" {
			t.Fatalf("%s: unknown port %q", m.name, m.port)
		}
	}
	if env.options == "" {
		t.Fatal("valid-options.sip is missing from the corpus")
	}

	// A call that must survive everything below.
	longLocal := b.caller(t, true, "caller.test")
	longDone := make(chan harness.SippResult, 1)
	go func() {
		longDone <- harness.RunSippUAC(t, harness.SippOptions{
			Scenario:   "uac_basic.xml",
			RemoteAddr: fmt.Sprintf("127.0.0.1:%d", longLocal),
			RURIHost:   "sbc.test",
			Service:    "alice",
			Calls:      1,
			Pause:      10 * time.Second,
			Timeout:    40 * time.Second,
		})
	}()
	if !b.sbc.WaitLog(`"event":"call_start"`, 10*time.Second) {
		t.Fatalf("the long call did not start")
	}
	time.Sleep(500 * time.Millisecond) // let it be answered

	// Throw the corpus, several connections at a time.
	outcomes := make([]outcome, len(corpus))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, m := range corpus {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			outcomes[i] = env.throw(m)
		}()
	}
	wg.Wait()
	select {
	case <-b.sbc.Done():
		t.Fatalf("edge-sbc died while the corpus was thrown at it")
	default:
	}

	var table strings.Builder
	fmt.Fprintf(&table, "\n%-40s %-16s %-12s %-6s %s\n", "file", "expected", "got", "usable", "verdict")
	for _, o := range outcomes {
		verdict := "ok"
		if !o.ok {
			verdict = "FAIL"
			t.Errorf("%s: expected %s, got %s (connection usable afterwards: %s) %s", o.name, strings.Join(o.expect, "|"), o.reaction, o.usable, o.note)
		}
		fmt.Fprintf(&table, "%-40s %-16s %-12s %-6s %s %s\n", o.name, strings.Join(o.expect, "|"), o.reaction, o.usable, verdict, o.note)
	}
	t.Logf("hostile corpus (%d files):%s", len(corpus), table.String())

	long := <-longDone
	if long.Successful != 1 {
		t.Errorf("the established call did not survive the corpus: %s", long.Diagnostics())
	}

	// A normal call still works.
	local := b.caller(t, true, "caller.test")
	res := b.uac(t, local, "uac_basic.xml", "sbc.test", 1)
	harness.RequireOK(t, "call after the corpus", res, 1)
	select {
	case <-b.sbc.Done():
		t.Fatalf("edge-sbc died")
	default:
	}

	// Nothing smuggled reached the callee: no injected header line and no
	// control bytes in what it received.
	ures := uas.Stop()
	seen := map[string]bool{}
	for _, m := range ures.TracedMessages() {
		if seen[m.Text] {
			continue // a retransmission
		}
		seen[m.Text] = true
		if !m.Received {
			continue
		}
		// RFC 3261 §18.3: over TLS every message carries Content-Length.
		if !regexp.MustCompile(`(?im)^(content-length|l)\s*:`).MatchString(m.Text) {
			t.Errorf("the callee received %q without Content-Length:\n%s", m.StartLine, m.Text)
		}
		sc := bufio.NewScanner(strings.NewReader(m.Text))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(strings.ToLower(line), "x-injected") {
				t.Errorf("an injected header reached the callee: %q in\n%s", line, m.Text)
			}
			if i := strings.IndexFunc(line, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\r' || r == 0x7f }); i >= 0 {
				t.Errorf("a control byte %q reached the callee in %q", line[i], line)
			}
		}
	}
	t.Logf("hostile test took %s", time.Since(start).Round(time.Millisecond))
}

// TestCorpusREADME keeps testdata/README.md in step with the corpus: every
// file has a row and the row's expected reaction is the file's.
func TestCorpusREADME(t *testing.T) {
	readme, err := os.ReadFile("testdata/README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	row := regexp.MustCompile("^\\|\\s*`([^`]+\\.sip)`\\s*\\|\\s*([^|]+?)\\s*\\|")
	for _, line := range strings.Split(string(readme), "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			rows[m[1]] = m[2]
		}
	}
	for _, m := range loadCorpus(t) {
		got, ok := rows[m.name]
		if !ok {
			t.Errorf("testdata/README.md has no row for %s", m.name)
			continue
		}
		if want := readmeExpect(m.expect); got != want {
			t.Errorf("testdata/README.md: %s says %q, the file says %q", m.name, got, want)
		}
		delete(rows, m.name)
	}
	for name := range rows {
		t.Errorf("testdata/README.md lists %s, which is not in %s", name, corpusDir)
	}
}

// readmeExpect is how an expect list is written in the README table.
func readmeExpect(expect []string) string {
	out := make([]string, len(expect))
	for i, x := range expect {
		switch x {
		case "close":
			out[i] = "closed"
		case "none", "wait":
			out[i] = "dropped (" + x + ")"
		default:
			out[i] = x
		}
	}
	return strings.Join(out, " or ")
}
