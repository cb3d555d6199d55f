package test

// Fault injection: what the SBC does when a peer's TCP connection is reset
// or killed mid-call, when its DNS server does not answer, when a target
// swallows packets, when the CDR file cannot be written, and when the
// process is killed.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

// byeWithin is how fast both legs must be ended after a connection died:
// the SBC sees the end on its next read, so this is mostly scheduling.
const byeWithin = 1500 * time.Millisecond

// ---------------------------------------------------------------------------
// A callee written in Go: TLS with client certificates required, answers
// INVITEs 100/180/200 with an SDP answer, and can reset its connection (TCP
// RST via SO_LINGER 0) a moment after the ACK.

type goCallee struct {
	t       *testing.T
	ln      net.Listener
	port    int
	rtp     net.PacketConn // the port put in the SDP answer
	conf    *tls.Config
	resetIn time.Duration // > 0: RST the connection this long after the ACK

	acks    chan time.Time // one per ACK received
	resets  chan time.Time // one per connection reset
	byes    chan time.Time // one per BYE received
	invites chan time.Time // one per INVITE received

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startGoCallee(t *testing.T, port int, files harness.TLSFiles, resetIn time.Duration) *goCallee {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in " + files.CA)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(harness.LoopbackIP, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("go callee: %v", err)
	}
	rtp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &goCallee{
		t: t, ln: ln, port: ln.Addr().(*net.TCPAddr).Port, rtp: rtp, resetIn: resetIn,
		conf: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
		},
		acks: make(chan time.Time, 16), resets: make(chan time.Time, 16),
		byes: make(chan time.Time, 16), invites: make(chan time.Time, 16),
		conns: map[net.Conn]bool{},
	}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(c.close)
	return c
}

func (c *goCallee) close() {
	_ = c.ln.Close()
	c.mu.Lock()
	for conn := range c.conns {
		_ = conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
	_ = c.rtp.Close()
}

func (c *goCallee) accept() {
	defer c.wg.Done()
	for {
		raw, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.conns[raw] = true
		c.mu.Unlock()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer func() {
				c.mu.Lock()
				delete(c.conns, raw)
				c.mu.Unlock()
				_ = raw.Close()
			}()
			c.serve(raw.(*net.TCPConn))
		}()
	}
}

func (c *goCallee) logf(format string, args ...any) {
	// t.Logf panics after the test ended; connections are closed by then
	// but a last read error may still be reported.
	defer func() { _ = recover() }()
	c.t.Logf("go callee: "+format, args...)
}

func (c *goCallee) serve(raw *net.TCPConn) {
	tc := tls.Server(raw, c.conf)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.logf("handshake: %v", err)
		return
	}
	_ = tc.SetDeadline(time.Time{})
	peer := ""
	if cs := tc.ConnectionState(); len(cs.PeerCertificates) > 0 {
		peer = strings.Join(cs.PeerCertificates[0].DNSNames, ",")
	}
	c.logf("TLS connection from %s (certificate %s)", raw.RemoteAddr(), peer)
	var wmu sync.Mutex
	send := func(m sip.Message) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = tc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(tc, m.String()); err != nil {
			c.logf("write: %v", err)
		}
	}
	parser := sip.NewParser()
	br := bufio.NewReader(tc)
	tag := fmt.Sprintf("gocallee%d", time.Now().UnixNano()%1000000)
	for {
		data, err := readSIPMessage(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.logf("read: %v", err)
			}
			return
		}
		msg, err := parser.ParseSIP(data)
		if err != nil {
			c.logf("parse: %v\n%s", err, data)
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			continue // responses (to nothing we sent) are ignored
		}
		switch req.Method {
		case sip.INVITE:
			note(c.invites, time.Now())
			send(sip.NewResponseFromRequest(req, 100, "Trying", nil))
			ringing := sip.NewResponseFromRequest(req, 180, "Ringing", nil)
			ringing.To().Params.Add("tag", tag)
			ringing.AppendHeader(c.contact())
			send(ringing)
			ok := sip.NewResponseFromRequest(req, 200, "OK", sdpAnswer(req.Body(), c.rtp.LocalAddr().(*net.UDPAddr).Port))
			ok.To().Params.Add("tag", tag)
			ok.AppendHeader(c.contact())
			ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			send(ok)
		case sip.ACK:
			note(c.acks, time.Now())
			if c.resetIn > 0 {
				time.Sleep(c.resetIn)
				if err := raw.SetLinger(0); err != nil {
					c.logf("SetLinger: %v", err)
				}
				at := time.Now()
				_ = raw.Close() // SO_LINGER 0: RST, not FIN
				note(c.resets, at)
				c.logf("connection reset (RST) at %s", at.Format("15:04:05.000000"))
				return
			}
		case sip.BYE:
			note(c.byes, time.Now())
			send(sip.NewResponseFromRequest(req, 200, "OK", nil))
		default:
			send(sip.NewResponseFromRequest(req, 200, "OK", nil))
		}
	}
}

