package test

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/srtp/v3"

	"github.com/edge-sbc/edge-sbc/media/fastpath/nstest"
	"github.com/edge-sbc/edge-sbc/sip/siptest"
	"github.com/edge-sbc/edge-sbc/test/harness"
)

// The takeover test's topology: three network namespaces it creates. The
// peers' namespace holds a bridge, the caller, the callee and redis-server;
// each SBC's namespace is joined to the bridge by a veth pair. The service
// address is on the first SBC's interface, and the test moves it to the
// second's, as keepalived would.
//
//	netns <peers>  br0 10.78.0.1/24  (caller, callee, redis-server)
//	   | veth                 | veth
//	netns <n1> eth0 10.78.0.11/24    netns <n2> eth0 10.78.0.12/24
//	   + service 10.78.0.100/24 (moves to n2)
const (
	tkPeers   = "10.78.0.1"
	tkN1      = "10.78.0.11"
	tkN2      = "10.78.0.12"
	tkService = "10.78.0.100"
	tkEnv     = "EDGE_SBC_TAKEOVER_NS" // "<peers> <n1> <n2>" in the re-run test
)

type tkTopo struct{ peers, n1, n2 string }

func ipcmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// takeoverTopo builds the namespaces and re-runs the test in the peers'
// namespace; it returns false there (the caller returns), true when the
// test runs inside it.
func takeoverTopo(t *testing.T) (tkTopo, bool) {
	t.Helper()
	if f := strings.Fields(os.Getenv(tkEnv)); len(f) == 3 {
		return tkTopo{f[0], f[1], f[2]}, true
	}
	if testing.Short() {
		t.Skip("end-to-end: network namespaces, two SBC processes and a failover (make test-cluster)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces (make test-cluster as root)")
	}
	for _, tool := range []string{"ip", "redis-server"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	id := fmt.Sprintf("%d-%04x", os.Getpid(), rand.IntN(1<<16))
	tp := tkTopo{peers: "esbc-tp" + id, n1: "esbc-t1" + id, n2: "esbc-t2" + id}
	t.Cleanup(func() {
		for _, ns := range []string{tp.peers, tp.n1, tp.n2} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, ns := range []string{tp.peers, tp.n1, tp.n2} {
		ipcmd(t, "netns", "add", ns)
		ipcmd(t, "-n", ns, "link", "set", "dev", "lo", "up")
	}
	ipcmd(t, "-n", tp.peers, "link", "add", "br0", "type", "bridge")
	ipcmd(t, "-n", tp.peers, "addr", "add", tkPeers+"/24", "dev", "br0")
	ipcmd(t, "-n", tp.peers, "link", "set", "dev", "br0", "up")
	for i, ns := range []string{tp.n1, tp.n2} {
		peer := fmt.Sprintf("v%d", i+1)
		ipcmd(t, "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", tp.peers)
		ipcmd(t, "-n", tp.peers, "link", "set", "dev", peer, "master", "br0")
		ipcmd(t, "-n", tp.peers, "link", "set", "dev", peer, "up")
		ipcmd(t, "-n", ns, "addr", "add", []string{tkN1, tkN2}[i]+"/24", "dev", "eth0")
		ipcmd(t, "-n", ns, "link", "set", "dev", "eth0", "up")
		// Both nodes listen on the service address before they hold it.
		if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1").CombinedOutput(); err != nil {
			t.Fatalf("sysctl ip_nonlocal_bind in %s: %v: %s", ns, err, out)
		}
	}
	ipcmd(t, "-n", tp.n1, "addr", "add", tkService+"/24", "dev", "eth0")
	nstest.Rerun(t, tp.peers, nil, tkEnv+"="+tp.peers+" "+tp.n1+" "+tp.n2)
	return tp, false
}

// rtpStream sends RTP every 20 ms from its socket to a destination that
// may change, and records when packets arrive on it.
type rtpStream struct {
	conn *net.UDPConn
	ssrc uint32

	mu       sync.Mutex
	dst      netip.AddrPort
	enc, dec *srtp.Context // SRTP (terminate mode): what it sends, what it receives
	arrived  []time.Time   // authenticated packets only, with SRTP
	authFail int
	wg       sync.WaitGroup
	stop     chan struct{}
}

func newRTPStream(t *testing.T, ip string) *rtpStream {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	r := &rtpStream{conn: c, ssrc: rand.Uint32(), stop: make(chan struct{})}
	r.wg.Add(2)
	go r.send()
	go r.recv()
	t.Cleanup(func() {
		close(r.stop)
		_ = c.Close()
		r.wg.Wait()
	})
	return r
}

func (r *rtpStream) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

func (r *rtpStream) sendTo(ap netip.AddrPort) {
	r.mu.Lock()
	r.dst = ap
	r.mu.Unlock()
}

// useSRTP makes the stream send SRTP with key send and accept only SRTP
// that authenticates with key recv (SDES inline keys, AES_CM_128_HMAC_SHA1_80).
func (r *rtpStream) useSRTP(t *testing.T, send, recv []byte) {
	t.Helper()
	ctx := func(k []byte) *srtp.Context {
		c, err := srtp.CreateContext(k[:16], k[16:], srtp.ProtectionProfileAes128CmHmacSha1_80)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	r.mu.Lock()
	r.enc, r.dec = ctx(send), ctx(recv)
	r.mu.Unlock()
}

func (r *rtpStream) authFailures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.authFail
}

func (r *rtpStream) send() {
	defer r.wg.Done()
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	seq := uint16(rand.Uint32())
	pkt := make([]byte, 172)
	pkt[0], pkt[1] = 0x80, 0
	binary.BigEndian.PutUint32(pkt[8:], r.ssrc)
	for {
		select {
		case <-r.stop:
			return
		case <-tk.C:
		}
		r.mu.Lock()
		dst, enc := r.dst, r.enc
		r.mu.Unlock()
		if !dst.IsValid() {
			continue
		}
		seq++
		binary.BigEndian.PutUint16(pkt[2:], seq)
		binary.BigEndian.PutUint32(pkt[4:], uint32(seq)*160)
		out := pkt
		if enc != nil {
			var err error
			if out, err = enc.EncryptRTP(nil, pkt, nil); err != nil {
				continue
			}
		}
		_, _ = r.conn.WriteToUDPAddrPort(out, dst)
	}
}

func (r *rtpStream) recv() {
	defer r.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-r.stop:
				return
			default:
			}
			if strings.Contains(err.Error(), "use of closed") {
				return
			}
			continue
		}
		r.mu.Lock()
		if r.dec != nil {
			if _, err := r.dec.DecryptRTP(nil, buf[:n], nil); err != nil {
				r.authFail++
				r.mu.Unlock()
				continue
			}
		}
		r.arrived = append(r.arrived, time.Now())
		r.mu.Unlock()
	}
}

