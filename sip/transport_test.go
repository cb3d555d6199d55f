package sip

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/media"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

func testStore(t *testing.T, names ...string) (*tlsconf.Store, tlsconf.DevFiles) {
	t.Helper()
	dir := t.TempDir()
	files, err := tlsconf.WriteDevPKI(dir, names, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	lf := files.Leaves[names[0]]
	st, err := tlsconf.LoadStore(lf.Cert, lf.Key, filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return st, files
}

func tosOf(t *testing.T, c net.Conn) int {
	t.Helper()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T has no raw socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var tos int
	var serr error
	if err := raw.Control(func(fd uintptr) { tos, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TOS) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return tos
}

// TestSignallingDSCP: outbound and inbound SIP TLS sockets are marked CS3
// (DSCP 24, TOS byte 96), and the dialed connection is verified against
// the trunk identity and read by the transport.
func TestSignallingDSCP(t *testing.T) {
	st, files := testStore(t, "sbc.test", "peer.test")
	peer := files.Leaves["peer.test"]
	peerCert, err := tls.LoadX509KeyPair(peer.Cert, peer.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{peerCert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				if c.(*tls.Conn).Handshake() == nil {
					accepted <- c
				}
			}()
		}
	}()
	tp := &transport{log: zerolog.Nop(), store: st, minTLS: tls.VersionTLS12, hsTimeout: 5 * time.Second, dscp: 24,
		metrics: NewMetrics(nil), handler: func(*conn, sip.Message) {}}
	tp.init()
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := tp.dial(ctx, addr, "", "wrong.test"); err == nil {
		t.Fatal("a peer with the wrong identity was accepted")
	}
	c1, err := tp.dial(ctx, addr, "", "peer.test")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got, err := tp.reusable(addr, "peer.test"); err != nil || got != c1 {
		t.Fatal("dialed connection not registered")
	}
	if got := tosOf(t, c1.nc); got != 24<<2 {
		t.Errorf("outbound TOS = %d, want %d (CS3)", got, 24<<2)
	}
	// A second dial reuses the connection.
	if c2, err := tp.dial(ctx, addr, "", "peer.test"); err != nil || c2 != c1 || tp.count() != 1 {
		t.Errorf("reuse: err=%v conns=%d", err, tp.count())
	}
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("peer saw no connection")
	}
	// The inbound side marks accepted sockets the same way.
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	go func() {
		c, err := net.Dial("tcp", l2.Addr().String())
		if err == nil {
			time.Sleep(200 * time.Millisecond)
			c.Close()
		}
	}()
	raw, err := l2.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if err := media.SetDSCP(raw, 24); err != nil {
		t.Fatal(err)
	}
	if got := tosOf(t, raw); got != 24<<2 {
		t.Errorf("inbound TOS = %d, want %d", got, 24<<2)
	}
	raw.Close()
	tp.closeAll()
	tp.wg.Wait()
}

func TestPerIPAdmission(t *testing.T) {
	tp := &transport{log: zerolog.Nop(), metrics: NewMetrics(nil),
		limits: func() config.Limits { return config.Limits{MaxConnectionsPerIP: 2, HandshakesPerIP: 3} }}
	tp.init()
	ip := netip.MustParseAddr("192.0.2.7")
	for i := 0; i < 2; i++ {
		if why := tp.admitConn(ip); why != "" {
			t.Fatalf("connection %d refused: %s", i+1, why)
		}
	}
	if why := tp.admitConn(ip); why == "" {
		t.Fatal("third concurrent connection admitted")
	}
	tp.releaseConn(ip)
	if why := tp.admitConn(ip); why != "" {
		t.Fatalf("a freed slot was refused: %s", why)
	}
	tp.releaseConn(ip)
	tp.releaseConn(ip)
	// Three handshakes were taken from the burst of 3: the next waits.
	if why := tp.admitConn(ip); why == "" {
		t.Fatal("handshake rate 3/s: a fourth handshake in the same second was admitted")
	}
	other := netip.MustParseAddr("192.0.2.8")
	if why := tp.admitConn(other); why != "" {
		t.Fatalf("another address refused: %s", why)
	}
}
