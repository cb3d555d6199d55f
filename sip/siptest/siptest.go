// Package siptest is the in-process test harness of the B2BUA: a real
// sip.B2BUA started on 127.0.0.1:0 listeners handed in, with the media
// relay, and scripted SIP peers over real TLS that send exactly what a test
// says, when it says (back to back in one write when asked: races are
// driven, not hoped for). It is used by the sip package's tests and by the
// end-to-end tests; it has no test-only dependencies beyond testing.TB.
package siptest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/dnsresolve"
	"github.com/edge-sbc/edge-sbc/media"
	edgesip "github.com/edge-sbc/edge-sbc/sip"
	"github.com/edge-sbc/edge-sbc/sip/cluster"
	"github.com/edge-sbc/edge-sbc/test/syncbuf"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// PKI is a development CA with leaves for the SBC and its peers.
type PKI struct {
	Dir    string
	CA     string
	Leaves map[string]tlsconf.LeafFiles
	pool   *x509.CertPool
}

// NewPKI writes a CA and a leaf per name (127.0.0.1 in every leaf).
func NewPKI(t testing.TB, names ...string) *PKI {
	t.Helper()
	dir := t.TempDir()
	files, err := tlsconf.WriteDevPKI(dir, names, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &PKI{Dir: dir, CA: files.CA, Leaves: files.Leaves, pool: pool}
}

// Issue adds a leaf with the given SANs to the PKI under name (e.g. a
// wildcard "*.partner.test" or a URI SAN "sips:partner.test").
func (p *PKI) Issue(t testing.TB, name string, dnsNames, uris []string) {
	t.Helper()
	lf, err := tlsconf.IssueDevLeaf(p.Dir, tlsconf.LeafOptions{Names: dnsNames, URIs: uris, CommonName: name,
		ServerAuth: true, ClientAuth: true, FileBase: strings.NewReplacer("*", "star", ":", "_").Replace(name)})
	if err != nil {
		t.Fatal(err)
	}
	p.Leaves[name] = lf
}

// Cert returns the TLS certificate of name.
func (p *PKI) Cert(t testing.TB, name string) tls.Certificate {
	t.Helper()
	lf, ok := p.Leaves[name]
	if !ok {
		t.Fatalf("no leaf %q", name)
	}
	c, err := tls.LoadX509KeyPair(lf.Cert, lf.Key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// SBC is a running B2BUA.
type SBC struct {
	B2BUA   *edgesip.B2BUA
	Config  *config.Config
	Engine  *media.Engine
	Metrics *prometheus.Registry
	// TLS is the address of the listener with client_auth optional (peers
	// without a certificate are the "public" trunk); MTLS of the one with
	// client_auth required.
	TLS, MTLS string
	Log       *syncbuf.Buffer
	// Cluster is the SBC's cluster membership (SBCOptions.Cluster), or nil.
	Cluster *cluster.Cluster
}

// SBCOptions shape the SBC.
type SBCOptions struct {
	// Callees are the trunk URIs (host:port) of the inside trunk, in order
	// (the "inside" trunk's uri; several: its name gets a suffix).
	Callee string
	// Trunks are extra YAML trunk entries (one per line, flow style).
	Trunks []string
	// Routes are extra YAML routes (flow style).
	Routes []string
	// Extra is appended to the YAML (other top-level keys).
	Extra string
	// SIP replaces the sip: mapping (default { provisional_timeout: 5s }:
	// scripted callees send no 100 Trying, and a loaded test machine may
	// take a while to answer).
	SIP string
	// Limits replaces the limits: mapping.
	Limits string
	// InsideSRTP is the inside trunk's srtp mode (default passthrough).
	InsideSRTP string
	// Hooks are handed to sip.New.
	Hooks *edgesip.Hooks
	// NoMedia leaves SDP untouched (no relay).
	NoMedia bool
	// MediaRange is media.port_range (default a range picked for the test).
	MediaRange string
	// DNS is the DNS server the SBC asks (default none: IP-literal trunks).
	DNS string
	// LogLevel is the SBC's log level (default debug, kept in SBC.Log);
	// "off" discards the log (memory measurements).
	LogLevel string
	// InsideExtra is added to the inside trunk's flow mapping (e.g.
	// `redirect: relay`).
	InsideExtra string
	// Tracer is handed to sip.New.
	Tracer edgesip.Tracer
	// Cluster, when set, joins the SBC to a cluster (sip/cluster) with
	// the SBC's log: SBC.Cluster, closed after the B2BUA.
	Cluster *ClusterOptions
	// Admitter is handed to sip.New when Cluster is not set (a test's own
	// cluster admission).
	Admitter edgesip.SharedAdmitter
}

// ClusterOptions join an SBC to a cluster on a Redis of the test.
type ClusterOptions struct {
	NodeID string
	Redis  string // host:port
	// Key is the state key (default 32 bytes of 0x42).
	Key []byte
	// Mod adjusts the cluster's Options (heartbeat, prefix).
	Mod func(*cluster.Options)
}

// StartSBC starts a B2BUA with trunks "outside" (identity caller.test, on
// the mutual-TLS listener), "public" (no certificate, TLS listener) and
// "inside" (uri o.Callee, identity callee.test), routes outside→inside and
// public→inside. It is closed when the test ends.
func StartSBC(t testing.TB, pki *PKI, o SBCOptions) *SBC {
	t.Helper()
	lnTLS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnMTLS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.SIP == "" {
		o.SIP = "{ provisional_timeout: 5s }"
	}
	if o.Limits == "" {
		o.Limits = "{ max_connections_per_ip: 1000, handshakes_per_ip: 1000, unauthenticated_cps: 1000, unauthenticated_max_calls: 1000 }"
	}
	if o.InsideSRTP == "" {
		o.InsideSRTP = "passthrough"
	}
	if o.MediaRange == "" {
		o.MediaRange = freeRange(t)
	}
	callee := o.Callee
	if callee == "" {
		callee = "127.0.0.1:9" // discard: nothing answers
	}
	sbcLeaf := pki.Leaves["sbc.test"]
	yml := fmt.Sprintf(`
node: { fqdn: sbc.test, domains: [sbc.test] }
tls: { cert: %q, key: %q, ca: %q }
listen:
  - { addr: %q, client_auth: optional, unauthenticated_trunk: public }
  - { addr: %q, client_auth: required }
trunks:
  - { name: outside, identity: caller.test, allow_plain_rtp: true }
  - { name: public, allow_plain_rtp: true }
  - { name: inside, uri: "sips:%s", identity: callee.test, srtp: %s, allow_plain_rtp: true%s }
%s
routes:
%s
  - { from: outside, to: inside }
  - { from: public, to: inside }
sip: %s
media: { port_range: %q, bind: 127.0.0.1 }
limits: %s
log: { level: debug }
%s
`, sbcLeaf.Cert, sbcLeaf.Key, pki.CA, lnTLS.Addr().String(), lnMTLS.Addr().String(), callee, o.InsideSRTP, insideExtra(o.InsideExtra),
		indent(o.Trunks), indent(o.Routes), o.SIP, o.MediaRange, o.Limits, o.Extra)
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yml)
	}
	store, err := tlsconf.LoadStore(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA)
	if err != nil {
		t.Fatal(err)
	}
	dnsServer := o.DNS
	if dnsServer == "" {
		dnsServer = "127.0.0.1:1"
	}
	res, err := dnsresolve.New(dnsresolve.Config{Servers: []string{dnsServer}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	log := zerolog.New(logs).With().Timestamp().Logger().Level(zerolog.DebugLevel)
	if o.LogLevel == "off" {
		log = zerolog.Nop()
	} else if o.LogLevel != "" {
		lvl, err := zerolog.ParseLevel(o.LogLevel)
		if err != nil {
			t.Fatal(err)
		}
		log = log.Level(lvl)
	}
	reg := prometheus.NewRegistry()
	metrics := edgesip.NewMetrics(reg)
	s := &SBC{Config: cfg, Metrics: reg, TLS: lnTLS.Addr().String(), MTLS: lnMTLS.Addr().String(), Log: logs}
	var anchor edgesip.MediaAnchor
	ctx, cancel := context.WithCancel(context.Background())
	if !o.NoMedia {
		lo, hi, _ := config.ParsePortRange(cfg.Media.PortRange)
		eng, err := media.NewEngine(media.Config{PortMin: lo, PortMax: hi, BindAddr: netip.MustParseAddr("127.0.0.1"),
			Quarantine: -1, Timeout: cfg.Media.Timeout}, log.With().Str("part", "media").Logger())
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Start(ctx); err != nil {
			t.Fatal(err)
		}
		s.Engine = eng
		anchor = edgesip.NewMediaAnchor(eng, metrics)
	}
	admitter := o.Admitter
	var states edgesip.SharedStates
	if co := o.Cluster; co != nil {
		key := co.Key
		if key == nil {
			key = bytes.Repeat([]byte{0x42}, cluster.KeySize)
		}
		copt := cluster.Options{NodeID: co.NodeID, Key: key, Log: log.With().Str("part", "cluster").Logger(),
			Redis: cluster.RedisOptions{Addrs: []string{co.Redis}}}
		if co.Mod != nil {
			co.Mod(&copt)
		}
		cl, err := cluster.Open(copt)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() }) // after the B2BUA's (cleanups run last first)
		if err := cl.Start(ctx); err != nil {
			t.Fatal(err)
		}
		s.Cluster = cl
		admitter, states = cl.Admitter(), cl.StateStore()
	}
	b, err := edgesip.New(edgesip.Options{Config: cfg, Store: store, Resolver: res, Log: log, Media: anchor, Metrics: metrics, Hooks: o.Hooks, Tracer: o.Tracer,
		Admitter: admitter, States: states})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, []net.Listener{lnTLS, lnMTLS}); err != nil {
		t.Fatal(err)
	}
	s.B2BUA = b
	t.Cleanup(func() {
		_ = b.Close()
		if s.Engine != nil {
			_ = s.Engine.Close()
		}
		cancel()
		if t.Failed() {
			t.Logf("SBC log (tail):\n%s", tail(logs.String(), 12000))
		}
	})
	return s
}

