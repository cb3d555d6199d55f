package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
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

	"github.com/edge-sbc/edge-sbc/tlsconf"
)

const checkFQDN = "sbc.check.test"

// checkSetup writes a development PKI and a configuration into a temp dir,
// with a DNS server on loopback answering for checkFQDN (the A record only
// when withA) and a SIPS peer answering OPTIONS with 200.
func checkSetup(t *testing.T, withA bool) string {
	t.Helper()
	dir := t.TempDir()
	pki, err := tlsconf.WriteDevPKI(filepath.Join(dir, "pki"), []string{checkFQDN, "peer.check.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	records := []string{"1.0.0.127.in-addr.arpa. 60 IN PTR " + checkFQDN + "."}
	if withA {
		records = append(records, checkFQDN+". 60 IN A 127.0.0.1")
	}
	dnsAddr := serveDNS(t, records)
	peer := servePeer(t, pki.Leaves["peer.check.test"])

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	_ = l.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mp := pc.LocalAddr().(*net.UDPAddr).Port
	_ = pc.Close()
	mp -= mp % 2
	if mp+9 > 65535 {
		mp -= 10
	}

	us := pki.Leaves[checkFQDN]
	yaml := fmt.Sprintf(`node: {fqdn: %s}
tls: {cert: %q, key: %q, ca: %q}
listen:
  - {addr: %q, client_auth: required}
trunks:
  - {name: inside}
  - {name: peer, uri: "sips:%s", identity: peer.check.test}
routes:
  - {from: inside, to: peer}
dns: {servers: [%q], timeout: 1s}
media: {port_range: "%d-%d", bind: 127.0.0.1}
`, checkFQDN, us.Cert, us.Key, pki.CA, listen, peer, dnsAddr, mp, mp+9)
	path := filepath.Join(dir, "edge-sbc.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCmdCheckGood(t *testing.T) {
	path := checkSetup(t, true)
	var out bytes.Buffer
	if err := cmdCheck([]string{"--config", path, "--timeout", "2s"}, &out); err != nil {
		t.Fatalf("cmdCheck: %v\n%s", err, out.String())
	}
	for _, want := range []string{"VERDICT", "dns.a", "cert.eku.client", "trunk.options/peer/", "0 warn, 0 fail (0 must failed)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCmdCheckJSONMustFails(t *testing.T) {
	path := checkSetup(t, false)
	var out bytes.Buffer
	err := cmdCheck([]string{"--config", path, "--json"}, &out)
	if !errors.Is(err, errCheckFailed) {
		t.Fatalf("cmdCheck error = %v, want errCheckFailed", err)
	}
	var rs []struct {
		ID, Requirement, Level, Verdict, Evidence string
	}
	if err := json.Unmarshal(out.Bytes(), &rs); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out.String())
	}
	var a *struct{ ID, Requirement, Level, Verdict, Evidence string }
	for i := range rs {
		if rs[i].ID == "" || rs[i].Requirement == "" || rs[i].Level == "" || rs[i].Verdict == "" || rs[i].Evidence == "" {
			t.Errorf("incomplete object %+v", rs[i])
		}
		if rs[i].ID == "dns.a" {
			a = &rs[i]
		}
	}
	if a == nil || a.Level != "must" || a.Verdict != "fail" {
		t.Errorf("dns.a = %+v, want a failed must", a)
	}
}

func TestCmdCheckUsage(t *testing.T) {
	var out bytes.Buffer
	if err := cmdCheck(nil, &out); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("no --config: err = %v", err)
	}
	if err := cmdCheck([]string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, &out); err == nil {
		t.Error("missing file: no error")
	}
	if err := cmdCheck([]string{"--config", "x", "--timeout", "0s"}, &out); err == nil {
		t.Error("zero timeout: no error")
	}
}

// serveDNS answers from records on 127.0.0.1 (UDP); other names NXDOMAIN.
func serveDNS(t *testing.T, records []string) string {
	t.Helper()
	var rrs []dns.RR
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		exists := false
		for _, rr := range rrs {
			if strings.EqualFold(rr.Header().Name, q.Name) {
				exists = true
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, rr)
				}
			}
		}
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("dns server did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// servePeer runs a SIPS server answering each request with 200 OK.
func servePeer(t *testing.T, lf tlsconf.LeafFiles) string {
	t.Helper()
	return servePeerOn(t, "127.0.0.1:0", lf)
}

// servePeerOn is servePeer on addr.
func servePeerOn(t *testing.T, addr string, lf tlsconf.LeafFiles) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(lf.Cert, lf.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { answerOK(c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func answerOK(c net.Conn) {
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
				if perr != nil {
					break
				}
				if req, ok := msg.(*sip.Request); ok {
					if _, err := io.WriteString(c, sip.NewResponseFromRequest(req, 200, "OK", nil).String()); err != nil {
						return
					}
				}
			}
		}
		if err != nil {
			return
		}
	}
}
