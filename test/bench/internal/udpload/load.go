//go:build linux

package udpload

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-sbc/edge-sbc/media"
)

// PacketSize is the size of every packet sent (G.711 20 ms in SRTP).
const PacketSize = 172

// Stream is one one-way media stream: packets are written to Send (a
// socket connected to the relay, or directly to Recv for the baseline)
// and must arrive at Recv.
type Stream struct {
	Send *net.UDPConn
	Recv *net.UDPConn
	// Protect, when set, turns the plain RTP packet p (header filled in)
	// into what is sent, in place in buf (SRTP encryption). It is called
	// by one sender goroutine only.
	Protect func(buf, p []byte) ([]byte, error)

	seq      uint16
	received atomic.Uint64
	_        [48]byte // keep counters of different streams apart
}

// NewSocket binds a UDP socket on 127.0.0.1 (port 0: any).
func NewSocket(port int) (*net.UDPConn, error) {
	return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
}

// Port returns the local port of c.
func Port(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

// Connect returns a socket bound to the local port of c (which it closes)
// and connected to 127.0.0.1:remote, so that writes need no address and
// the source of the packets stays the one signalled.
func Connect(c *net.UDPConn, remote int) (*net.UDPConn, error) {
	local := Port(c)
	_ = c.Close()
	return net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: local},
		&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: remote})
}

// Mode selects how a Run sends.
type Mode struct {
	// Rate is the total offered rate in packets/s; 0 sends as fast as the
	// senders can (saturation).
	Rate float64
	// Burst is how many packets a sender writes to one stream per visit
	// (with one sendmmsg); streams are visited round robin.
	Burst int
	// Senders is the number of sender goroutines (streams are split
	// between them).
	Senders int
	// Warmup is sent before the measured window, Dur is the window.
	Warmup, Dur time.Duration
	// Latency records the one-way delay of every packet received in the
	// window (the sender writes its clock in the RTP timestamp field, in
	// microseconds).
	Latency bool
}

// Result is the outcome of a Run, for the measured window.
type Result struct {
	Sent, Received uint64
	Window         time.Duration
	CPU            float64 // process CPU seconds (getrusage) in the window
	PerStream      []uint64
	P50, P99, P999 float64 // microseconds (Latency only)
	LatencySamples uint64
}

// PPS is the received packet rate.
func (r Result) PPS() float64 { return float64(r.Received) / r.Window.Seconds() }

// OfferedPPS is the sent packet rate.
func (r Result) OfferedPPS() float64 { return float64(r.Sent) / r.Window.Seconds() }

// CPUPerPacket is process CPU time per received packet, in nanoseconds.
func (r Result) CPUPerPacket() float64 {
	if r.Received == 0 {
		return 0
	}
	return r.CPU * 1e9 / float64(r.Received)
}

// Loss is the fraction of packets sent in the window not received.
func (r Result) Loss() float64 {
	if r.Sent == 0 || r.Received >= r.Sent {
		return 0
	}
	return 1 - float64(r.Received)/float64(r.Sent)
}

// Fairness returns the smallest and largest per-stream received count
// divided by the mean.
func (r Result) Fairness() (lo, hi float64) {
	if len(r.PerStream) == 0 {
		return 0, 0
	}
	var sum uint64
	for _, n := range r.PerStream {
		sum += n
	}
	mean := float64(sum) / float64(len(r.PerStream))
	if mean == 0 {
		return 0, 0
	}
	return float64(slices.Min(r.PerStream)) / mean, float64(slices.Max(r.PerStream)) / mean
}

// histogram of one-way delays, 1 µs buckets up to histMax µs.
const histMax = 100000

var epoch = time.Now()

func nowUs() uint32 { return uint32(time.Since(epoch) / time.Microsecond) }

// Run sends to streams as described by m and measures what arrives.
func Run(streams []*Stream, m Mode) (Result, error) {
	if len(streams) == 0 {
		return Result{}, errors.New("udpload: no streams")
	}
	m.Burst = min(max(m.Burst, 1), BatchSize)
	m.Senders = min(max(m.Senders, 1), len(streams))
	var (
		stop      atomic.Bool
		recording atomic.Bool
		hist      = make([]atomic.Uint64, histMax+1)
		sent      = make([]atomic.Uint64, m.Senders)
		wg        sync.WaitGroup
		errMu     sync.Mutex
		firstErr  error
	)
	setErr := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	// Receivers: one goroutine per socket, stopped by a read deadline.
	for _, st := range streams {
		b, err := newBatch(st.Recv, nil)
		if err != nil {
			return Result{}, err
		}
		_ = st.Recv.SetReadDeadline(time.Time{})
		wg.Add(1)
		go func(st *Stream, b *batch) {
			defer wg.Done()
			for {
				n, err := b.recv()
				if err != nil {
					if stop.Load() {
						return
					}
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						return
					}
					continue // e.g. ICMP errors
				}
				if recording.Load() {
					now := nowUs()
					for i := range n {
						p := b.buf(i)
						if len(p) < 12 {
							continue
						}
						ts := uint32(p[4])<<24 | uint32(p[5])<<16 | uint32(p[6])<<8 | uint32(p[7])
						d := min(now-ts, histMax)
						hist[d].Add(1)
					}
				}
				st.received.Add(uint64(n))
			}
		}(st, b)
	}
	// Senders.
	t0 := time.Now()
	var swg sync.WaitGroup
	for s := range m.Senders {
		var mine []*Stream
		for i := s; i < len(streams); i += m.Senders {
			mine = append(mine, streams[i])
		}
		rate := m.Rate / float64(m.Senders)
		swg.Add(1)
		go func() {
			defer swg.Done()
			if err := sender(mine, m, rate, t0, &stop, &sent[s]); err != nil {
				setErr(err)
				stop.Store(true)
			}
		}()
	}
	snapshot := func() (tx, rx uint64, per []uint64) {
		for i := range sent {
			tx += sent[i].Load()
		}
		per = make([]uint64, len(streams))
		for i, st := range streams {
			per[i] = st.received.Load()
			rx += per[i]
		}
		return
	}
	time.Sleep(m.Warmup)
	if m.Latency {
		recording.Store(true)
	}
	tx0, rx0, per0 := snapshot()
	cpu0, w0 := CPUTime(), time.Now()
	time.Sleep(m.Dur)
	tx1, rx1, per1 := snapshot()
	cpu1, w1 := CPUTime(), time.Now()
	recording.Store(false)
	stop.Store(true)
	swg.Wait()
	// Let packets in flight arrive, then stop the receivers.
	time.Sleep(100 * time.Millisecond)
	for _, st := range streams {
		_ = st.Recv.SetReadDeadline(time.Now())
	}
	wg.Wait()
	r := Result{Sent: tx1 - tx0, Received: rx1 - rx0, Window: w1.Sub(w0), CPU: cpu1 - cpu0, PerStream: make([]uint64, len(streams))}
	for i := range per1 {
		r.PerStream[i] = per1[i] - per0[i]
	}
	if m.Latency {
		var total uint64
		for i := range hist {
			total += hist[i].Load()
		}
		r.LatencySamples = total
		q := func(f float64) float64 {
			want := uint64(math.Ceil(f * float64(total)))
			var acc uint64
			for i := range hist {
				acc += hist[i].Load()
				if acc >= want && want > 0 {
					return float64(i)
				}
			}
			return math.NaN()
		}
		r.P50, r.P99, r.P999 = q(0.50), q(0.99), q(0.999)
	}
	errMu.Lock()
	defer errMu.Unlock()
	return r, firstErr
}