// receivedAfter counts the packets that arrived after at.
func (r *rtpStream) receivedAfter(at time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.arrived {
		if a.After(at) {
			n++
		}
	}
	return n
}

// gap returns the last arrival before at and the first after it.
func (r *rtpStream) gap(at time.Time) (last, first time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.arrived {
		if !a.After(at) {
			last = a
		} else if first.IsZero() {
			first = a
		}
	}
	return last, first
}

// sdpAt is an audio SDP at ip:port: plain RTP, or SRTP with an inline key
// of AES_CM_128_HMAC_SHA1_80 under tag when key is not nil.
func sdpAt(ip string, port int, tag int, key []byte) []byte {
	media := fmt.Sprintf("m=audio %d RTP/AVP 0\r\n", port)
	if key != nil {
		media = fmt.Sprintf("m=audio %d RTP/SAVP 0\r\na=crypto:%d AES_CM_128_HMAC_SHA1_80 inline:%s\r\n",
			port, tag, base64.StdEncoding.EncodeToString(key))
	}
	return []byte(fmt.Sprintf("v=0\r\no=- 4711 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\n", ip) +
		media + "a=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")
}

// sdesKey returns the tag and key of the first AES_CM_128_HMAC_SHA1_80
// a=crypto line of an SDP.
func sdesKey(t *testing.T, body []byte) (int, []byte) {
	t.Helper()
	for _, l := range strings.Split(string(body), "\n") {
		var tag int
		var suite, inline string
		if n, _ := fmt.Sscanf(strings.TrimSpace(l), "a=crypto:%d %s %s", &tag, &suite, &inline); n != 3 || suite != "AES_CM_128_HMAC_SHA1_80" {
			continue
		}
		v, _, _ := strings.Cut(strings.TrimPrefix(inline, "inline:"), "|")
		k, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(k) != 30 {
			t.Fatalf("a=crypto key %q: %v", v, err)
		}
		return tag, k
	}
	t.Fatalf("no AES_CM_128_HMAC_SHA1_80 a=crypto line in:\n%s", body)
	return 0, nil
}

