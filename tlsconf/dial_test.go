package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tlsServer accepts TLS connections with cfg on loopback, completes each
// handshake and records the SNI it saw; it is closed at cleanup.
func tlsServer(t *testing.T, cfg *tls.Config) (addr string, sni func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen []string
		wg   sync.WaitGroup
	)
	c := cfg.Clone()
	inner := c.GetConfigForClient
	c.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		seen = append(seen, h.ServerName)
		mu.Unlock()
		if inner != nil {
			return inner(h)
		}
		return nil, nil
	}
	wg.Go(func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer raw.Close()
				tc := tls.Server(raw, c)
				_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
				if tc.Handshake() == nil {
					_, _ = tc.Read(make([]byte, 1)) // until the client closes
				}
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// dialBed is a TLS server presenting sbc.example.net (with mode) and the
// client's Store (client.example.org), from one development CA.
func dialBed(t *testing.T, mode ClientAuth) (cli *Store, addr string, sni func() []string) {
	t.Helper()
	p := newPKI(t)
	addr, sni = tlsServer(t, NewServerConfig(p.store(t, "sbc.example.net"), mode, 0))
	return p.store(t, "client.example.org"), addr, sni
}

func TestDial(t *testing.T) {
	cli, addr, sni := dialBed(t, ClientAuthRequired)
	ctx := t.Context()

	var controlled []string
	conn, raw, err := Dial(ctx, DialOptions{Addr: addr, SNI: "sbc.example.net", Store: cli, Timeout: 5 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			controlled = append(controlled, network+" "+address)
			return nil
		}})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if conn.NetConn() != raw {
		t.Error("raw is not the connection under the TLS connection")
	}
	if cs := conn.ConnectionState(); !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		t.Errorf("handshake state %+v", cs)
	}
	_ = raw.Close()
	if len(controlled) != 1 || controlled[0] != "tcp4 "+addr {
		t.Errorf("Control calls %v, want one for tcp4 %s", controlled, addr)
	}

	// An IP literal target is dialed without SNI; the identity decides.
	conn, raw, err = Dial(ctx, DialOptions{Addr: addr, SNI: "127.0.0.1", Identity: "sbc.example.net", Store: cli, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("Dial by IP with identity: %v", err)
	}
	_ = conn.Close()
	_ = raw.Close()
	if got := sni(); len(got) != 2 || got[0] != "sbc.example.net" || got[1] != "" {
		t.Errorf("server saw SNI %q, want [sbc.example.net, \"\"]", got)
	}
}

// TestDialRefused: each failure is typed; Classify gives the reason of a
// refused certificate (the same for the B2BUA and for check), and the
// chain the server presented is in the error.
func TestDialRefused(t *testing.T) {
	cli, addr, _ := dialBed(t, ClientAuthNone)
	ctx := t.Context()

	_, _, err := Dial(ctx, DialOptions{Addr: addr, SNI: "other.example.net", Store: cli, Timeout: 5 * time.Second})
	he, ok := errors.AsType[*HandshakeError](err)
	if !ok {
		t.Fatalf("wrong name: err = %T %v, want *HandshakeError", err, err)
	}
	if reason, detail := Classify(err); reason != ReasonWrongName || detail != `server certificate is for "sbc.example.net", "127.0.0.1", expected "other.example.net"` {
		t.Errorf("Classify = %s, %q", reason, detail)
	}
	if r, d := Classify(he.Err); r != ReasonWrongName || err.Error() != he.Err.Error() {
		t.Errorf("the wrapper changes the classification or the text: %s %q vs %q", r, d, err.Error())
	}
	if len(he.Peer) == 0 || he.Peer[0].Subject.CommonName != "sbc.example.net" || he.Addr != addr {
		t.Errorf("HandshakeError %+v lacks the peer chain or the address", he)
	}

	other, err := WriteDevPKI(t.TempDir(), []string{"sbc.example.net"}, loopback)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := LoadStore(other.Leaves["sbc.example.net"].Cert, other.Leaves["sbc.example.net"].Key, other.CA)
	if err != nil {
		t.Fatal(err)
	}
	addr2, _ := tlsServer(t, NewServerConfig(foreign, ClientAuthNone, 0))
	_, _, err = Dial(ctx, DialOptions{Addr: addr2, SNI: "sbc.example.net", Store: cli, Timeout: 5 * time.Second})
	if reason, _ := Classify(err); reason != ReasonUnknownCA {
		t.Errorf("foreign CA: reason %s (%v)", reason, err)
	}

	// Nothing listens: a ConnectError, no handshake.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	_, _, err = Dial(ctx, DialOptions{Addr: closed, SNI: "sbc.example.net", Store: cli, Timeout: 5 * time.Second})
	if ce, ok := errors.AsType[*ConnectError](err); !ok || ce.Addr != closed || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("closed port: err = %T %v, want *ConnectError (connection refused)", err, err)
	}

	// A peer that never speaks TLS: the timeout ends the handshake.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	start := time.Now()
	_, _, err = Dial(ctx, DialOptions{Addr: mute.Addr().String(), SNI: "sbc.example.net", Store: cli, Timeout: 200 * time.Millisecond})
	if reason, detail := Classify(err); reason != ReasonHandshake || detail != "handshake timed out" || time.Since(start) > 3*time.Second {
		t.Errorf("mute peer: %s %q after %s", reason, detail, time.Since(start))
	}
}

func TestParseIPLiteral(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" = not a literal
	}{
		{"192.0.2.1", "192.0.2.1"},
		{"2001:db8::1", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"[192.0.2.1]", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"fe80::1%eth0", "fe80::1%eth0"},
		{"sip.example.com", ""},
		{"1.example", ""},
		{"[example.com]", ""},
		{"[]", ""},
		{"", ""},
		{" 192.0.2.1", ""},
		{"192.0.2", ""},
	} {
		got, ok := ParseIPLiteral(tc.in)
		if ok != (tc.want != "") || ok && got != netip.MustParseAddr(tc.want) {
			t.Errorf("ParseIPLiteral(%q) = %v, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}

func TestDialNoStore(t *testing.T) {
	if _, _, err := Dial(context.Background(), DialOptions{Addr: "127.0.0.1:1"}); err == nil {
		t.Fatal("Dial without a Store succeeded")
	}
}
