package readiness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

const (
	testFQDN     = "sbc.example.test"
	testDomain   = "example.test"
	testPeerName = "peer.example.test"
	testTimeout  = 2 * time.Second
)

// zone is an in-process DNS server on 127.0.0.1 (UDP) answering from a
// set of records; names without records get NXDOMAIN, names with records
// of another type get NODATA.
type zone struct {
	addr string
	mu   sync.Mutex
	rrs  []dns.RR
}

func newZone(t *testing.T, records ...string) *zone {
	t.Helper()
	z := &zone{}
	for _, r := range records {
		z.add(t, r)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: func() { close(started) }}
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-errc:
		t.Fatalf("dns server: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("dns server did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
	return z
}

func (z *zone) add(t *testing.T, record string) {
	t.Helper()
	rr, err := dns.NewRR(record)
	if err != nil {
		t.Fatalf("record %q: %v", record, err)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rrs = append(z.rrs, rr)
}

// remove drops every record of name and type.
func (z *zone) remove(name string, qtype uint16) {
	z.mu.Lock()
	defer z.mu.Unlock()
	kept := z.rrs[:0]
	for _, rr := range z.rrs {
		h := rr.Header()
		if !(strings.EqualFold(h.Name, dns.Fqdn(name)) && h.Rrtype == qtype) {
			kept = append(kept, rr)
		}
	}
	z.rrs = kept
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	exists := false
	z.mu.Lock()
	for _, rr := range z.rrs {
		h := rr.Header()
		if !strings.EqualFold(h.Name, q.Name) {
			continue
		}
		exists = true
		if h.Rrtype == q.Qtype {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	z.mu.Unlock()
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// fixture is a development PKI, a DNS zone for testFQDN and free ports.
type fixture struct {
	dir        string
	pki        tlsconf.DevFiles
	zone       *zone
	listenPort int
	mediaRange string
	// peer is a SIP-over-TLS peer with a good certificate for
	// testPeerName, also published as _sips._tcp.testPeerName SRV.
	peer *sipPeer
}

// newFixture writes a development CA with a leaf for testFQDN
// (serverAuth+clientAuth) and serves A, PTR and SRV records for it.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	pki, err := tlsconf.WriteDevPKI(filepath.Join(f.dir, "pki"), []string{testFQDN}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.pki = pki
	f.listenPort = freeTCPPort(t)
	f.mediaRange = freeUDPRange(t)
	f.zone = newZone(t,
		testFQDN+". 60 IN A 127.0.0.1",
		"1.0.0.127.in-addr.arpa. 60 IN PTR "+testFQDN+".",
		fmt.Sprintf("_sips._tcp.%s. 60 IN SRV 10 10 %d %s.", testDomain, f.listenPort, testFQDN),
	)
	lf := f.issue(t, tlsconf.LeafOptions{Names: []string{testPeerName}, ServerAuth: true, ClientAuth: true, FileBase: "peer-good"})
	f.peer = startPeer(t, lf, 200, "OK")
	_, port, _ := net.SplitHostPort(f.peer.addr)
	f.zone.add(t, fmt.Sprintf("_sips._tcp.%s. 60 IN SRV 10 10 %s %s.", testPeerName, port, testPeerName))
	f.zone.add(t, testPeerName+". 60 IN A 127.0.0.1")
	return f
}

// ourLeaf returns our certificate files.
func (f *fixture) ourLeaf() tlsconf.LeafFiles { return f.pki.Leaves[testFQDN] }

// issue makes a leaf from the fixture's CA.
func (f *fixture) issue(t *testing.T, opt tlsconf.LeafOptions) tlsconf.LeafFiles {
	t.Helper()
	lf, err := tlsconf.IssueDevLeaf(filepath.Join(f.dir, "pki"), opt)
	if err != nil {
		t.Fatal(err)
	}
	return lf
}

// spec is what a test varies in the configuration.
type spec struct {
	cert, key  string
	clientAuth string      // of the one listener; default optional
	listenAddr string      // default 127.0.0.1:<fixture port>
	trunks     []trunkSpec // default: trunk "peer" to the fixture's peer
	minVersion string
}

type trunkSpec struct{ name, uri, identity string }

// config writes the YAML of s and parses it with config.Parse, as a
// deployment's file would be.
func (f *fixture) config(t *testing.T, s spec) *config.Config {
	t.Helper()
	y := f.yaml(s)
	c, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, y)
	}
	return c
}

func (f *fixture) yaml(s spec) string {
	if s.cert == "" {
		s.cert, s.key = f.ourLeaf().Cert, f.ourLeaf().Key
	}
	if s.clientAuth == "" {
		s.clientAuth = "optional"
	}
	if s.listenAddr == "" {
		s.listenAddr = fmt.Sprintf("127.0.0.1:%d", f.listenPort)
	}
	if len(s.trunks) == 0 {
		s.trunks = []trunkSpec{{name: "peer", uri: "sips:" + f.peer.addr, identity: testPeerName}}
	}
	if s.minVersion == "" {
		s.minVersion = "1.2"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node: {fqdn: %s, domains: [%s, %s]}\n", testFQDN, testFQDN, testDomain)
	fmt.Fprintf(&b, "tls: {cert: %q, key: %q, ca: %q, min_version: %q}\n", s.cert, s.key, f.pki.CA, s.minVersion)
	fmt.Fprintf(&b, "listen:\n  - {addr: %q, client_auth: %s}\n", s.listenAddr, s.clientAuth)
	b.WriteString("trunks:\n  - {name: inside}\n")
	for _, tr := range s.trunks {
		fmt.Fprintf(&b, "  - {name: %s, uri: %q, identity: %q}\n", tr.name, tr.uri, tr.identity)
	}
	b.WriteString("routes:\n")
	for _, tr := range s.trunks {
		fmt.Fprintf(&b, "  - {from: inside, to: %s}\n", tr.name)
	}
	fmt.Fprintf(&b, "dns: {servers: [%q], timeout: 1s, attempts: 1}\n", f.zone.addr)
	fmt.Fprintf(&b, "media: {port_range: %q, bind: 127.0.0.1}\n", f.mediaRange)
	return b.String()
}

// run runs every check with the test timeout.
func run(t *testing.T, c *config.Config) []Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return Run(ctx, c, Options{Timeout: testTimeout})
}

// find returns the result with id, failing the test when there is none.
func find(t *testing.T, rs []Result, id string) Result {
	t.Helper()
	for _, r := range rs {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no result %q in\n%s", id, dump(rs))
	return Result{}
}

// expect checks the verdict (and level) of result id and that its evidence
// contains each of substrs.
func expect(t *testing.T, rs []Result, id, level, verdict string, substrs ...string) Result {
	t.Helper()
	r := find(t, rs, id)
	if r.Verdict != verdict || r.Level != level {
		t.Errorf("%s: got %s/%s (%s), want %s/%s", id, r.Level, r.Verdict, r.Evidence, level, verdict)
	}
	for _, s := range substrs {
		if !strings.Contains(r.Evidence, s) {
			t.Errorf("%s: evidence %q lacks %q", id, r.Evidence, s)
		}
	}
	return r
}

func dump(rs []Result) string {
	var b strings.Builder
	_ = WriteTable(&b, rs)
	return b.String()
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freeUDPRange returns a small "min-max" range starting at a UDP port that
// was free a moment ago.
func freeUDPRange(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := pc.LocalAddr().(*net.UDPAddr).Port
	_ = pc.Close()
	p -= p % 2
	if p+9 > 65535 {
		p -= 10
	}
	return fmt.Sprintf("%d-%d", p, p+9)
}

// sipPeer is a SIP-over-TLS server on 127.0.0.1 answering every request
// with a fixed status, built with sipgo's parser and response constructor.
type sipPeer struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
}

func startPeer(t *testing.T, lf tlsconf.LeafFiles, status int, reason string) *sipPeer {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(lf.Cert, lf.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	p := &sipPeer{addr: ln.Addr().String(), ln: ln}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { answer(c, status, reason) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		p.wg.Wait()
	})
	return p
}

// answer reads requests from c and answers each.
func answer(c net.Conn, status int, reason string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	ps := sip.NewParser().NewSIPStream()
	defer ps.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			_, _ = ps.Write(buf[:n])
			for {
				msg, _, perr := ps.ParseNext()
				if errors.Is(perr, io.ErrUnexpectedEOF) {
					break
				}
				if perr != nil {
					return
				}
				req, ok := msg.(*sip.Request)
				if !ok {
					continue
				}
				res := sip.NewResponseFromRequest(req, status, reason, nil)
				if _, err := io.WriteString(c, res.String()); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// writeLeafOnly writes the first certificate of a chain file to a new file.
func writeLeafOnly(t *testing.T, chainFile string) string {
	t.Helper()
	b, err := os.ReadFile(chainFile)
	if err != nil {
		t.Fatal(err)
	}
	end := "-----END CERTIFICATE-----\n"
	i := strings.Index(string(b), end)
	if i < 0 {
		t.Fatal("no certificate")
	}
	out := filepath.Join(t.TempDir(), "leaf-only.pem")
	if err := os.WriteFile(out, b[:i+len(end)], 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// mustLeaf loads the leaf of lf.
func mustLeaf(t *testing.T, lf tlsconf.LeafFiles) *x509.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(lf.Cert, lf.Key)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}