func newKey() []byte {
	k := make([]byte, 30)
	for i := range k {
		k[i] = byte(rand.Uint32())
	}
	return k
}

// TestTakeoverNetns (make test, and make test-cluster with the other
// cluster tests; about 20 s, root only): two edge-sbc processes in two
// network namespaces sharing a service address, one real redis-server; a
// call through the first with RTP flowing both ways; the first lost, the
// address moved to the second, which takes the call over: the media
// resumes through the second on the same ports (the gap is logged), and a
// BYE from the caller on a new TLS connection ends both legs, with one CDR
// from the second node carrying the call's start and answer times. The
// first node is lost three ways:
//   - sigusr1 (pass-through and terminate): SIGKILL; the address moved and
//     SIGUSR1 sent to the second node (the address trigger may come
//     first: the second takeover skips the call);
//   - address (pass-through): SIGKILL; the address moved, no signal: the
//     second node takes over because the address appeared;
//   - handoff (terminate): shutdown.handoff and SIGTERM with media
//     flowing: no BYE to either peer, a prompt exit (measured), then the
//     address moved, and the second node takes over by the address.
func TestTakeoverNetns(t *testing.T) {
	tp, inside := takeoverTopo(t)
	if !inside {
		return
	}
	redis := siptest.StartRedisOn(t, tkPeers)
	for _, tc := range []struct{ mode, how string }{
		{"passthrough", "sigusr1"}, {"terminate", "sigusr1"},
		{"passthrough", "address"}, {"terminate", "handoff"},
	} {
		t.Run(tc.mode+"/"+tc.how, func(t *testing.T) { takeoverCall(t, tp, redis, tc.mode, tc.how) })
	}
}