// note records an event without ever blocking the callee (the channels
// hold more events than a test produces).
func note(ch chan time.Time, at time.Time) {
	select {
	case ch <- at:
	default:
	}
}

func (c *goCallee) contact() sip.Header {
	params := sip.NewParams()
	params.Add("transport", "tls")
	return &sip.ContactHeader{Address: sip.Uri{
		Scheme: "sips", User: "callee", Host: harness.LoopbackIP, Port: c.port, UriParams: params,
	}}
}

// readSIPMessage returns the next message of a SIP stream (RFC 3261 §18.3
// framing by Content-Length), skipping CRLF keepalives.
func readSIPMessage(br *bufio.Reader) ([]byte, error) {
	var head bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if head.Len() == 0 && strings.TrimRight(line, "\r\n") == "" {
			continue // keepalive (RFC 5626 §4.4.1) or stray CRLF
		}
		head.WriteString(line)
		if strings.TrimRight(line, "\r\n") == "" {
			break
		}
		if head.Len() > 64*1024 {
			return nil, errors.New("header too long")
		}
	}
	n := 0
	for _, l := range strings.Split(head.String(), "\n") {
		name, val, ok := strings.Cut(l, ":")
		if ok && (strings.EqualFold(strings.TrimSpace(name), "Content-Length") || strings.TrimSpace(name) == "l") {
			n, _ = strconv.Atoi(strings.TrimSpace(val))
		}
	}
	if n < 0 || n > 64*1024 {
		return nil, fmt.Errorf("bad Content-Length %d", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	return append(head.Bytes(), body...), nil
}

var mLine = regexp.MustCompile(`(?m)^m=audio \d+ (\S+)`)

// sdpAnswer answers an audio offer with PCMU + telephone-event, on the
// offer's transport (with an SDES key when it is SRTP).
func sdpAnswer(offer []byte, port int) []byte {
	proto := "RTP/AVP"
	if m := mLine.FindSubmatch(offer); m != nil {
		proto = string(m[1])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=callee 3003 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n")
	fmt.Fprintf(&b, "m=audio %d %s 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n", port, proto)
	if strings.Contains(proto, "SAVP") {
		b.WriteString("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:OnM15+1lehlXLKGT5DmR1zPBKt9Zw2leNKbjRGeE\r\n")
	}
	b.WriteString("a=ptime:20\r\na=sendrecv\r\n")
	return []byte(b.String())
}

// ---------------------------------------------------------------------------
// Helpers: sipp trace timestamps, CDR lines, channels with a deadline.

type timedMessage struct {
	at       time.Time
	received bool
	start    string // start line
}

var traceStamp = regexp.MustCompile(`^-{20,}\s+(\d{4}-\d{2}-\d{2})\s+(\d{2}:\d{2}:\d{2}\.\d+)`)

// timedMessages reads the -trace_msg log with the timestamp sipp writes
// on the separator line before each message.
func timedMessages(t *testing.T, r harness.SippResult) []timedMessage {
	t.Helper()
	var out []timedMessage
	var cur *timedMessage
	sc := bufio.NewScanner(strings.NewReader(r.Messages))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if m := traceStamp.FindStringSubmatch(line); m != nil {
			at, err := time.ParseInLocation("2006-01-02 15:04:05.999999", m[1]+" "+m[2], time.Local)
			if err != nil {
				t.Fatalf("trace timestamp %q: %v", line, err)
			}
			out = append(out, timedMessage{at: at})
			cur = &out[len(out)-1]
			continue
		}
		if cur == nil {
			continue
		}
		if strings.Contains(line, "message received") {
			cur.received = true
			continue
		}
		if strings.Contains(line, "message sent") {
			continue
		}
		if cur.start == "" && strings.TrimSpace(line) != "" {
			cur.start = strings.TrimSpace(line)
		}
	}
	return out
}

// traceTime returns when sipp sent/received the first message whose start
// line begins with prefix.
func traceTime(t *testing.T, r harness.SippResult, received bool, prefix string) time.Time {
	t.Helper()
	for _, m := range timedMessages(t, r) {
		if m.received == received && strings.HasPrefix(m.start, prefix) {
			return m.at
		}
	}
	t.Fatalf("no %q (received=%v) in the sipp trace:\n%s", prefix, received, r.Diagnostics())
	return time.Time{}
}

func recvWithin(t *testing.T, ch <-chan time.Time, d time.Duration, what string) time.Time {
	t.Helper()
	select {
	case at := <-ch:
		return at
	case <-time.After(d):
		t.Fatalf("%s: nothing within %s", what, d)
		return time.Time{}
	}
}

// callEnds returns the call_end CDR lines of an SBC log.
func callEnds(logs string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, `"event":"call_end"`) {
			continue
		}
		m := map[string]any{}
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func waitCallEnd(t *testing.T, sbc *harness.SBC, reason, by string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, c := range callEnds(sbc.Logs()) {
			if c["reason"] == reason {
				if c["hangup_by"] != by {
					t.Errorf("CDR hangup_by = %v, want %s: %v", c["hangup_by"], by, c)
				}
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call_end CDR with reason %q; CDRs: %v", reason, callEnds(sbc.Logs()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCallEnds waits until the SBC logged n call_end lines (the last
// BYE toward the callee is answered before the CDR is written).
func waitCallEnds(t *testing.T, sbc *harness.SBC, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(callEnds(sbc.Logs())) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d call_end lines, want %d", len(callEnds(sbc.Logs())), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// 1. A peer's TCP connection dies mid-call.

func TestFaultConnectionLostMidCall(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Run("callee resets its connection: caller gets BYE", func(t *testing.T) {
		b, _ := newBed(t, bedOptions{})
		callee := startGoCallee(t, b.calleeTL, b.pki["callee.test"], 300*time.Millisecond)
		local := b.caller(t, true, "caller.test")
		res := harness.RunSippUAC(t, harness.SippOptions{
			Scenario: "uac_wait_bye.xml", RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local),
			RURIHost: "sbc.test", Service: "alice", Calls: 1, Timeout: 10 * time.Second,
		})
		harness.RequireOK(t, "caller waiting for BYE", res, 1)
		resetAt := recvWithin(t, callee.resets, time.Second, "callee reset")
		byeAt := traceTime(t, res, true, "BYE ")
		d := byeAt.Sub(resetAt)
		t.Logf("callee RST at %s, caller received BYE at %s: %s later",
			resetAt.Format("15:04:05.000000"), byeAt.Format("15:04:05.000000"), d)
		if d < 0 || d > byeWithin {
			t.Errorf("caller's BYE %s after the callee's reset, want within %s", d, byeWithin)
		}
		cdr := waitCallEnd(t, b.sbc, "connection lost", "b")
		t.Logf("CDR: reason=%q hangup_by=%v duration_s=%v", cdr["reason"], cdr["hangup_by"], cdr["duration_s"])
	})

	t.Run("caller's connection killed: callee gets BYE", func(t *testing.T) {
		b, _ := newBed(t, bedOptions{})
		callee := startGoCallee(t, b.calleeTL, b.pki["callee.test"], 0)
		resCh := make(chan harness.SippResult, 1)
		started := false
		defer func() {
			if !started {
				return
			}
			select { // the caller runs with t: it must end before t does
			case r := <-resCh:
				t.Logf("caller (connection cut, expected to fail): %s", r.Summary())
			case <-time.After(25 * time.Second):
				t.Error("sipp caller did not end")
			}
		}()
		var killAt time.Time
		// The client proxy lives in a subtest: its cleanup (SIGTERM to the
		// socat process group, forked children included) runs when the
		// subtest returns, mid-call.
		t.Run("call up, then the caller's socat is stopped", func(st *testing.T) {
			local := b.caller(st, true, "caller.test")
			started = true
			go func() {
				resCh <- harness.RunSippUAC(t, harness.SippOptions{
					Scenario: "uac_wait_bye.xml", RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local),
					RURIHost: "sbc.test", Service: "alice", Calls: 1, Timeout: 8 * time.Second,
				})
			}()
			recvWithin(st, callee.acks, 10*time.Second, "ACK at the callee")
			time.Sleep(300 * time.Millisecond)
			killAt = time.Now()
		})
		if killAt.IsZero() {
			t.FailNow()
		}
		byeAt := recvWithin(t, callee.byes, 5*time.Second, "BYE at the callee")
		d := byeAt.Sub(killAt)
		t.Logf("caller proxy stopped at %s, callee received BYE at %s: %s later",
			killAt.Format("15:04:05.000000"), byeAt.Format("15:04:05.000000"), d)
		if d > byeWithin {
			t.Errorf("callee's BYE %s after the caller's connection died, want within %s", d, byeWithin)
		}
		cdr := waitCallEnd(t, b.sbc, "connection lost", "a")
		t.Logf("CDR: reason=%q hangup_by=%v duration_s=%v", cdr["reason"], cdr["hangup_by"], cdr["duration_s"])
	})
}

// TestFaultByeThenCloseReason: a caller that hangs up and closes its
// connection as soon as its BYE is answered (sipp does at exit, so do many
// clients) ended the call by BYE; the CDR must not say "connection lost".
// The race is narrow, so the pattern is repeated by parallel callers.
func TestFaultByeThenCloseReason(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, _ := newBed(t, bedOptions{uasScenario: "uas_basic.xml"})
	local := b.caller(t, true, "caller.test")
	const workers, each = 4, 25
	const runs = workers * each
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// One call per sipp run: sipp closes its connection (and
				// socat the TLS one) right after the 200 for its BYE.
				res := harness.RunSippUAC(t, harness.SippOptions{
					Scenario: "uac_basic.xml", RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local),
					RURIHost: "sbc.test", Service: "alice", Calls: 1, Pause: 10 * time.Millisecond, Timeout: 10 * time.Second,
				})
				harness.RequireOK(t, fmt.Sprintf("caller %d, call %d", w+1, i+1), res, 1)
			}
		}()
	}
	wg.Wait()
	waitCallEnds(t, b.sbc, runs)
	reasons := map[string]int{}
	for _, c := range callEnds(b.sbc.Logs()) {
		reasons[fmt.Sprintf("%v/%v", c["hangup_by"], c["reason"])]++
	}
	t.Logf("CDR hangup_by/reason of %d calls hung up by the caller's BYE: %v", runs, reasons)
	if reasons["a/bye"] != runs {
		t.Errorf("%d of %d calls ended by the caller's BYE (then connection close) were recorded otherwise: %v",
			runs-reasons["a/bye"], runs, reasons)
	}
}

