package media

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// srtpSource produces consecutive SRTP packets of one SSRC, encrypted
// ahead of time in chunks so that the measured loop only sends. The
// relay's replay protection refuses repeated packets, so every packet sent
// must be new.
type srtpSource struct {
	ctx   *srtp.Context
	plain []byte
	hdr   rtp.Header
	seq   uint16
	buf   []byte   // chunk storage
	pkts  [][]byte // encrypted packets of the current chunk
	next  int
}

const srcChunk = 1024

func newSRTPSource(tb testing.TB, k srtpKey, size int) *srtpSource {
	return &srtpSource{
		ctx:   testCtx(tb, k),
		plain: rtpPacket(0, 0, 0, 0xBE7C, size),
		buf:   make([]byte, srcChunk*(size+srtpHeadroom)),
		pkts:  make([][]byte, srcChunk),
		next:  srcChunk,
	}
}

// refill encrypts the next chunk of packets (without allocating).
func (s *srtpSource) refill(tb testing.TB) {
	slot := len(s.plain) + srtpHeadroom
	for i := range s.pkts {
		s.seq++
		s.plain[2], s.plain[3] = byte(s.seq>>8), byte(s.seq)
		dst := s.buf[i*slot : i*slot : (i+1)*slot]
		out, err := s.ctx.EncryptRTP(dst, s.plain, &s.hdr)
		if err != nil {
			tb.Fatal(err)
		}
		s.pkts[i] = out
	}
	s.next = 0
}

// burst sends n packets (n <= srcChunk) from a to the relay and reads them
// at b; refill reports whether a chunk had to be encrypted first.
func (s *srtpSource) burst(tb testing.TB, a, b *peer, rbuf []byte, n int, refill func()) {
	if s.next+n > len(s.pkts) {
		refill()
	}
	for range n {
		if _, err := a.conn.Write(s.pkts[s.next]); err != nil {
			tb.Fatal(err)
		}
		s.next++
	}
	for range n {
		if _, _, err := b.conn.ReadFromUDPAddrPort(rbuf); err != nil {
			tb.Fatal(err)
		}
	}
}

// setupTerminateBench sets up a call terminating SRTP on both legs with
// suite id, A connected to the relay, and warms the path up.
func setupTerminateBench(tb testing.TB, id suiteID) (a, b *peer, src *srtpSource, rbuf []byte) {
	e := testEngine(tb, nil)
	tc := newTermCall(tb, e, id, id)
	if err := tc.a.conn.Close(); err != nil {
		tb.Fatal(err)
	}
	a = connectedPeer(tb, tc.a.port(), tc.portA)
	b = tc.b
	_ = b.conn.SetReadDeadline(time.Now().Add(time.Minute))
	src = newSRTPSource(tb, tc.keyA, 172-tagLen(id))
	rbuf = make([]byte, 2048)
	src.burst(tb, a, b, rbuf, benchBurst, func() { src.refill(tb) }) // latch, warm up
	// The far side really gets SRTP under the SBC's key toward B.
	src.burst(tb, a, b, rbuf, 1, func() { src.refill(tb) })
	if _, err := open(testCtx(tb, tc.sbcToB), rbuf[:len(src.pkts[src.next-1])]); err != nil {
		tb.Fatalf("relayed packet does not decrypt at B: %v", err)
	}
	return a, b, src, rbuf
}

// tagLen is the SRTP authentication tag length of suite id.
func tagLen(id suiteID) int {
	switch id {
	case suiteAES128SHA1x32, suiteAES256SHA1x32:
		return 4
	case suiteAEADAES128GCM, suiteAEADAES256GCM:
		return 16
	}
	return 10
}

// BenchmarkRelayTerminate measures one 172-byte SRTP packet (G.711 20 ms)
// through real loopback sockets with SRTP terminated on both legs: client
// send, relay recvmmsg, decrypt with A's key, encrypt with B's key,
// sendmmsg, client receive. Compare with BenchmarkRelayPassthrough. It
// must report 0 allocs/op.
func BenchmarkRelayTerminate(b *testing.B) {
	for _, id := range offerSuites {
		b.Run(id.String(), func(b *testing.B) {
			a, bp, src, rbuf := setupTerminateBench(b, id)
			refill := func() {
				b.StopTimer()
				src.refill(b)
				b.StartTimer()
			}
			b.ReportAllocs()
			b.SetBytes(172)
			b.ResetTimer()
			n := b.N
			for n > 0 {
				k := min(n, benchBurst)
				src.burst(b, a, bp, rbuf, k, refill)
				n -= k
			}
		})
	}
}

// TestRelayTerminateZeroAllocs checks that relaying in terminate mode
// (decrypt + encrypt in place) allocates nothing per packet. The packets
// are encrypted before the measurement.
func TestRelayTerminateZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, id := range offerSuites {
		t.Run(id.String(), func(t *testing.T) {
			a, b, src, rbuf := setupTerminateBench(t, id)
			const runs = 50
			src.pkts = make([][]byte, (runs+1)*benchBurst)
			src.buf = make([]byte, len(src.pkts)*(len(src.plain)+srtpHeadroom))
			src.refill(t)
			allocs := testing.AllocsPerRun(runs, func() {
				src.burst(t, a, b, rbuf, benchBurst, func() { t.Fatal("out of packets") })
			})
			if allocs != 0 {
				t.Fatalf("%.2f allocations per burst of %d packets, want 0", allocs, benchBurst)
			}
		})
	}
}

// BenchmarkTerminateHop measures the SRTP work of one relayed 172-byte
// packet alone, without sockets: unprotect with the sender's remote context
// (replay check included) and protect with the receiver's local context,
// in place, as readLoop does. Each iteration first copies a pre-encrypted
// packet into the work buffer (about 10 ns); a pool of packets is replayed
// against a fresh receiving context, prepared before the timer starts,
// each time the pool wraps.
func BenchmarkTerminateHop(b *testing.B) {
	for _, id := range offerSuites {
		b.Run(id.String(), func(b *testing.B) {
			kIn, kOut := newSRTPKey(id), newSRTPKey(id)
			enc, err := newCryptoCtx(kOut, false)
			if err != nil {
				b.Fatal(err)
			}
			src := newSRTPSource(b, kIn, 172-tagLen(id))
			src.refill(b)
			decs := make([]*cryptoCtx, b.N/len(src.pkts)+1)
			for i := range decs {
				if decs[i], err = newCryptoCtx(kIn, true); err != nil {
					b.Fatal(err)
				}
			}
			work := make([]byte, bufSize+srtpHeadroom)
			var xf srtpXform
			b.ReportAllocs()
			b.SetBytes(172)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % len(src.pkts)
				p := work[:copy(work, src.pkts[j])]
				p, why := xf.unprotect(p, false, SRTPTerminate, decs[i/len(src.pkts)])
				if why != dropNone {
					b.Fatalf("unprotect: %d", why)
				}
				if _, why = xf.protect(p, false, SRTPTerminate, enc); why != dropNone {
					b.Fatalf("protect: %d", why)
				}
			}
		})
	}
}
