//go:build linux

package media

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// recvTOS reads one datagram on c (which has IP_RECVTOS set) and returns
// the TOS byte of its IP header.
func recvTOS(t *testing.T, c *net.UDPConn) int {
	t.Helper()
	buf := make([]byte, 2048)
	oob := make([]byte, 128)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, oobn, _, _, err := c.ReadMsgUDP(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) > 0 {
			return int(m.Data[0])
		}
	}
	t.Fatal("no IP_TOS control message")
	return -1
}

func enableRecvTOS(t *testing.T, c *net.UDPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
}

func TestDSCPOnTheWire(t *testing.T) {
	// DSCPOther differs from its default so content/BFCP are told apart
	// from main video.
	e := testEngine(t, func(c *Config) { c.DSCPOther = 18 })
	a, b := newPeer(t), newPeer(t)
	enableRecvTOS(t, b.conn)
	enableRecvTOS(t, a.conn)
	s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
	defer s.Close()
	offer := []byte(string(webexOffer))
	// Point every stream of A and B at the test peers (one socket each).
	toB, err := s.Offer(SideA, []byte(replacePorts(string(offer), "127.0.0.22", a.port())))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideB, []byte(replacePorts(string(offer), "127.0.0.22", b.port()))); err != nil {
		t.Fatal(err)
	}
	want := []int{46 << 2, 34 << 2, 18 << 2, 18 << 2}
	for i, w := range want {
		portA, _ := s.Ports(i)
		a.send(portA, rtpPacket(0, 1, 0, 1, 172))
		if got := recvTOS(t, b.conn); got != w {
			t.Errorf("m-line %d: TOS toward B = %d, want %d", i, got, w)
		}
		b.send(mediaPort(t, toB, i), rtpPacket(0, 1, 0, 1, 172))
		if got := recvTOS(t, a.conn); got != w {
			t.Errorf("m-line %d: TOS toward A = %d, want %d", i, got, w)
		}
	}
}

func TestDSCPCustomValues(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.DSCPAudio, c.DSCPOther = 40, 26 })
	a, b := newPeer(t), newPeer(t)
	enableRecvTOS(t, b.conn)
	s, portA, _ := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	a.send(portA, rtpPacket(0, 1, 0, 1, 172))
	if got := recvTOS(t, b.conn); got != 40<<2 {
		t.Fatalf("TOS %d, want %d", got, 40<<2)
	}
}

func TestSetDSCPTCP(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := SetDSCP(c, 24); err != nil {
		t.Fatal(err)
	}
	rc, _ := c.(*net.TCPConn).SyscallConn()
	var tos int
	var gerr error
	_ = rc.Control(func(fd uintptr) { tos, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS) })
	if gerr != nil || tos != 24<<2 {
		t.Fatalf("IP_TOS = %d (%v), want %d", tos, gerr, 24<<2)
	}
	if err := SetDSCP(c, 64); err == nil {
		t.Fatal("DSCP 64 accepted")
	}
}