func insideExtra(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}

func indent(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("  - ")
		b.WriteString(l)
		b.WriteString("\n")
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// freeRange picks a media port range of 200 ports below the ephemeral
// range, from the test's name (ports another process holds are skipped by
// the relay's allocator).
func freeRange(t testing.TB) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(t.Name()))
	lo := 20000 + int(h.Sum32()%49)*200
	return fmt.Sprintf("%d-%d", lo, lo+199)
}

// WaitIdle waits until the SBC holds no call, dialog, transaction or media
// port, and fails the test otherwise.
func (s *SBC) WaitIdle(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		calls, dialogs, _ := s.B2BUA.Counts()
		stx, ctx := s.B2BUA.Transactions()
		ports := 0
		if s.Engine != nil {
			ports = s.Engine.PortsInUse()
		}
		if calls == 0 && dialogs == 0 && stx == 0 && ctx == 0 && ports == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("SBC not idle after %s: calls=%d dialogs=%d server_tx=%d client_tx=%d media_ports=%d", d, calls, dialogs, stx, ctx, ports)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitConfirmed waits until no call of the SBC waits for its caller's ACK
// (the callee has its ACK before the SBC has the caller's).
func (s *SBC) WaitConfirmed(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pending := false
		for _, c := range s.B2BUA.Calls() {
			if c.State != "confirmed" {
				pending = true
			}
		}
		if !pending {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a call is still not confirmed: %+v", s.B2BUA.Calls())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitLog waits until the SBC's log contains s.
func (s *SBC) WaitLog(t testing.TB, text string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.Log.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("the SBC never logged %q", text)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Peer is a scripted SIP endpoint on one TLS connection.
type Peer struct {
	t     testing.TB
	Name  string
	conn  net.Conn
	msgs  chan sip.Message
	done  chan struct{}
	local string
	mu    sync.Mutex // guards backlog
	back  []sip.Message
}

// Dial connects to addr as name (with name's certificate when cert).
func Dial(t testing.TB, pki *PKI, addr, name string, cert bool) *Peer {
	t.Helper()
	c, err := DialFrom(pki, "", addr, name, cert)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", name, addr, err)
	}
	return newPeer(t, name, c)
}

// DialFrom opens a TLS connection to addr from local IP from ("" any),
// without a peer on top (for connection-level tests).
func DialFrom(pki *PKI, from, addr, name string, cert bool) (*tls.Conn, error) {
	return DialWith(pki, from, addr, name, cert, 0)
}

// DialWith is DialFrom with the socket's receive buffer set to rcvbuf
// bytes before it connects (0: the system's), as a peer that reads
// slowly or not at all would.
func DialWith(pki *PKI, from, addr, name string, cert bool, rcvbuf int) (*tls.Conn, error) {
	cfg := &tls.Config{RootCAs: pki.pool, ServerName: "sbc.test", MinVersion: tls.VersionTLS12}
	if cert {
		c, err := tls.LoadX509KeyPair(pki.Leaves[name].Cert, pki.Leaves[name].Key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) }); err != nil {
				return err
			}
			return serr
		}
	}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return tls.DialWithDialer(d, "tcp", addr, cfg)
}

