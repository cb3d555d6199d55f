// Package nstest builds, for tests of the kernel fast path, a topology of
// network namespaces the test owns: side A and side B, each in its own
// namespace, connected by veth pairs to the SBC's namespace, in which the
// test re-runs itself (the fast path attaches to every interface of the
// namespace it runs in, so it must never run in the host's).
//
//	netns <sbc>  veth "sa" 10.77.1.1/24  <->  netns <a> veth "a" 10.77.1.2/24
//	             veth "sb" 10.77.2.1/24  <->  netns <b> veth "b" 10.77.2.2/24
//
// Checksum offloads are off on every veth, so that captured checksums are
// the ones on the wire.
package nstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the topology.
var (
	SBCA = netip.MustParseAddr("10.77.1.1") // the SBC facing side A
	A    = netip.MustParseAddr("10.77.1.2")
	SBCB = netip.MustParseAddr("10.77.2.1") // the SBC facing side B
	B    = netip.MustParseAddr("10.77.2.2")
)

const envInside = "EDGE_SBC_NSTEST" // "<sbc> <a> <b>" in the re-run test

// Topo names the namespaces of one test.
type Topo struct{ SBC, A, B string }

// Inside returns the topology when the test runs in the SBC's namespace
// (re-run by Run), or false in the test's first run.
func Inside() (Topo, bool) {
	f := strings.Fields(os.Getenv(envInside))
	if len(f) != 3 {
		return Topo{}, false
	}
	return Topo{SBC: f[0], A: f[1], B: f[2]}, true
}

// Run builds the topology and re-runs test t (its name must be unique
// under -test.run) in the SBC's namespace, failing t when that run fails.
// It skips t when not root or when `ip` is missing. Call it only when
// Inside returns false.
func Run(t *testing.T) { t.Helper(); RunWith(t) }

// RunWith is Run with the re-run test started through wrap (a command and
// its arguments, such as setpriv dropping capabilities).
func RunWith(t *testing.T, wrap ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and loads eBPF")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
	id := fmt.Sprintf("%d-%04x", os.Getpid(), rand.IntN(1<<16))
	topo := Topo{SBC: "esbc-s" + id, A: "esbc-a" + id, B: "esbc-b" + id}
	t.Cleanup(func() {
		for _, ns := range []string{topo.SBC, topo.A, topo.B} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	steps := [][]string{
		{"netns", "add", topo.SBC}, {"netns", "add", topo.A}, {"netns", "add", topo.B},
		{"-n", topo.SBC, "link", "add", "sa", "type", "veth", "peer", "name", "a", "netns", topo.A},
		{"-n", topo.SBC, "link", "add", "sb", "type", "veth", "peer", "name", "b", "netns", topo.B},
		{"-n", topo.SBC, "addr", "add", SBCA.String() + "/24", "dev", "sa"},
		{"-n", topo.SBC, "addr", "add", SBCB.String() + "/24", "dev", "sb"},
		{"-n", topo.A, "addr", "add", A.String() + "/24", "dev", "a"},
		{"-n", topo.B, "addr", "add", B.String() + "/24", "dev", "b"},
		{"-n", topo.SBC, "link", "set", "dev", "lo", "up"}, {"-n", topo.SBC, "link", "set", "dev", "sa", "up"}, {"-n", topo.SBC, "link", "set", "dev", "sb", "up"},
		{"-n", topo.A, "link", "set", "dev", "lo", "up"}, {"-n", topo.A, "link", "set", "dev", "a", "up"},
		{"-n", topo.B, "link", "set", "dev", "lo", "up"}, {"-n", topo.B, "link", "set", "dev", "b", "up"},
		{"-n", topo.A, "route", "add", "default", "via", SBCA.String()},
		{"-n", topo.B, "route", "add", "default", "via", SBCB.String()},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	if _, err := exec.LookPath("ethtool"); err == nil {
		for _, x := range [][2]string{{topo.SBC, "sa"}, {topo.SBC, "sb"}, {topo.A, "a"}, {topo.B, "b"}} {
			out, err := exec.Command("ip", "netns", "exec", x[0], "ethtool", "-K", x[1], "tx", "off", "rx", "off").CombinedOutput()
			if err != nil {
				t.Fatalf("ethtool -K %s tx off rx off: %v: %s", x[1], err, out)
			}
		}
	} else {
		t.Log("ethtool missing: veth checksum offloads stay on")
	}
	Rerun(t, topo.SBC, wrap, envInside+"="+topo.SBC+" "+topo.A+" "+topo.B)
}

// In runs fn on a thread that has entered namespace ns: sockets fn opens
// belong to ns and stay there. Only the calling thread changes namespace,
// and it is put back before it is released.
func In(ns string, fn func() error) error {
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		return fmt.Errorf("nstest: %w", err)
	}
	defer f.Close()
	self, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
	if err != nil {
		return fmt.Errorf("nstest: %w", err)
	}
	defer self.Close()
	runtime.LockOSThread()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("nstest: setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked: the runtime ends it with the goroutine.
		return fmt.Errorf("nstest: setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// ListenUDP opens a UDP socket in namespace ns on addr (port 0: any).
func ListenUDP(ns string, addr netip.AddrPort) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := In(ns, func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	})
	return c, err
}

// Capture opens a raw socket (AF_PACKET, cooked) on interface ifc of
// namespace ns: it sees IPv4 packets as they arrived, before any socket.
func Capture(t *testing.T, ns, ifc string) int {
	t.Helper()
	var fd int
	err := In(ns, func() error {
		i, err := net.InterfaceByName(ifc)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: i.Index})
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", ifc, err)
	}
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	return fd // read it with unix.Read: each read is one IPv4 packet
}

func htons(v uint16) uint16 { return v>>8 | v<<8 }

// csum is the Internet checksum of b (RFC 1071), folded, not inverted.
func csum(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum
}

// CheckIPv4UDP verifies the IPv4 header and UDP checksums of packet ip.
func CheckIPv4UDP(ip []byte) error {
	if len(ip) < 28 || ip[0] != 0x45 || ip[9] != unix.IPPROTO_UDP {
		return errors.New("not an IPv4 UDP packet without options")
	}
	if csum(0, ip[:20]) != 0xffff {
		return errors.New("bad IPv4 header checksum")
	}
	udp := ip[20:]
	if binary.BigEndian.Uint16(udp[6:]) == 0 {
		return errors.New("no UDP checksum")
	}
	pseudo := csum(0, ip[12:20]) + uint32(unix.IPPROTO_UDP) + uint32(len(udp))
	if csum(pseudo, udp) != 0xffff {
		return errors.New("bad UDP checksum")
	}
	return nil
}
