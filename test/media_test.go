package test

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

// TestMediaThroughRelay: RTP sent toward the SBC's caller-facing port
// crosses the relay to the callee (sipp -rtp_echo), comes back through the
// callee-facing port and arrives from the SBC's port — and from nowhere
// else. The media range holds exactly one stream, so the caller-facing
// RTP port is its first port.
func TestMediaThroughRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	b, _ := newBed(t, bedOptions{uasScenario: "uas_basic.xml", uasExtra: []string{"-rtp_echo"}, mediaRange: "47000-47003"})
	local := b.caller(t, true, "caller.test")
	long := longCall(t, local, 4*time.Second)
	if !b.sbc.WaitLog(`"event":"call_answer"`, 10*time.Second) {
		t.Fatal("call not answered")
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sbcA := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 47000}
	const n = 50
	got := 0
	buf := make([]byte, 2048)
	for i := 0; i < n; i++ {
		pkt := make([]byte, 172)
		pkt[0], pkt[1] = 0x80, 0 // RTP v2, PCMU
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], uint32(i*160))
		binary.BigEndian.PutUint32(pkt[8:], 0x11223344)
		copy(pkt[12:], bytes.Repeat([]byte{byte(i)}, 160))
		if _, err := conn.WriteToUDP(pkt, sbcA); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		m, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			continue
		}
		if !from.IP.Equal(sbcA.IP) || from.Port != sbcA.Port {
			t.Fatalf("media came back from %s, not from the SBC's port %s", from, sbcA)
		}
		if !bytes.Equal(buf[:m], pkt) {
			t.Fatalf("packet %d changed on the way: %x", i, buf[:m])
		}
		got++
		time.Sleep(10 * time.Millisecond)
	}
	if got < n*9/10 {
		t.Fatalf("%d of %d packets made the round trip through the relay", got, n)
	}
	harness.RequireOK(t, "call", <-long, 1)
	if !b.sbc.WaitLog(`"Packets":`, 5*time.Second) {
		t.Fatal("no media stats in the CDR")
	}
	t.Logf("%d/%d packets crossed caller->SBC->callee(echo)->SBC->caller", got, n)
}
