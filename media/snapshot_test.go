package media

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestSnapshotTerminate: a terminating session's snapshot holds its ports,
// the peers' addresses, the directions, the keys in use on both legs and
// the rollover counters they reached across a sequence number wrap;
// formatted, it shows no key.
func TestSnapshotTerminate(t *testing.T) {
	e := testEngine(t, nil)
	tc := newTermCall(t, e, suiteAES128SHA1x80, suiteAEADAES128GCM)
	encA, atB := testCtx(t, tc.keyA), testCtx(t, tc.sbcToB)
	seq := uint16(65530)
	for i := range 10 { // 65530..65535, 0..3: ROC 0 then 1
		plain := rtpPacket(0, seq, uint32(160*i), 9, 172)
		tc.a.send(tc.portA, seal(t, encA, plain))
		if _, err := open(atB, mustRecv(tc.b)); err != nil {
			t.Fatalf("A->B seq %d: %v", seq, err)
		}
		seq++
	}
	snap := tc.s.Snapshot()
	if snap.Version != SnapshotVersion || snap.ModeA != "terminate" || snap.ModeB != "terminate" || snap.Pending ||
		len(snap.Streams) != 1 || snap.OriginA.ID == 0 {
		t.Fatalf("snapshot %+v", snap)
	}
	st := snap.Streams[0]
	if st.A.Port != tc.portA || st.B.Port != tc.portB || !st.RTP || st.Media != "audio" {
		t.Fatalf("stream %+v, want ports %d/%d", st, tc.portA, tc.portB)
	}
	if st.A.Remote.Port() != uint16(tc.a.port()) || st.B.Signalled.Port() != uint16(tc.b.port()) || st.A.Dir != "sendrecv" {
		t.Fatalf("addresses %+v / %+v", st.A, st.B)
	}
	key := func(k *KeySnapshot, want srtpKey, what string) {
		t.Helper()
		if k == nil || k.Suite != want.suite.String() || !bytes.Equal(k.Material, want.material) {
			t.Fatalf("%s: %v, want %v", what, k, want)
		}
	}
	key(st.A.RecvKey, tc.keyA, "A's receive key")
	key(st.A.SendKey, tc.sbcToA, "A's send key")
	key(st.B.RecvKey, tc.keyB, "B's receive key")
	key(st.B.SendKey, tc.sbcToB, "B's send key")
	if k := st.A.RecvKey; !k.HasROC || k.SSRC != 9 || k.ROC != 1 {
		t.Fatalf("A's receive context: SSRC %d ROC %d (%v), want 9 1", k.SSRC, k.ROC, k.HasROC)
	}
	if k := st.B.SendKey; !k.HasROC || k.SSRC != 9 || k.ROC != 1 {
		t.Fatalf("B's send context: SSRC %d ROC %d (%v), want 9 1", k.SSRC, k.ROC, k.HasROC)
	}
	if st.B.RecvKey.HasROC {
		t.Fatal("B sent nothing, yet its receive context has a rollover counter")
	}
	js, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	var back SessionSnapshot
	if err := json.Unmarshal(js, &back); err != nil || back.Streams[0].A.Remote != st.A.Remote ||
		!bytes.Equal(back.Streams[0].B.SendKey.Material, tc.sbcToB.material) {
		t.Fatalf("JSON round trip: %v", err)
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(f, snap) + fmt.Sprintf(f, st.A.RecvKey)
		if strings.Contains(out, fmt.Sprintf("%x", tc.keyA.material[:4])) || strings.Contains(out, string(tc.keyA.material)) {
			t.Fatalf("%s prints key material: %s", f, out)
		}
	}
	tc.s.Close()
	if s := tc.s.Snapshot(); len(s.Streams) != 0 {
		t.Fatal("a closed session's snapshot has streams")
	}
}
