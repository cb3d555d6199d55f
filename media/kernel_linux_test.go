package media

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/edge-sbc/edge-sbc/media/fastpath/nstest"
	"github.com/edge-sbc/edge-sbc/test/syncbuf"
)

// The kernel fast path tests run in network namespaces of their own (see
// nstest): side A at 10.77.1.2, side B at 10.77.2.2, the SBC between them
// bound to 0.0.0.0. They skip when not root or when eBPF cannot load.

func kernelEngine(t *testing.T, logs *syncbuf.Buffer, timeout time.Duration) *Engine {
	t.Helper()
	e, err := NewEngine(Config{
		PortMin: 40000, PortMax: 40099, BindAddr: netip.IPv4Unspecified(), Quarantine: -1,
		LearnWindow: 100 * time.Millisecond, Timeout: timeout, Fastpath: FastpathAuto,
	}, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// nsPeer is a UDP socket of side A or B in its namespace.
type nsPeer struct {
	t    *testing.T
	conn *net.UDPConn
	buf  []byte
}

func newNSPeer(t *testing.T, ns string, ap netip.AddrPort) *nsPeer {
	t.Helper()
	c, err := nstest.ListenUDP(ns, ap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &nsPeer{t: t, conn: c, buf: make([]byte, 4096)}
}

func (p *nsPeer) send(to netip.AddrPort, b []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

func (p *nsPeer) recv(d time.Duration) ([]byte, netip.AddrPort, error) {
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := p.conn.ReadFromUDPAddrPort(p.buf)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return p.buf[:n], from, nil
}

// kernelCall is an answered audio call between A (5000) and B (6000).
type kernelCall struct {
	t              *testing.T
	e              *Engine
	s              *Session
	a, b           *nsPeer
	toSBCA, toSBCB netip.AddrPort // the SBC's ports facing A and B
	seqA, seqB     uint16
	sentA          int
	start          time.Time // RTP timestamps follow the clock: jitter is the network's
}

// ts is the RTP timestamp (8 kHz) of a packet sent now.
func (c *kernelCall) ts() uint32 { return uint32(time.Since(c.start).Microseconds() * 8 / 1000) }

const ssrcA, ssrcB = 0xaaaa0001, 0xbbbb0002

func newKernelCall(t *testing.T, e *Engine, topo nstest.Topo, onTimeout func()) *kernelCall {
	t.Helper()
	c := &kernelCall{t: t, e: e, start: time.Now(),
		a: newNSPeer(t, topo.A, netip.AddrPortFrom(nstest.A, 5000)),
		b: newNSPeer(t, topo.B, netip.AddrPortFrom(nstest.B, 6000)),
	}
	c.s = e.NewSession(SessionConfig{CallID: "k", AdvertiseA: nstest.SBCA, AdvertiseB: nstest.SBCB, OnTimeout: onTimeout})
	t.Cleanup(func() { c.s.Close() })
	c.offerAnswer()
	return c
}

func (c *kernelCall) offerAnswer() {
	c.t.Helper()
	toB, err := c.s.Offer(SideA, audioSDP(nstest.A, 5000))
	if err != nil {
		c.t.Fatal(err)
	}
	toA, err := c.s.Answer(SideB, audioSDP(nstest.B, 6000))
	if err != nil {
		c.t.Fatal(err)
	}
	c.toSBCA = netip.AddrPortFrom(nstest.SBCA, uint16(mediaPort(c.t, toA, 0)))
	c.toSBCB = netip.AddrPortFrom(nstest.SBCB, uint16(mediaPort(c.t, toB, 0)))
}

// exchange sends one packet each way and checks that both arrive intact,
// from the SBC's port facing the receiver.
func (c *kernelCall) exchange() {
	c.t.Helper()
	c.seqA++
	c.seqB++
	pa := rtpPacket(0, c.seqA, c.ts(), ssrcA, 172)
	pb := rtpPacket(0, c.seqB, c.ts(), ssrcB, 172)
	c.a.send(c.toSBCA, pa)
	c.sentA++
	c.expect(c.b, pa, c.toSBCB)
	c.b.send(c.toSBCB, pb)
	c.expect(c.a, pb, c.toSBCA)
}

func (c *kernelCall) expect(p *nsPeer, want []byte, from netip.AddrPort) {
	c.t.Helper()
	got, src, err := p.recv(2 * time.Second)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	if !bytes.Equal(got, want) {
		c.t.Fatalf("payload changed: got %d bytes, want %d", len(got), len(want))
	}
	if src != from {
		c.t.Fatalf("from %v, want the SBC's %v", src, from)
	}
}

// untilKernel exchanges packets until the stream is in the kernel.
func (c *kernelCall) untilKernel() {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.e.FastpathStreams() != 1 {
		if time.Now().After(deadline) {
			c.t.Fatalf("the stream did not move into the kernel")
		}
		c.exchange()
		time.Sleep(20 * time.Millisecond)
	}
}

// userspacePackets is what the relay's sockets received (both legs).
func (c *kernelCall) userspacePackets() (a, b uint64) {
	st := c.s.streams[0]
	return st.legs[SideA].rtp.stats.packets.Load(), st.legs[SideB].rtp.stats.packets.Load()
}

// TestKernelRelay: a latched pass-through stream moves into the kernel;
// its packets arrive byte-identical from the SBC's ports with valid
// checksums and the relay's sockets see none of them; a stranger is not
// forwarded; a re-offer brings the stream back to userspace losing no
// packet; the kernel's counters keep the dead-media timer quiet and end
// in the stats; Close detaches the program.
func TestKernelRelay(t *testing.T) {
	topo, inside := nstest.Inside()
	if !inside {
		nstest.Run(t)
		return
	}
	var logs syncbuf.Buffer
	const timeout = 2 * time.Second
	e := kernelEngine(t, &logs, timeout)
	if e.FastpathInterfaces() == nil {
		t.Skipf("the fast path cannot load here:\n%s", logs.String())
	}
	var timedOut atomic.Bool
	c := newKernelCall(t, e, topo, func() { timedOut.Store(true) })
	c.untilKernel()
	t.Logf("in the kernel after %d packets each way", c.sentA)

	// In the kernel: intact, checksums valid, no userspace read.
	raw := nstest.Capture(t, topo.B, "b")
	ua, ub := c.userspacePackets()
	buf := make([]byte, 2048)
	const n = 200
	for range n {
		c.exchange()
		for {
			m, err := unix.Read(raw, buf)
			if err != nil {
				t.Fatalf("capture: %v", err)
			}
			ip := buf[:m]
			if len(ip) < 28 || netip.AddrFrom4([4]byte(ip[16:20])) != nstest.B {
				continue // not toward B (ARP is not captured, ICMP could be)
			}
			if err := nstest.CheckIPv4UDP(ip); err != nil {
				t.Fatal(err)
			}
			if ip[1] != DefaultDSCPAudio<<2 {
				t.Fatalf("TOS %#x, want EF (%#x)", ip[1], DefaultDSCPAudio<<2)
			}
			break
		}
	}
	if a, b := c.userspacePackets(); a != ua || b != ub {
		t.Fatalf("the relay's sockets received %d and %d packets while in the kernel", a-ua, b-ub)
	}
	ss := c.s.Stats()[0]
	if !ss.Kernel || ss.FromA.KernelPackets < n || ss.FromB.KernelPackets < n {
		t.Fatalf("stats do not show the kernel: %+v", ss)
	}

	// A stranger (another source, another SSRC) is not forwarded.
	stranger := newNSPeer(t, topo.A, netip.AddrPortFrom(nstest.A, 5002))
	stranger.send(c.toSBCA, rtpPacket(0, 1, 160, 0x5555, 172))
	if got, from, err := c.b.recv(300 * time.Millisecond); err == nil {
		t.Fatalf("B received %d bytes from %v after a stranger sent", len(got), from)
	}
	if d := c.s.Stats()[0].FromA.Drops.Stranger; d != 1 {
		t.Fatalf("stranger drops %d, want 1", d)
	}
	if e.FastpathStreams() != 1 {
		t.Fatal("a stranger took the stream out of the kernel")
	}

	// The dead-media timer sees the kernel's packets.
	for end := time.Now().Add(timeout + time.Second); time.Now().Before(end); {
		c.exchange()
		time.Sleep(20 * time.Millisecond)
	}
	if timedOut.Load() {
		t.Fatal("media timed out while the kernel forwarded it")
	}

	// A re-offer in the middle of a burst: back to userspace, nothing lost.
	const burst = 600
	got := make(chan int, 1)
	go func() {
		seen := map[uint16]bool{}
		for len(seen) < burst {
			p, _, err := c.b.recv(2 * time.Second)
			if err != nil {
				break
			}
			if len(p) >= 12 && binary.BigEndian.Uint32(p[8:12]) == ssrcA {
				seen[binary.BigEndian.Uint16(p[2:4])] = true
			}
		}
		got <- len(seen)
	}()
	first := c.seqA + 1
	for i := range burst {
		c.seqA++
		c.a.send(c.toSBCA, rtpPacket(0, c.seqA, c.ts(), ssrcA, 172))
		c.sentA++
		if i == burst/3 {
			c.offerAnswer()
			if e.FastpathStreams() != 0 {
				t.Fatal("the stream is still in the kernel after a re-offer")
			}
		}
		if i%8 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if k := <-got; k != burst {
		t.Fatalf("B received %d of the %d packets sent from seq %d across the re-offer", k, burst, first)
	}
	c.untilKernel() // and back into the kernel once learned again

	// Stats: every packet counted once, none lost.
	final := c.s.Stats()[0]
	if final.FromA.Packets != uint64(c.sentA) || final.FromA.Expected != uint64(c.sentA) || final.FromA.Lost != 0 {
		t.Fatalf("from A: %d packets, %d expected, %d lost; sent %d", final.FromA.Packets, final.FromA.Expected, final.FromA.Lost, c.sentA)
	}
	if final.FromA.KernelPackets == 0 || final.FromA.KernelPackets >= final.FromA.Packets {
		t.Fatalf("from A: %+v", final.FromA)
	}
	// The kernel's jitter is the network's (a few ms at most here), so
	// the Webex thresholds keep their meaning.
	if final.Degraded() || final.FromA.MaxJitterMs > 20 || final.FromB.MaxJitterMs > 20 {
		t.Fatalf("degraded: %+v", final)
	}

	// Silence: the timer fires although the stream is in the kernel.
	waitFor(t, timeout+3*time.Second, "the dead-media timeout", timedOut.Load)

	ifs := e.FastpathInterfaces()
	c.s.Close()
	if e.FastpathStreams() != 0 {
		t.Fatal("a closed stream is still in the kernel")
	}
	_ = e.Close()
	for _, name := range ifs {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			t.Fatal(err)
		}
		q, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			t.Fatal(err)
		}
		if len(q.Programs) != 0 {
			t.Fatalf("%d programs still attached to %s after Close", len(q.Programs), name)
		}
	}
}

// TestKernelFallback: without CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN the
// program cannot load; one log line says why and userspace relays the
// call (peers on loopback: entering the peers' namespaces needs
// CAP_SYS_ADMIN).
func TestKernelFallback(t *testing.T) {
	if _, inside := nstest.Inside(); !inside {
		nstest.RunWith(t, "setpriv", "--bounding-set=-bpf,-net_admin,-sys_admin,-perfmon", "--")
		return
	}
	var logs syncbuf.Buffer
	e := kernelEngine(t, &logs, time.Minute)
	if e.FastpathInterfaces() != nil {
		t.Skip("the fast path loaded without the capabilities")
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "CAP_BPF and CAP_NET_ADMIN") {
		t.Fatalf("want one log line naming the capabilities, got %d:\n%s", n, logs.String())
	}
	t.Logf("log: %s", logs.String())
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{})
	defer s.Close()
	for i := range 50 {
		p := rtpPacket(0, uint16(i), uint32(i)*160, ssrcA, 172)
		a.send(portA, p)
		if got, _ := b.recv(2 * time.Second); !bytes.Equal(got, p) {
			t.Fatal("payload changed")
		}
		q := rtpPacket(0, uint16(i), uint32(i)*160, ssrcB, 172)
		b.send(portB, q)
		a.recv(2 * time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	ss := s.Stats()[0]
	if e.FastpathStreams() != 0 || ss.Kernel || ss.FromA.Packets != 50 {
		t.Fatalf("fallback: %d streams in the kernel, stats %+v", e.FastpathStreams(), ss)
	}
}