// Listener accepts the SBC's connections as a callee.
type Listener struct {
	t     testing.TB
	ln    net.Listener
	name  string
	peers chan *Peer
}

// Listen starts a TLS listener with name's certificate.
func Listen(t testing.TB, pki *PKI, name string) *Listener {
	t.Helper()
	return ListenOn(t, pki, name, "127.0.0.1:0")
}

// ListenOn is Listen on addr (host:port, port 0: any).
func ListenOn(t testing.TB, pki *PKI, name, addr string) *Listener {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{pki.Cert(t, name)}, ClientCAs: pki.pool, ClientAuth: tls.VerifyClientCertIfGiven}
	ln, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := &Listener{t: t, ln: ln, name: name, peers: make(chan *Peer, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.peers <- newPeer(t, name, c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return l
}

// Addr is the listener's host:port.
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// Accept returns the next connection from the SBC.
func (l *Listener) Accept(d time.Duration) *Peer {
	l.t.Helper()
	select {
	case p := <-l.peers:
		return p
	case <-time.After(d):
		l.t.Fatalf("%s: no connection from the SBC within %s", l.name, d)
		return nil
	}
}

func newPeer(t testing.TB, name string, c net.Conn) *Peer {
	p := &Peer{t: t, Name: name, conn: c, msgs: make(chan sip.Message, 256), done: make(chan struct{}), local: c.LocalAddr().String()}
	go p.read()
	t.Cleanup(func() { _ = c.Close() })
	return p
}

func (p *Peer) read() {
	defer close(p.done)
	par := sip.NewParser().NewSIPStream()
	buf := make([]byte, 64<<10)
	for {
		n, err := p.conn.Read(buf)
		if n > 0 {
			perr := par.ParseSIPStream(buf[:n], func(m sip.Message) { p.msgs <- m })
			if perr != nil && !errors.Is(perr, sip.ErrParseSipPartial) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Local is the peer's own address (its Via sent-by and Contact).
func (p *Peer) Local() string { return p.local }

// Closed reports whether the SBC closed the connection (within d).
func (p *Peer) Closed(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Forget drops the messages kept for later Expect calls.
func (p *Peer) Forget() {
	p.mu.Lock()
	p.back = nil
	p.mu.Unlock()
}

// Close closes the connection.
func (p *Peer) Close() { _ = p.conn.Close() }

// Send writes messages back to back in one write.
func (p *Peer) Send(ms ...sip.Message) {
	p.t.Helper()
	var b bytes.Buffer
	for _, m := range ms {
		b.WriteString(m.String())
	}
	p.SendRaw(b.Bytes())
}

// SendRaw writes bytes as they are.
func (p *Peer) SendRaw(b []byte) {
	p.t.Helper()
	_ = p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.conn.Write(b); err != nil && !errors.Is(err, io.EOF) {
		p.t.Fatalf("%s: write: %v", p.Name, err)
	}
}

// OfferRinging has a (a caller's connection) send an INVITE to ruri and
// waits up to d: when the callee's peer (callee returns it, once the
// INVITE is sent) gets the INVITE, it answers 180 (the call keeps ringing
// and counting) and OfferRinging reports true; when a gets a final
// response first, it reports false with that response. Neither within d
// fails the test.
func OfferRinging(t testing.TB, a *Peer, ruri string, callee func() *Peer, d time.Duration) (admitted bool, res *sip.Response) {
	t.Helper()
	a.Send(a.NewInvite(ruri, SDP(4000, 1, "")))
	b := callee()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if m := a.Next(10 * time.Millisecond); m != nil {
			if r, ok := m.(*sip.Response); ok && r.StatusCode >= 200 {
				return false, r
			}
		}
		if m := b.Next(10 * time.Millisecond); m != nil {
			if r, ok := m.(*sip.Request); ok && r.Method == sip.INVITE {
				b.Send(b.Reply(r, 180, Tag(), nil))
				return true, nil
			}
		}
	}
	t.Fatal("the call was neither refused nor placed")
	return false, nil
}

// Next returns the next message (from the backlog first), nil after d.
func (p *Peer) Next(d time.Duration) sip.Message {
	p.mu.Lock()
	if len(p.back) > 0 {
		m := p.back[0]
		p.back = p.back[1:]
		p.mu.Unlock()
		return m
	}
	p.mu.Unlock()
	select {
	case m := <-p.msgs:
		return m
	case <-time.After(d):
		return nil
	}
}

// Expect returns the first message for which match is true, keeping the
// others (in order) for later; it fails the test after d.
func (p *Peer) Expect(d time.Duration, what string, match func(sip.Message) bool) sip.Message {
	p.t.Helper()
	deadline := time.Now().Add(d)
	p.mu.Lock()
	for i, m := range p.back {
		if match(m) {
			p.back = append(p.back[:i:i], p.back[i+1:]...)
			p.mu.Unlock()
			return m
		}
	}
	p.mu.Unlock()
	for {
		left := time.Until(deadline)
		if left <= 0 {
			p.t.Fatalf("%s: no %s within %s (backlog: %s)", p.Name, what, d, p.backlog())
			return nil
		}
		select {
		case m := <-p.msgs:
			if match(m) {
				return m
			}
			p.mu.Lock()
			p.back = append(p.back, m)
			p.mu.Unlock()
		case <-time.After(left):
		}
	}
}

func (p *Peer) backlog() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, m := range p.back {
		out = append(out, strings.SplitN(m.String(), "\r\n", 2)[0])
	}
	return strings.Join(out, " | ")
}

// Request waits for a request of method.
func (p *Peer) Request(d time.Duration, method sip.RequestMethod) *sip.Request {
	p.t.Helper()
	return p.Expect(d, string(method), func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == method
	}).(*sip.Request)
}

// Response waits for a response to method with code (0: any final).
func (p *Peer) Response(d time.Duration, method sip.RequestMethod, code int) *sip.Response {
	p.t.Helper()
	return p.Expect(d, fmt.Sprintf("%d to %s", code, method), func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		if !ok || r.CSeq() == nil || r.CSeq().MethodName != method {
			return false
		}
		if code == 0 {
			return r.StatusCode >= 200
		}
		return r.StatusCode == code
	}).(*sip.Response)
}

// Nothing checks that no message matching match arrives within d.
func (p *Peer) Nothing(d time.Duration, what string, match func(sip.Message) bool) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		select {
		case m := <-p.msgs:
			if match(m) {
				p.t.Fatalf("%s: unexpected %s: %s", p.Name, what, strings.SplitN(m.String(), "\r\n", 2)[0])
			}
			p.mu.Lock()
			p.back = append(p.back, m)
			p.mu.Unlock()
		case <-time.After(left):
		}
	}
}

// IsRequest and IsResponse are matchers for Expect and Nothing.
func IsRequest(method sip.RequestMethod) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == method
	}
}

func IsResponse(method sip.RequestMethod, code int) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.CSeq() != nil && r.CSeq().MethodName == method && (code == 0 || r.StatusCode == code)
	}
}

// ProvisionalAfterFinal matches a provisional response to an INVITE.
func IsProvisional(m sip.Message) bool {
	r, ok := m.(*sip.Response)
	return ok && r.StatusCode < 200 && r.StatusCode > 100
}

// TempDir is a helper for files of a test (certificates, configs).
func TempFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