// ---------------------------------------------------------------------------
// SBC configuration for the DNS and failover faults.

// faultConfig is an SBC with one mutual-TLS listener on mtls and an inside
// trunk at trunkURI; dns and extra are YAML lines added as they are.
func faultConfig(pki map[string]harness.TLSFiles, mtls int, trunkURI, handshake, dns, extra string) string {
	return fmt.Sprintf(`
node: { fqdn: sbc.test }
tls: { cert: %[1]s, key: %[2]s, ca: %[3]s, handshake_timeout: %[6]s }
listen:
  - { addr: "127.0.0.1:%[4]d", client_auth: required }
trunks:
  - { name: outside, identity: caller.test }
  - { name: inside, uri: "%[5]s", identity: callee.test }
routes:
  - { from: outside, to: inside }
%[7]s
sip: { provisional_timeout: 1s }
media: { port_range: "61000-61999", bind: 127.0.0.1 }
log: { level: debug, format: json }
shutdown: { drain_timeout: 2s }
%[8]s
`, pki["sbc.test"].Cert, pki["sbc.test"].Key, pki["sbc.test"].CA, mtls, trunkURI, handshake, dns, extra)
}

// ---------------------------------------------------------------------------
// 2. The DNS server does not answer.

func TestFaultDNSUnreachable(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	harness.LookTools(t)
	pki := harness.DevPKI(t, t.TempDir(), "sbc.test", "caller.test", "callee.test")
	// A bound UDP socket that never replies: queries are swallowed.
	mute, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mute.Close() })
	mtls := harness.FreePort(t)
	dns := fmt.Sprintf(`dns: { servers: ["%s"], timeout: 500ms, attempts: 2 }`, mute.LocalAddr())
	sbc := harness.StartSBC(t, faultConfig(pki, mtls, "sips:inside.test", "2s", dns, ""))
	local := harness.StartTLSClientProxy(t, fmt.Sprintf("127.0.0.1:%d", mtls), pki["caller.test"], true, "sbc.test")

	res := callOnce(t, local, harness.ExpectScenario(t, 503))
	harness.RequireOK(t, "caller expecting 503", res, 1)
	d := traceTime(t, res, true, "SIP/2.0 503").Sub(traceTime(t, res, false, "INVITE "))
	t.Logf("INVITE -> 503 with a mute DNS server (timeout 500ms, attempts 2): %s", d)
	// One SRV query: 2 attempts x 500 ms. Anything under that means no
	// query was waited for; far above means more than a query's budget.
	if d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("503 after %s, want about 1s (2 x 500ms) and at most 3s", d)
	}
	if !strings.Contains(sbc.Logs(), "dnsresolve: query attempt failed") {
		t.Errorf("the failed DNS queries were not logged")
	}
	if n := len(callEnds(sbc.Logs())); n != 1 {
		t.Errorf("call_end lines = %d, want 1", n)
	}
}

