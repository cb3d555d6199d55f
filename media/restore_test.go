package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// TestRestorePassthrough: a pass-through session's snapshot restored on
// another engine relays on the same ports at once, both ways, to the
// addresses the first engine had; the ports are then in use there.
func TestRestorePassthrough(t *testing.T) {
	e1 := testEngine(t, nil)
	a, b := newPeer(t), newPeer(t)
	s, pA, pB := call(t, e1, a, b, SessionConfig{CallID: "c1"})
	a.send(pA, rtpPacket(0, 1, 160, 7, 172))
	b.recv(time.Second)
	snap := s.Snapshot()
	_ = e1.Close() // the node is lost: its sockets close

	e2 := testEngine(t, nil)
	s2, err := e2.Restore(snap, SessionConfig{CallID: "c1"}, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if pa, pb := s2.Ports(0); pa != pA || pb != pB {
		t.Fatalf("restored on ports %d/%d, want %d/%d", pa, pb, pA, pB)
	}
	a.send(pA, rtpPacket(0, 2, 320, 7, 172))
	if _, from := b.recv(time.Second); from.Port() != uint16(pB) {
		t.Fatalf("A->B from %v, want port %d", from, pB)
	}
	b.send(pB, rtpPacket(0, 9, 160, 8, 172))
	if _, from := a.recv(time.Second); from.Port() != uint16(pA) {
		t.Fatalf("B->A from %v, want port %d", from, pA)
	}
	if _, err := e2.Restore(snap, SessionConfig{CallID: "c1"}, RestoreOptions{}); !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("a second restore on ports in use: %v, want ErrPortsExhausted", err)
	}
	if e2.PortsInUse() != 4 {
		t.Fatalf("%d ports in use after the failed restore, want 4", e2.PortsInUse())
	}
	snap.Version = 99
	if _, err := e2.Restore(snap, SessionConfig{}, RestoreOptions{}); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("version 99: %v", err)
	}
}

// TestRestoreTerminate: a terminating session restored on another engine
// after the caller's sequence numbers wrapped once more than its snapshot
// says: SRTP from A still authenticates (the next rollover counter is
// tried), is re-encrypted toward B with the counter B expects, SRTP from B
// reaches A, and SRTCP toward A authenticates.
func TestRestoreTerminate(t *testing.T) {
	e1 := testEngine(t, nil)
	tc := newTermCall(t, e1, suiteAES128SHA1x80, suiteAEADAES128GCM)
	encA, encB := testCtx(t, tc.keyA), testCtx(t, tc.keyB)
	atB, atA := testCtx(t, tc.sbcToB), testCtx(t, tc.sbcToA)
	seq, ts := uint16(65000), uint32(0)
	aToB := func(what string) {
		t.Helper()
		plain := rtpPacket(0, seq, ts, 9, 172)
		tc.a.send(tc.portA, seal(t, encA, plain))
		got, _, err := tc.b.tryRecv(time.Second)
		if err != nil {
			t.Fatalf("%s: A->B seq %d: %v", what, seq, err)
		}
		dec, err := open(atB, got)
		if err != nil || !bytes.Equal(dec, plain) {
			t.Fatalf("%s: A->B seq %d does not open at B: %v", what, seq, err)
		}
		seq++
		ts += 160
	}
	for range 10 {
		aToB("before the snapshot")
	}
	snap := tc.s.Snapshot()
	for seq != 6 { // across the wrap: ROC 1, the snapshot says 0
		aToB("after the snapshot")
	}
	tc.s.Close()
	_ = e1.Close()

	e2 := testEngine(t, nil)
	since := time.Now().Add(-10 * time.Second)
	s2, err := e2.Restore(snap, SessionConfig{CallID: "c2"}, RestoreOptions{Since: since})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for range 10 {
		aToB("restored")
	}
	back := rtpPacket(8, 50000, 160, 0xB2, 172)
	tc.b.send(tc.portB, seal(t, encB, back))
	got, _ := tc.a.recv(time.Second)
	if dec, err := open(atA, got); err != nil || !bytes.Equal(dec, back) {
		t.Fatalf("B->A after the restore: %v", err)
	}
	rr := []byte{0x81, 201, 0, 7, 0, 0, 0, 0xB2, 0, 0, 0, 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
	enc, err := encB.EncryptRTCP(nil, rr, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc.b.send(tc.portB, enc)
	got, _ = tc.a.recv(time.Second)
	if dec, err := atA.DecryptRTCP(nil, got, nil); err != nil || !bytes.Equal(dec, rr) {
		t.Fatalf("SRTCP B->A after the restore: %v", err)
	}
	// E flag and index, then the 10-byte tag of AES_CM_128_HMAC_SHA1_80.
	if idx := binary.BigEndian.Uint32(got[len(got)-14:]) & 0x7fffffff; idx < 10*srtcpRatePerSec {
		t.Fatalf("SRTCP index toward A %d: must start above what the lost node may have used", idx)
	}
	waitFor(t, time.Second, "the restored stream's statistics", func() bool {
		stats := s2.Stats()
		return len(stats) == 1 && stats[0].FromA.Packets == 10 && stats[0].FromB.Packets == 1
	})
}
