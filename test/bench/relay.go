package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/media"
	"github.com/edge-sbc/edge-sbc/test/bench/internal/udpload"
)

var lo = netip.MustParseAddr("127.0.0.1")

// audioSDP is a one-stream SRTP audio SDP at 127.0.0.1:port with muxed
// RTCP (as Webex sends), the crypto line passed through untouched.
func audioSDP(port int) []byte {
	s := fmt.Sprintf("v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"+
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31\r\n"+
		"a=rtcp-mux\r\na=sendrecv\r\n", port)
	return []byte(s)
}

func mediaPort(b []byte) (int, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(b); err != nil {
		return 0, err
	}
	if len(sd.MediaDescriptions) == 0 {
		return 0, fmt.Errorf("no m= line in %q", b)
	}
	return sd.MediaDescriptions[0].MediaName.Port.Value, nil
}

// relayPath is a set of streams through one of: the media relay, the bare
// forwarder, or nothing (sender connected straight to the receiver).
type relayPath struct {
	streams []*udpload.Stream
	close   func()
}

func newReceivers(n int) ([]*udpload.Stream, error) {
	var ss []*udpload.Stream
	for range n {
		a, err := udpload.NewSocket(0)
		if err != nil {
			return nil, err
		}
		b, err := udpload.NewSocket(0)
		if err != nil {
			return nil, err
		}
		ss = append(ss, &udpload.Stream{Send: a, Recv: b})
	}
	return ss, nil
}

func closeStreams(ss []*udpload.Stream) {
	for _, s := range ss {
		_ = s.Send.Close()
		_ = s.Recv.Close()
	}
}