// ---------------------------------------------------------------------------
// 3. A target accepts TCP and swallows everything: no TLS handshake.

func blackhole(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(io.Discard, c) // until the peer or cleanup closes it
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

func TestFaultBlackholeTargetFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	harness.LookTools(t)
	pki := harness.DevPKI(t, t.TempDir(), "sbc.test", "caller.test", "callee.test")
	hole := blackhole(t)
	uas := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_basic.xml", Calls: 1})
	second := harness.StartTLSServerProxy(t, pki["callee.test"], uas.Port(), true)
	z := startDNS(t,
		fmt.Sprintf("_sips._tcp.inside.test. 60 IN SRV 10 10 %d t1.inside.test.", hole),
		fmt.Sprintf("_sips._tcp.inside.test. 60 IN SRV 20 10 %d t2.inside.test.", second),
		"t1.inside.test. 60 IN A 127.0.0.1",
		"t2.inside.test. 60 IN A 127.0.0.1",
	)
	mtls := harness.FreePort(t)
	dns := fmt.Sprintf(`dns: { servers: ["%s"], timeout: 1s }`, z.addr)
	sbc := harness.StartSBC(t, faultConfig(pki, mtls, "sips:inside.test", "1s", dns, ""))
	local := harness.StartTLSClientProxy(t, fmt.Sprintf("127.0.0.1:%d", mtls), pki["caller.test"], true, "sbc.test")

	res := callOnce(t, local, "uac_basic.xml")
	harness.RequireOK(t, "call through the second target", res, 1)
	d := traceTime(t, res, true, "SIP/2.0 200").Sub(traceTime(t, res, false, "INVITE "))
	t.Logf("INVITE -> 200 with the first target blackholed (handshake_timeout 1s): %s", d)
	if d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("answer after %s, want about 1s (the handshake timeout) and at most 3s", d)
	}
	if u := uas.Wait(10 * time.Second); u.Successful != 1 {
		t.Errorf("second target: %s", u.Summary())
	}
	logs := sbc.Logs()
	if !strings.Contains(logs, "failover: target not reachable") || !strings.Contains(logs, fmt.Sprintf("127.0.0.1:%d", hole)) {
		t.Errorf("the blackholed target (port %d) was not logged as failed over", hole)
	}
}