// takeoverCall is one failover of TestTakeoverNetns with the trunks' SRTP
// mode mode (passthrough: plain RTP relayed as it is; terminate: SRTP
// decrypted and encrypted again on both legs), the first node lost as how
// says (sigusr1, address, handoff: see TestTakeoverNetns).
func takeoverCall(t *testing.T, tp tkTopo, redis *siptest.Redis, mode, how string) {
	// The service address starts on n1.
	_ = exec.Command("ip", "-n", tp.n2, "addr", "del", tkService+"/24", "dev", "eth0").Run()
	_ = exec.Command("ip", "-n", tp.n1, "addr", "add", tkService+"/24", "dev", "eth0").Run()
	ipcmd(t, "-n", tp.peers, "neigh", "flush", "dev", "br0")
	term := mode == "terminate"
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	key := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("6b", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	callee := siptest.ListenOn(t, pki, "callee.test", net.JoinHostPort(tkPeers, "0"))
	leaf := pki.Leaves["sbc.test"]
	svc := net.JoinHostPort(tkService, "5061")
	config := func(id, role string) string {
		return fmt.Sprintf(`node: { fqdn: sbc.test, domains: [sbc.test] }
tls: { cert: %[1]q, key: %[2]q, ca: %[3]q }
listen:
  - { addr: %[4]q, client_auth: required }
trunks:
  - { name: outside, identity: caller.test, allow_plain_rtp: true, srtp: %[9]s }
  - { name: inside, uri: "sips:%[5]s", identity: callee.test, allow_plain_rtp: true, srtp: %[9]s }
routes:
  - { from: outside, to: inside }
media: { bind: %[6]s, port_range: "30000-30099", fastpath: off }
log: { level: debug, format: json }
cluster: { node_id: %[7]s, role: %[8]s, state_key_file: %[10]q, redis: { addrs: [%[11]q] } }
shutdown: { handoff: %[12]t }
`, leaf.Cert, leaf.Key, pki.CA, svc, callee.Addr(), tkService, id, role, mode, key, redis.Addr(), how == "handoff")
	}
	n1 := harness.StartSBCWith(t, config("n1", "active"), "ip", "netns", "exec", tp.n1)
	n2 := harness.StartSBCWith(t, config("n2", "standby"), "ip", "netns", "exec", tp.n2)

	// The call, through n1 (it holds the address).
	rtpA, rtpB := newRTPStream(t, tkPeers), newRTPStream(t, tkPeers)
	a := siptest.Dial(t, pki, svc, "caller.test", true)
	var keyA, keyB []byte // the peers' own SRTP keys (terminate)
	if term {
		keyA, keyB = newKey(), newKey()
	}
	inv := a.NewInvite("sips:bob@sbc.test", sdpAt(tkPeers, rtpA.port(), 1, keyA))
	a.Send(inv)
	b := callee.Accept(5 * time.Second)
	invB := b.Request(5*time.Second, sip.INVITE)
	tagB := siptest.Tag()
	var cryptoTag int
	var toB []byte // the SBC's key toward the callee
	if term {
		cryptoTag, toB = sdesKey(t, invB.Body())
	}
	b.Send(b.Reply(invB, 200, tagB, sdpAt(tkPeers, rtpB.port(), cryptoTag, keyB)))
	ok := a.Response(5*time.Second, sip.INVITE, 200)
	if term {
		_, toA := sdesKey(t, ok.Body())
		rtpA.useSRTP(t, keyA, toA)
		rtpB.useSRTP(t, keyB, toB)
	}
	dA := a.UACDialog(inv, ok)
	a.Send(dA.Request(sip.ACK, nil, inv.CSeq().SeqNo))
	if b.Request(5*time.Second, sip.ACK) == nil {
		t.Fatal("no ACK at the callee")
	}
	dB := b.UASDialog(invB, tagB)
	relayA, relayB := siptest.MediaAddr(t, ok.Body()), siptest.MediaAddr(t, invB.Body())
	rtpA.sendTo(relayA)
	rtpB.sendTo(relayB)
	if !n1.WaitLog(`"call state replicated"`, 5*time.Second) {
		t.Fatal("n1 wrote no call state")
	}
	start := time.Now()
	time.Sleep(time.Second)
	if rtpA.receivedAfter(start) < 20 || rtpB.receivedAfter(start) < 20 {
		t.Fatalf("media through n1: %d packets at the caller, %d at the callee in 1 s", rtpA.receivedAfter(start), rtpB.receivedAfter(start))
	}

	// The standby takes nothing while it does not hold the address.
	if err := n2.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if !n2.WaitLog("takeover refused", 5*time.Second) {
		t.Fatalf("n2 did not refuse a takeover without the service address\n%s", n2.Logs())
	}

	// n1 is lost; the address moves to n2, which takes over (told to,
	// or because the address appeared).
	killed := time.Now()
	switch how {
	case "handoff":
		if err := n1.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-n1.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("n1 still runs 5 s after SIGTERM with shutdown.handoff\n%s", n1.Logs())
		}
		t.Logf("n1 handed over and exited %s after SIGTERM", time.Since(killed).Round(time.Millisecond))
		if time.Since(killed) > 2*time.Second {
			t.Errorf("n1 took %s to exit after SIGTERM with shutdown.handoff (want under 2 s: no drain)", time.Since(killed))
		}
		logs := n1.Logs()
		if !strings.Contains(logs, `"cluster: handed off"`) || !strings.Contains(logs, `"handed_off":1`) || strings.Contains(logs, `"event":"call_end"`) {
			t.Fatalf("n1 did not hand one call over without a CDR\n%s", logs)
		}
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, `"cluster: handed off"`) {
				t.Logf("n1: %s", line)
			}
		}
		isBye := func(m sip.Message) bool { r, ok := m.(*sip.Request); return ok && r.Method == sip.BYE }
		a.Nothing(100*time.Millisecond, "BYE toward the caller of a call handed over", isBye)
		b.Nothing(100*time.Millisecond, "BYE toward the callee of a call handed over", isBye)
	default:
		n1.Kill()
	}
	ipcmd(t, "-n", tp.n1, "addr", "del", tkService+"/24", "dev", "eth0")
	ipcmd(t, "-n", tp.n2, "addr", "add", tkService+"/24", "dev", "eth0")
	ipcmd(t, "-n", tp.peers, "neigh", "flush", "dev", "br0") // keepalived's gratuitous ARP
	moved := time.Now()
	if how == "sigusr1" {
		if err := n2.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for rtpA.receivedAfter(moved) == 0 || rtpB.receivedAfter(moved) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("media did not resume through n2 within 10 s: %d packets at the caller, %d at the callee\n%s",
				rtpA.receivedAfter(moved), rtpB.receivedAfter(moved), n2.Logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, x := range []struct {
		who string
		r   *rtpStream
	}{{"caller", rtpA}, {"callee", rtpB}} {
		last, first := x.r.gap(moved)
		t.Logf("%s: media gap at the %s: %s without packets; resumed %s after the address moved (%s from the loss to the move)",
			how, x.who, first.Sub(last).Round(time.Millisecond), first.Sub(moved).Round(time.Millisecond), moved.Sub(killed).Round(time.Millisecond))
		if first.Sub(moved) > 3*time.Second {
			t.Errorf("the %s's media resumed %s after the address moved (want within 3 s)", x.who, first.Sub(moved))
		}
	}
	if !strings.Contains(n2.Logs(), `"taken":1`) {
		t.Fatalf("n2 did not log one call taken over\n%s", n2.Logs())
	}
	if how != "sigusr1" && !strings.Contains(n2.Logs(), `"trigger":"address"`) {
		t.Fatalf("n2 did not take over by the address\n%s", n2.Logs())
	}
	resumed := time.Now()
	time.Sleep(time.Second)
	if na, nb := rtpA.receivedAfter(resumed), rtpB.receivedAfter(resumed); na < 40 || nb < 40 {
		t.Fatalf("media through n2: %d packets at the caller, %d at the callee in 1 s", na, nb)
	}
	if fa, fb := rtpA.authFailures(), rtpB.authFailures(); fa+fb > 0 {
		t.Fatalf("SRTP that does not authenticate: %d packets at the caller, %d at the callee", fa, fb)
	}
	if !n2.WaitLog(`"call state replicated"`, 5*time.Second) {
		t.Fatal("n2 did not write the call's state again")
	}

	// A BYE from the caller on a new connection ends both legs.
	a2 := siptest.Dial(t, pki, svc, "caller.test", true)
	a2.Send(dA.On(a2).Request(sip.BYE, nil))
	a2.Response(5*time.Second, sip.BYE, 200)
	b2 := callee.Accept(5 * time.Second) // n2 dialed the callee when it took the call over
	byeB := b2.Request(5*time.Second, sip.BYE)
	b2.Send(b2.Reply(byeB, 200, "", nil))
	if byeB == nil {
		t.Fatal("no BYE at the callee")
	}
	if byeB.CallID().Value() != dB.CallID || byeB.CSeq().SeqNo <= 1 {
		t.Fatalf("BYE at the callee: Call-ID %s CSeq %d, want %s and a CSeq after the INVITE's", byeB.CallID().Value(), byeB.CSeq().SeqNo, dB.CallID)
	}
	if !n2.WaitLog(`"event":"call_end"`, 5*time.Second) {
		t.Fatalf("no CDR on n2\n%s", n2.Logs())
	}
	time.Sleep(200 * time.Millisecond)
	if n := strings.Count(n2.Logs(), `"event":"call_end"`); n != 1 {
		t.Fatalf("%d CDRs on n2, want 1", n)
	}
	for _, line := range strings.Split(n2.Logs(), "\n") {
		if strings.Contains(line, `"event":"call_end"`) {
			if !strings.Contains(line, `"hangup_by":"a"`) || !strings.Contains(line, `"answer":`) {
				t.Fatalf("CDR: %s", line)
			}
			t.Logf("CDR on n2: %s", line)
		}
	}
}