// sender writes to its streams round robin, Burst packets per visit with
// one sendmmsg, paced to rate (0: as fast as possible) until stop.
func sender(streams []*Stream, m Mode, rate float64, t0 time.Time, stop *atomic.Bool, sent *atomic.Uint64) error {
	bs := make([]*batch, len(streams))
	for i, st := range streams {
		b, err := newBatch(nil, st.Send)
		if err != nil {
			return err
		}
		bs[i] = b
	}
	plain := make([]byte, PacketSize)
	plain[0], plain[1] = 0x80, 0 // RTP v2, PT 0 (PCMU)
	for i := 12; i < len(plain); i++ {
		plain[i] = byte(i * 7)
	}
	var done uint64
	next := 0
	for !stop.Load() {
		due := uint64(math.MaxUint64)
		if rate > 0 {
			due = uint64(time.Since(t0).Seconds() * rate)
			if done >= due {
				time.Sleep(50 * time.Microsecond)
				continue
			}
		}
		// One pass over the streams at most before checking the clock.
		for range len(streams) {
			if done >= due {
				break
			}
			i := next
			next = (next + 1) % len(streams)
			st, b := streams[i], bs[i]
			k := m.Burst
			if rate > 0 {
				k = int(min(uint64(k), due-done))
			}
			ts := nowUs()
			for j := range k {
				st.seq++
				plain[2], plain[3] = byte(st.seq>>8), byte(st.seq)
				plain[4], plain[5], plain[6], plain[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
				plain[8], plain[9], plain[10], plain[11] = 0, 0, byte(i>>8), byte(i)
				buf := b.slot(j)
				n := copy(buf, plain)
				if st.Protect != nil {
					out, err := st.Protect(buf[:0], plain)
					if err != nil {
						return fmt.Errorf("protect: %w", err)
					}
					n = len(out)
				}
				b.queue(j, n, nil, 0)
			}
			failed := b.flush()
			done += uint64(k)
			sent.Add(uint64(k - failed))
		}
	}
	return nil
}

// Forwarder is the bare baseline of the relay: per stream two sockets, one
// facing A and one facing B, each with one goroutine that receives a batch
// with recvmmsg and sends it with sendmmsg through the other socket to a
// fixed address. No latching, no statistics, no checks.
type Forwarder struct {
	socks []*net.UDPConn
	wg    sync.WaitGroup
}

// Forward starts forwarding packets that arrive at a new socket facing A
// to 127.0.0.1:bPort, and packets that arrive at a new socket facing B to
// 127.0.0.1:aPort. It returns the ports of the two sockets.
func (f *Forwarder) Forward(aPort, bPort int) (facingA, facingB int, err error) {
	sa, err := NewSocket(0)
	if err != nil {
		return 0, 0, err
	}
	sb, err := NewSocket(0)
	if err != nil {
		_ = sa.Close()
		return 0, 0, err
	}
	// Marked as the relay marks audio, with its own primitive.
	_ = media.SetDSCP(sa, media.DefaultDSCPAudio)
	_ = media.SetDSCP(sb, media.DefaultDSCPAudio)
	f.socks = append(f.socks, sa, sb)
	for _, d := range []struct {
		in, out *net.UDPConn
		to      int
	}{{sa, sb, bPort}, {sb, sa, aPort}} {
		b, err := newBatch(d.in, d.out)
		if err != nil {
			return 0, 0, err
		}
		dst, dlen := rawAddr(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: d.to})
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for {
				n, err := b.recv()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				for i := range n {
					b.queue(i, len(b.buf(i)), &dst, dlen)
				}
				b.flush()
			}
		}()
	}
	return Port(sa), Port(sb), nil
}

// Close stops the forwarder.
func (f *Forwarder) Close() {
	for _, s := range f.socks {
		_ = s.Close()
	}
	f.wg.Wait()
	f.socks = nil
}
