//go:build linux

package media

import (
	"net"
	"syscall"
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

// dscpPerMLine sends one packet each way on every m-line of webexOffer
// (audio, main video, content video a=content:slides, BFCP) through an
// engine built with mod, and returns the TOS byte received for each, or
// fails when the two directions differ.
func dscpPerMLine(t *testing.T, mod func(*Config)) []int {
	t.Helper()
	e := testEngine(t, mod)
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
	var got []int
	for i := range 4 {
		portA, _ := s.Ports(i)
		a.send(portA, rtpPacket(0, 1, 0, 1, 172))
		towardB := recvTOS(t, b.conn)
		b.send(mediaPort(t, toB, i), rtpPacket(0, 1, 0, 1, 172))
		if towardA := recvTOS(t, a.conn); towardA != towardB {
			t.Errorf("m-line %d: TOS toward A %d, toward B %d", i, towardA, towardB)
		}
		got = append(got, towardB)
	}
	return got
}

// TestDSCPOnTheWire: with the defaults, audio is EF, main and content
// video AF41, and the BFCP stream (floor control, i.e. call control) CS3,
// the signalling code point. Content video and BFCP used to share one
// class marked like video.
func TestDSCPOnTheWire(t *testing.T) {
	got := dscpPerMLine(t, nil)
	want := []int{46 << 2, 34 << 2, 34 << 2, 24 << 2}
	for i, what := range []string{"audio", "main video", "content video", "BFCP"} {
		if got[i] != want[i] {
			t.Errorf("m-line %d (%s): TOS %d, want %d", i, what, got[i], want[i])
		}
	}
}

// TestDSCPApplicationFollowsItsKnob: DSCPApplication marks BFCP only;
// DSCPVideo marks main and content video.
func TestDSCPApplicationFollowsItsKnob(t *testing.T) {
	got := dscpPerMLine(t, func(c *Config) { c.DSCPVideo, c.DSCPApplication = 36, 18 })
	want := []int{46 << 2, 36 << 2, 36 << 2, 18 << 2}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("m-line %d: TOS %d, want %d", i, got[i], want[i])
		}
	}
}

func TestDSCPCustomValues(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.DSCPAudio, c.DSCPApplication = 40, 26 })
	a, b := newPeer(t), newPeer(t)
	enableRecvTOS(t, b.conn)
	s, portA, _ := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	a.send(portA, rtpPacket(0, 1, 0, 1, 172))
	if got := recvTOS(t, b.conn); got != 40<<2 {
		t.Fatalf("TOS %d, want %d", got, 40<<2)
	}
}

// TestSetDSCPTCP: SetDSCP marks an established TCP connection (through a
// wrapper with NetConn) and GetDSCP reads it back; DSCPControl marks a
// socket before it connects, IPv4 and IPv6 alike.
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
	if err := SetDSCP(wrapped{c}, 24); err != nil {
		t.Fatal(err)
	}
	if tos := sockopt(t, c, unix.IPPROTO_IP, unix.IP_TOS); tos != 24<<2 {
		t.Fatalf("IP_TOS = %d, want %d", tos, 24<<2)
	}
	if got, err := GetDSCP(c); err != nil || got != 24 {
		t.Fatalf("GetDSCP = %d, %v; want 24", got, err)
	}
	if err := SetDSCP(c, 64); err == nil {
		t.Fatal("DSCP 64 accepted")
	}

	if DSCPControl(0) != nil || DSCPControl(-1) != nil {
		t.Error("DSCPControl of best effort is not nil")
	}
	d := net.Dialer{Control: DSCPControl(26)}
	c4, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if tos := sockopt(t, c4, unix.IPPROTO_IP, unix.IP_TOS); tos != 26<<2 {
		t.Errorf("dialed IPv4: IP_TOS = %d, want %d", tos, 26<<2)
	}
	if _, err := (&net.Dialer{Control: DSCPControl(64)}).Dial("tcp4", ln.Addr().String()); err == nil {
		t.Error("a dial with DSCP 64 succeeded")
	}

	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln6.Close()
	c6, err := d.Dial("tcp6", ln6.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c6.Close()
	if tc := sockopt(t, c6, unix.IPPROTO_IPV6, unix.IPV6_TCLASS); tc != 26<<2 {
		t.Errorf("dialed IPv6: IPV6_TCLASS = %d, want %d", tc, 26<<2)
	}
	if got, err := GetDSCP(c6); err != nil || got != 26 {
		t.Errorf("GetDSCP IPv6 = %d, %v; want 26", got, err)
	}
}

// wrapped stands for *tls.Conn: a connection with NetConn.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

func sockopt(t *testing.T, c net.Conn, level, opt int) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}
