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
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

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
func Run(t *testing.T) {
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
	args := []string{"netns", "exec", topo.SBC, os.Args[0], "-test.run", "^" + t.Name() + "$", "-test.count=1", "-test.v"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), envInside+"="+topo.SBC+" "+topo.A+" "+topo.B)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	s := out.String()
	t.Logf("in netns %s:\n%s", topo.SBC, s)
	switch {
	case strings.Contains(s, "--- SKIP"):
		t.Skip("skipped in the namespace (see above)")
	case err != nil || !strings.Contains(s, "--- PASS"):
		t.Fatalf("run in netns %s: %v", topo.SBC, err)
	}
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
