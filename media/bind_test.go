package media

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// notLocal is TEST-NET-1 (RFC 5737): never an address of the test host.
var notLocal = netip.MustParseAddr("192.0.2.1")

// skipIfNonlocalBind skips when the host lets sockets bind foreign
// addresses (net.ipv4.ip_nonlocal_bind), where EADDRNOTAVAIL never comes.
func skipIfNonlocalBind(t *testing.T) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: notLocal.AsSlice()})
	if err == nil {
		_ = c.Close()
		t.Skip("this host binds non-local addresses (ip_nonlocal_bind)")
	}
	if !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Skipf("binding %v fails with %v, not EADDRNOTAVAIL", notLocal, err)
	}
}

// TestBindAddressNotLocal: an engine bound to an address the host does not
// have fails the allocation at once with ErrAddressNotLocal (and
// ErrPortsExhausted, for the 503), and leaves the pool as it was instead of
// quarantining every pair.
func TestBindAddressNotLocal(t *testing.T) {
	skipIfNonlocalBind(t)
	e := testEngine(t, func(c *Config) {
		c.BindAddr = notLocal
		c.PortMin, c.PortMax = 12700, 12799 // 50 pairs
		c.Quarantine = 2 * time.Second
	})
	free := e.PortsFree()
	s := e.NewSession(SessionConfig{AdvertiseA: advA, AdvertiseB: advB})
	defer s.Close()
	start := time.Now()
	_, err := s.Offer(SideA, webexOffer)
	took := time.Since(start)
	if !errors.Is(err, ErrAddressNotLocal) || !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("err = %v, want ErrAddressNotLocal and ErrPortsExhausted", err)
	}
	if !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("err = %v does not carry EADDRNOTAVAIL", err)
	}
	if took > 100*time.Millisecond {
		t.Errorf("allocation took %v to fail", took)
	}
	inUse, gotFree, quarantined := e.pool.counts()
	if gotFree*2 != free || inUse != 0 || quarantined != 0 {
		t.Fatalf("pool after the failure: free %d ports (was %d), in use %d pairs, quarantined %d pairs",
			gotFree*2, free, inUse, quarantined)
	}
}

func TestCheckBindAddress(t *testing.T) {
	for _, a := range []string{"127.0.0.1", "0.0.0.0", "::"} {
		if err := CheckBindAddress(netip.MustParseAddr(a)); err != nil {
			t.Errorf("CheckBindAddress(%s) = %v, want nil", a, err)
		}
	}
	skipIfNonlocalBind(t)
	err := CheckBindAddress(notLocal)
	if !errors.Is(err, ErrAddressNotLocal) {
		t.Fatalf("CheckBindAddress(%v) = %v, want ErrAddressNotLocal", notLocal, err)
	}
}

// TestPortTakenNotForMissingAddress: EADDRNOTAVAIL is not a taken port
// (trying the next pair cannot help).
func TestPortTakenNotForMissingAddress(t *testing.T) {
	if portTaken(fmt.Errorf("listen: %w", syscall.EADDRNOTAVAIL)) {
		t.Fatal("EADDRNOTAVAIL counted as a taken port: every pair would be tried and quarantined")
	}
}

// TestDualStackBind: a relay bound to "::" carries IPv4 peers (here A) as
// well as IPv6 peers (here B), both ways.
func TestDualStackBind(t *testing.T) {
	v6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	e := testEngine(t, func(c *Config) { c.BindAddr = netip.IPv6Unspecified() })
	a := newPeer(t) // IPv4, 127.0.0.1
	b := &peer{t: t, conn: v6}
	t.Cleanup(func() { _ = v6.Close() })
	lo6 := netip.IPv6Loopback()
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo6})
	defer s.Close()
	toB, err := s.Offer(SideA, audioSDP(lo, a.port()))
	if err != nil {
		t.Fatal(err)
	}
	answer := bytes.ReplaceAll(audioSDP(lo, b.port()), []byte("IN IP4 127.0.0.1"), []byte("IN IP6 ::1"))
	toA, err := s.Answer(SideB, answer)
	if err != nil {
		t.Fatal(err)
	}
	portA, portB := mediaPort(t, toA, 0), mediaPort(t, toB, 0)

	for i := range 5 {
		pkt := rtpPacket(0, uint16(i), uint32(160*i), 0xA, 172)
		a.send(portA, pkt) // IPv4 to the "::"-bound socket
		if got, _ := b.recv(time.Second); !bytes.Equal(got, pkt) {
			t.Fatalf("A (IPv4) -> B (IPv6) packet %d modified", i)
		}
		back := rtpPacket(0, uint16(i), uint32(160*i), 0xB, 172)
		if _, err := b.conn.WriteToUDPAddrPort(back, netip.AddrPortFrom(lo6, uint16(portB))); err != nil {
			t.Fatal(err)
		}
		got, from := a.recv(time.Second)
		if !bytes.Equal(got, back) {
			t.Fatalf("B (IPv6) -> A (IPv4) packet %d modified", i)
		}
		if from != netip.AddrPortFrom(lo, uint16(portA)) {
			t.Fatalf("B -> A came from %v, want 127.0.0.1:%d", from, portA)
		}
	}
	if st := s.Stats()[0]; st.FromA.Drops.Total()+st.FromB.Drops.Total() != 0 {
		t.Fatalf("drops: %+v / %+v", st.FromA.Drops, st.FromB.Drops)
	}
}