// ---------------------------------------------------------------------------
// 4. CDR file writes fail: calls go on.

func TestFaultCDRWriteErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Run("cdr.file is /dev/full, every write fails with ENOSPC", func(t *testing.T) {
		if _, err := os.Stat("/dev/full"); err != nil {
			t.Skip("/dev/full: ", err)
		}
		b, uas := newBed(t, bedOptions{uasScenario: "uas_basic.xml", extraYAML: "cdr: { file: /dev/full }"})
		local := b.caller(t, true, "caller.test")
		harness.RequireOK(t, "calls with a full CDR disk", b.uac(t, local, "uac_basic.xml", "sbc.test", 3), 3)
		waitCallEnds(t, b.sbc, 3)
		if u := uas.Stop(); u.Successful != 3 {
			t.Errorf("callee: %s", u.Summary())
		}
		if !b.sbc.WaitLog("CDR file write failed", 5*time.Second) {
			t.Errorf("the CDR write error was not logged")
		}
		if n := strings.Count(b.sbc.Logs(), "CDR file write failed"); n != 1 {
			t.Errorf("CDR write error logged %d times, want once", n)
		}
		if n := len(callEnds(b.sbc.Logs())); n != 3 {
			t.Errorf("call_end lines in the log = %d, want 3 (CDRs stay in the log)", n)
		}
	})
	t.Run("cdr.file that cannot be opened", func(t *testing.T) {
		// The parent "directory" is a regular file: open(2) fails with
		// ENOTDIR for root too, like a read-only or missing directory.
		notDir := filepath.Join(t.TempDir(), "not-a-dir")
		if err := os.WriteFile(notDir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		cdrPath := filepath.Join(notDir, "cdr.jsonl")
		b, uas := newBed(t, bedOptions{uasScenario: "uas_basic.xml", extraYAML: "cdr: { file: " + cdrPath + " }"})
		local := b.caller(t, true, "caller.test")
		harness.RequireOK(t, "calls with an unopenable CDR file", b.uac(t, local, "uac_basic.xml", "sbc.test", 3), 3)
		waitCallEnds(t, b.sbc, 3)
		if u := uas.Stop(); u.Successful != 3 {
			t.Errorf("callee: %s", u.Summary())
		}
		if !strings.Contains(b.sbc.Logs(), cdrPath) {
			t.Errorf("the CDR file problem (%s) was not logged", cdrPath)
		}
	})
}