func newMediaPath(n int) (*relayPath, error) {
	eng, err := media.NewEngine(media.Config{PortMin: 24000, PortMax: 29999, BindAddr: lo, Quarantine: -1, Timeout: time.Hour}, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	ss, err := newReceivers(n)
	if err != nil {
		return nil, err
	}
	var sessions []*media.Session
	p := &relayPath{streams: ss, close: func() {
		closeStreams(ss)
		for _, s := range sessions {
			s.Close()
		}
		_ = eng.Close()
	}}
	for i, st := range ss {
		s := eng.NewSession(media.SessionConfig{CallID: fmt.Sprintf("bench-%d", i), AdvertiseA: lo, AdvertiseB: lo})
		sessions = append(sessions, s)
		if _, err := s.Offer(media.SideA, audioSDP(udpload.Port(st.Send))); err != nil {
			p.close()
			return nil, err
		}
		toA, err := s.Answer(media.SideB, audioSDP(udpload.Port(st.Recv)))
		if err != nil {
			p.close()
			return nil, err
		}
		portA, err := mediaPort(toA)
		if err != nil {
			p.close()
			return nil, err
		}
		if st.Send, err = udpload.Connect(st.Send, portA); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

func newBarePath(n int) (*relayPath, error) {
	ss, err := newReceivers(n)
	if err != nil {
		return nil, err
	}
	f := &udpload.Forwarder{}
	p := &relayPath{streams: ss, close: func() { closeStreams(ss); f.Close() }}
	for _, st := range ss {
		portA, _, err := f.Forward(udpload.Port(st.Send), udpload.Port(st.Recv))
		if err != nil {
			p.close()
			return nil, err
		}
		if st.Send, err = udpload.Connect(st.Send, portA); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

func newDirectPath(n int) (*relayPath, error) {
	ss, err := newReceivers(n)
	if err != nil {
		return nil, err
	}
	p := &relayPath{streams: ss, close: func() { closeStreams(ss) }}
	for _, st := range ss {
		if st.Send, err = udpload.Connect(st.Send, udpload.Port(st.Recv)); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

// measure builds a path, runs m on it and tears it down.
func measure(build func(int) (*relayPath, error), n int, m udpload.Mode) (udpload.Result, error) {
	p, err := build(n)
	if err != nil {
		return udpload.Result{}, err
	}
	defer p.close()
	return udpload.Run(p.streams, m)
}

// relaySenders is the number of sender goroutines: one per core, so that
// the load generator can saturate the path on a small machine.
const relaySenders = 2

func runRelay(ctx context.Context, e *env, rep *report) error {
	for _, n := range e.o.streams {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := relayFor(e, rep, n); err != nil {
			return err
		}
	}
	rep.note("section 3: senders, receivers and the relay share one process and %d cores; CPU/packet is getrusage(RUSAGE_SELF) over packets received, load generator included (same generator for both columns, so the difference is the relay's own cost)", numCores())
	return nil
}

// maxRate finds the highest offered rate the path relays with at most
// 0.5 % loss: a saturation run first, then paced runs from the saturated
// throughput down by 15 % steps. It returns the saturation run and the
// first paced run within the loss bound.
func maxRate(build func(int) (*relayPath, error), n int, dur, probe time.Duration) (sat, best udpload.Result, err error) {
	p, err := build(n)
	if err != nil {
		return sat, best, err
	}
	defer p.close()
	warm := 300 * time.Millisecond
	sat, err = udpload.Run(p.streams, udpload.Mode{Burst: udpload.BatchSize, Senders: relaySenders, Warmup: warm, Dur: dur})
	if err != nil {
		return sat, best, err
	}
	logRes("  sat", sat)
	rate := sat.PPS()
	up := true
	for i := range 8 {
		r, err := udpload.Run(p.streams, udpload.Mode{Rate: rate, Burst: udpload.BatchSize, Senders: relaySenders, Warmup: warm, Dur: probe})
		if err != nil {
			return sat, best, err
		}
		logRes(fmt.Sprintf("  %.0f", rate), r)
		ok := r.Loss() <= 0.005 && r.OfferedPPS() >= 0.97*rate
		if i == 0 {
			up = ok
		}
		if ok {
			best = r
		}
		if up != ok || (!up && ok) {
			break // first failure going up, or first success going down
		}
		if up {
			rate *= 1.15
		} else {
			rate *= 0.85
		}
	}
	return sat, best, nil
}

func relayFor(e *env, rep *report, n int) error {
	dur, warm := e.o.relayDur, 300*time.Millisecond
	probe := max(dur/2, 500*time.Millisecond)
	logf("  %d streams: maximum rate, bare forwarder", n)
	bareSat, bare, err := maxRate(newBarePath, n, dur, probe)
	if err != nil {
		return err
	}
	logf("  %d streams: maximum rate, edge-sbc relay", n)
	relSat, rel, err := maxRate(newMediaPath, n, dur, probe)
	if err != nil {
		return err
	}
	tag := fmt.Sprintf(" (%d streams)", n)
	rep.add(Result{Section: 3, Name: "relayed packets/s, <=0.5% loss" + tag, Value: rel.PPS(), Unit: "pkt/s", Baseline: bare.PPS(), BaseName: "bare forwarder",
		Note: fmt.Sprintf("172-byte packets, %d sender goroutines, sendmmsg bursts of 8; saturated (senders flat out): relay %.0f, bare %.0f pkt/s", relaySenders, relSat.PPS(), bareSat.PPS())})

	// Added latency at half the relay's maximum rate, one packet per
	// stream visit (RTP-like spacing), compared with socket to socket.
	half := rel.PPS() / 2
	lat := udpload.Mode{Rate: half, Burst: 1, Senders: relaySenders, Warmup: warm, Dur: dur, Latency: true}
	logf("  %d streams: latency at %.0f pkt/s (half of the relay's maximum)", n, half)
	dl, err := measure(newDirectPath, n, lat)
	if err != nil {
		return err
	}
	logRes("direct", dl)
	bl, err := measure(newBarePath, n, lat)
	if err != nil {
		return err
	}
	logRes("bare", bl)
	rl, err := measure(newMediaPath, n, lat)
	if err != nil {
		return err
	}
	logRes("relay", rl)
	fwd := func(r udpload.Result) float64 { return r.CPUPerPacket() - dl.CPUPerPacket() }
	rep.add(Result{Section: 3, Name: "CPU per forwarded packet at half load" + tag, Value: fwd(rl), Unit: "ns/pkt", Baseline: fwd(bl), BaseName: "bare forwarder",
		Note: fmt.Sprintf("getrusage(SELF) per packet minus socket-to-socket (%.0f ns/pkt, the load generator's own cost)", dl.CPUPerPacket())})
	rep.add(Result{Section: 3, Name: "added latency p50 at half load" + tag, Value: rl.P50 - dl.P50, Unit: "µs", Baseline: bl.P50 - dl.P50, BaseName: "bare forwarder",
		Note: fmt.Sprintf("%.0f pkt/s offered; one-way p50 relay %.0f, bare %.0f, socket-to-socket %.0f µs", half, rl.P50, bl.P50, dl.P50)})
	rep.add(Result{Section: 3, Name: "added latency p99 at half load" + tag, Value: rl.P99 - dl.P99, Unit: "µs", Baseline: bl.P99 - dl.P99, BaseName: "bare forwarder",
		Note: fmt.Sprintf("one-way p99 relay %.0f, bare %.0f, socket-to-socket %.0f µs; relay loss %.2f%%", rl.P99, bl.P99, dl.P99, 100*rl.Loss())})

	// Added latency at RTP pace: 50 packets/s per stream (20 ms ptime),
	// the load of n real calls, far from saturation.
	light := udpload.Mode{Rate: 50 * float64(n), Burst: 1, Senders: relaySenders, Warmup: warm, Dur: dur, Latency: true}
	logf("  %d streams: latency at 50 pkt/s per stream", n)
	dl2, err := measure(newDirectPath, n, light)
	if err != nil {
		return err
	}
	logRes("direct", dl2)
	bl2, err := measure(newBarePath, n, light)
	if err != nil {
		return err
	}
	logRes("bare", bl2)
	rl2, err := measure(newMediaPath, n, light)
	if err != nil {
		return err
	}
	logRes("relay", rl2)
	rep.add(Result{Section: 3, Name: "added latency p99 at 50 pkt/s/stream" + tag, Value: rl2.P99 - dl2.P99, Unit: "µs", Baseline: bl2.P99 - dl2.P99, BaseName: "bare forwarder",
		Note: fmt.Sprintf("p50 added relay %.0f, bare %.0f µs; one-way p99 relay %.0f, bare %.0f, socket-to-socket %.0f µs", rl2.P50-dl2.P50, bl2.P50-dl2.P50, rl2.P99, bl2.P99, dl2.P99)})

	// Fairness under overload: 2x the maximum, offered equally.
	over := udpload.Mode{Rate: 2 * rel.PPS(), Burst: udpload.BatchSize, Senders: relaySenders, Warmup: warm, Dur: dur}
	logf("  %d streams: overload at %.0f pkt/s offered", n, over.Rate)
	ol, err := measure(newMediaPath, n, over)
	if err != nil {
		return err
	}
	logRes("relay", ol)
	lo, hi := ol.Fairness()
	rep.add(Result{Section: 3, Name: "fairness at 2x max: min/mean stream share" + tag, Value: lo, Unit: "ratio",
		Note: fmt.Sprintf("max/mean %.2f; offered %.0f pkt/s (target %.0f), relayed %.0f pkt/s, loss %.1f%%; starved streams: %d",
			hi, ol.OfferedPPS(), over.Rate, ol.PPS(), 100*ol.Loss(), countZero(ol.PerStream))})
	return nil
}

func countZero(v []uint64) int {
	n := 0
	for _, x := range v {
		if x == 0 {
			n++
		}
	}
	return n
}

func logRes(what string, r udpload.Result) {
	s := fmt.Sprintf("    %-7s sent %8.0f/s recv %8.0f/s loss %5.2f%% cpu %6.0f ns/pkt", what, r.OfferedPPS(), r.PPS(), 100*r.Loss(), r.CPUPerPacket())
	if r.LatencySamples > 0 {
		s += fmt.Sprintf(" p50 %.0fµs p99 %.0fµs p99.9 %.0fµs", r.P50, r.P99, r.P999)
	}
	logf("%s", strings.TrimRight(s, " "))
}
