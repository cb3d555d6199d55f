package test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

// TestMediaThroughRelay: RTP sent toward the SBC's caller-facing port
// crosses the relay to the callee (sipp -rtp_echo), comes back through the
// callee-facing port and arrives from the SBC's port — and from nowhere
// else. Relay ports are handed out at random: the caller-facing one is
// read from the live call view (/calls on the metrics listener).
func TestMediaThroughRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	mport := harness.FreePort(t)
	b, _ := newBed(t, bedOptions{uasScenario: "uas_basic.xml", uasExtra: []string{"-rtp_echo"}, mediaRange: "47000-47003", metrics: mport})
	local := b.caller(t, true, "caller.test")
	long := longCall(t, local, 4*time.Second)
	if !b.sbc.WaitLog(`"event":"call_answer"`, 10*time.Second) {
		t.Fatal("call not answered")
	}
	portA := callerFacingPort(t, mport)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sbcA := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: portA}
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

// TestSRTPTerminateKeys: with srtp: terminate on the callee trunk, each side
// sees only keys of its own leg in SDP: the caller's master key never reaches
// the callee and the callee's never reaches the caller.
func TestSRTPTerminateKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const callerKey = "zejq1CaKE67q73W/QvgCB51x/Iw/mLsApZBnoHdd" // in uac_basic.xml
	const calleeKey = "OnM15+1lehlXLKGT5DmR1zPBKt9Zw2leNKbjRGeE" // in uas_basic.xml
	b, uas := newBed(t, bedOptions{uasScenario: "uas_basic.xml", insideSRTP: "terminate", mediaRange: "47100-47199"})
	local := b.caller(t, true, "caller.test")
	res := b.uac(t, local, "uac_basic.xml", "sbc.test", 1)
	harness.RequireOK(t, "call", res, 1)
	u := uas.Wait(10 * time.Second)
	var sawCalleeCrypto, sawCallerCrypto bool
	for _, m := range u.TracedMessages() {
		if m.Received && strings.HasPrefix(m.StartLine, "INVITE") {
			if strings.Contains(m.Text, callerKey) {
				t.Fatalf("the caller's SRTP key reached the callee:\n%s", m.Text)
			}
			sawCalleeCrypto = strings.Contains(m.Text, "a=crypto:")
		}
	}
	for _, m := range res.TracedMessages() {
		if m.Received && strings.HasPrefix(m.StartLine, "SIP/2.0 200") && strings.Contains(m.Text, "INVITE") {
			if strings.Contains(m.Text, calleeKey) {
				t.Fatalf("the callee's SRTP key reached the caller:\n%s", m.Text)
			}
			sawCallerCrypto = sawCallerCrypto || strings.Contains(m.Text, "a=crypto:")
		}
	}
	if !sawCalleeCrypto || !sawCallerCrypto {
		t.Fatalf("SBC keys missing: callee offer has crypto=%v, caller answer has crypto=%v", sawCalleeCrypto, sawCallerCrypto)
	}
	if strings.Contains(b.sbc.Logs(), callerKey) || strings.Contains(b.sbc.Logs(), calleeKey) {
		t.Fatal("an SRTP master key appeared in the log")
	}
}

// callerFacingPort reads the caller-facing relay port of the only call in
// progress from /calls.
func callerFacingPort(t *testing.T, metricsPort int) int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/calls", metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Calls []struct {
			Streams []struct {
				PortA int `json:"port_a"`
			} `json:"streams"`
		} `json:"calls"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	if len(v.Calls) != 1 || len(v.Calls[0].Streams) == 0 || v.Calls[0].Streams[0].PortA == 0 {
		t.Fatalf("/calls: %+v", v)
	}
	return v.Calls[0].Streams[0].PortA
}