// ---------------------------------------------------------------------------
// 5. The process is killed: the CDR file keeps every ended call.

// TestFaultCDRSurvivesSIGKILL starts the binary itself: harness.SBC's
// cleanup requires a clean exit (Stop returns "signal: killed" after a
// SIGKILL and the test would fail).
func TestFaultCDRSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	harness.LookTools(t)
	pki := harness.DevPKI(t, t.TempDir(), "sbc.test", "caller.test", "callee.test")
	uas := harness.StartSippUAS(t, harness.SippOptions{Scenario: "uas_basic.xml"})
	callee := harness.StartTLSServerProxy(t, pki["callee.test"], uas.Port(), true)
	mtls := harness.FreePort(t)
	dir := t.TempDir()
	cdrPath := filepath.Join(dir, "cdr.jsonl")
	// sync_interval far away: the records must survive the process, not
	// need an fsync (the host does not crash here).
	cfg := faultConfig(pki, mtls, fmt.Sprintf("sips:127.0.0.1:%d", callee), "2s", "",
		fmt.Sprintf("cdr: { file: %s, sync_interval: 1h }", cdrPath))
	cfgPath := filepath.Join(dir, "edge-sbc.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(harness.Binary(t), "run", "--config", cfgPath)
	var logMu sync.Mutex
	var logs bytes.Buffer
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
		}
	}()
	getLogs := func() string { logMu.Lock(); defer logMu.Unlock(); return logs.String() }
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Kill()
			<-done
		}
		<-readerDone
		if t.Failed() {
			t.Logf("edge-sbc log:\n%s", getLogs())
		}
	})
	waitFor := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !ok(getLogs()) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			select {
			case err := <-done:
				exited = true
				t.Fatalf("edge-sbc exited (%v) while waiting for %s", err, what)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	waitFor("edge-sbc ready", func(s string) bool { return strings.Contains(s, "edge-sbc ready") })

	local := harness.StartTLSClientProxy(t, fmt.Sprintf("127.0.0.1:%d", mtls), pki["caller.test"], true, "sbc.test")
	harness.RequireOK(t, "3 calls", callOnceN(t, local, 3), 3)
	waitFor("3 call_end lines", func(s string) bool { return len(callEnds(s)) == 3 })
	time.Sleep(200 * time.Millisecond) // the CDR write follows the log line

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		exited = true
		t.Logf("edge-sbc after SIGKILL: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("edge-sbc did not die on SIGKILL")
	}

	data, err := os.ReadFile(cdrPath)
	if err != nil {
		t.Fatalf("CDR file: %v", err)
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		t.Errorf("CDR file does not end with a complete line: %q", tailBytes(data, 200))
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("CDR file has %d lines, want 3:\n%s", len(lines), data)
	}
	seen := map[string]bool{}
	for i, l := range lines {
		var r struct {
			Call     string     `json:"call"`
			CallIDA  string     `json:"call_id_a"`
			CallIDB  string     `json:"call_id_b"`
			Start    time.Time  `json:"start"`
			Answer   *time.Time `json:"answer"`
			End      time.Time  `json:"end"`
			HangupBy string     `json:"hangup_by"`
			Reason   string     `json:"reason"`
		}
		// (hangup_by/reason values are TestFaultByeThenCloseReason's.)
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Errorf("CDR line %d is not JSON: %v\n%s", i+1, err, l)
			continue
		}
		if r.Call == "" || r.CallIDA == "" || r.CallIDB == "" || r.Start.IsZero() || r.End.IsZero() || r.Answer == nil || r.HangupBy == "" || r.Reason == "" {
			t.Errorf("CDR line %d incomplete: %s", i+1, l)
		}
		if seen[r.Call] {
			t.Errorf("CDR line %d repeats call %s", i+1, r.Call)
		}
		seen[r.Call] = true
	}
	t.Logf("CDR file after SIGKILL: %d complete JSON lines", len(lines))
}

func callOnceN(t *testing.T, local, n int) harness.SippResult {
	return harness.RunSippUAC(t, harness.SippOptions{
		Scenario: "uac_basic.xml", RemoteAddr: fmt.Sprintf("127.0.0.1:%d", local),
		RURIHost: "sbc.test", Service: "bob", Calls: n, Timeout: 30 * time.Second,
	})
}

func tailBytes(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return b[len(b)-n:]
}
