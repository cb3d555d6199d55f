// Command srtpterm is section 4 of the edge-sbc benchmarks (test/bench):
// the media relay with SRTP terminated on both legs (decrypt + encrypt per
// packet) against the same relay passing SRTP through, with senders that
// encrypt with github.com/pion/srtp/v3. It is a program of its own so that
// test/bench builds even when the media package has no terminate mode; it
// prints its figures as JSON on stdout.
package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/media"
	"github.com/edge-sbc/edge-sbc/test/bench/internal/udpload"
)

// result mirrors test/bench's Result.
type result struct {
	Section  int     `json:"section"`
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline,omitempty"`
	BaseName string  `json:"baseline_name,omitempty"`
	Note     string  `json:"note,omitempty"`
}

var lo = netip.MustParseAddr("127.0.0.1")

const suite = "AES_CM_128_HMAC_SHA1_80"

func main() {
	streams := flag.String("streams", "50,200", "concurrent streams")
	dur := flag.Duration("dur", 3*time.Second, "duration of one measurement")
	flag.Parse()
	var out []result
	for _, f := range strings.Split(*streams, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			continue
		}
		rs, err := measure(n, *dur)
		if err != nil {
			fmt.Fprintln(os.Stderr, "srtpterm:", err)
			os.Exit(1)
		}
		out = append(out, rs...)
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "    [srtpterm] "+format+"\n", args...)
}

func newKey() []byte {
	k := make([]byte, 30) // 16-byte key + 14-byte salt
	_, _ = rand.Read(k)
	return k
}

func sdpWith(port int, cryptos ...string) []byte {
	s := fmt.Sprintf("v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n", port)
	for _, c := range cryptos {
		s += "a=crypto:" + c + "\r\n"
	}
	return []byte(s + "a=rtcp-mux\r\na=sendrecv\r\n")
}

// parsed returns the m= port and the a=crypto values of the first stream.
func parsed(b []byte) (int, []string, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(b); err != nil {
		return 0, nil, err
	}
	if len(sd.MediaDescriptions) == 0 {
		return 0, nil, fmt.Errorf("no m= line")
	}
	md := sd.MediaDescriptions[0]
	var cs []string
	for _, a := range md.Attributes {
		if a.Key == "crypto" {
			cs = append(cs, a.Value)
		}
	}
	return md.MediaName.Port.Value, cs, nil
}

// keyOf decodes the key of an a=crypto value "tag suite inline:KEY[|...]".
func keyOf(v string) (tag, suiteName string, key []byte, err error) {
	f := strings.Fields(v)
	if len(f) < 3 || !strings.HasPrefix(f[2], "inline:") {
		return "", "", nil, fmt.Errorf("bad crypto line")
	}
	k, _, _ := strings.Cut(strings.TrimPrefix(f[2], "inline:"), "|")
	key, err = base64.StdEncoding.DecodeString(k)
	return f[0], f[1], key, err
}

func newCtx(key []byte) (*srtp.Context, error) {
	return srtp.CreateContext(key[:16], key[16:30], srtp.ProtectionProfileAes128CmHmacSha1_80)
}

type path struct {
	streams []*udpload.Stream
	close   func()
	// verify decrypts a packet received at B with the key the SBC
	// offered to B (terminate) or A's key (passthrough).
	verify []*srtp.Context
}

func protector(ctx *srtp.Context) func(buf, p []byte) ([]byte, error) {
	var h rtp.Header
	return func(buf, p []byte) ([]byte, error) {
		if _, err := h.Unmarshal(p); err != nil {
			return nil, err
		}
		return ctx.EncryptRTP(buf, p, &h)
	}
}

// build sets up n streams A -> relay -> B (terminate or passthrough), or A
// -> B directly (direct) with senders encrypting with A's key.
func build(n int, terminate, direct bool) (*path, error) {
	eng, err := media.NewEngine(media.Config{PortMin: 30000, PortMax: 31999, BindAddr: lo, Quarantine: -1, Timeout: time.Hour}, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	p := &path{}
	var sessions []*media.Session
	p.close = func() {
		for _, st := range p.streams {
			_ = st.Send.Close()
			_ = st.Recv.Close()
		}
		for _, s := range sessions {
			s.Close()
		}
		_ = eng.Close()
	}
	for i := range n {
		a, err := udpload.NewSocket(0)
		if err != nil {
			p.close()
			return nil, err
		}
		b, err := udpload.NewSocket(0)
		if err != nil {
			p.close()
			return nil, err
		}
		st := &udpload.Stream{Send: a, Recv: b}
		p.streams = append(p.streams, st)
		keyA, keyB := newKey(), newKey()
		encA, err := newCtx(keyA)
		if err != nil {
			p.close()
			return nil, err
		}
		st.Protect = protector(encA)
		if direct {
			if st.Send, err = udpload.Connect(st.Send, udpload.Port(b)); err != nil {
				p.close()
				return nil, err
			}
			continue
		}
		sc := media.SessionConfig{CallID: fmt.Sprintf("term-%d", i), AdvertiseA: lo, AdvertiseB: lo}
		if terminate {
			sc.ModeA, sc.ModeB = media.SRTPTerminate, media.SRTPTerminate
		}
		s := eng.NewSession(sc)
		sessions = append(sessions, s)
		toB, err := s.Offer(media.SideA, sdpWith(udpload.Port(a), "1 "+suite+" inline:"+base64.StdEncoding.EncodeToString(keyA)))
		if err != nil {
			p.close()
			return nil, fmt.Errorf("offer: %w", err)
		}
		_, offered, err := parsed(toB)
		if err != nil {
			p.close()
			return nil, err
		}
		// B accepts the SBC's AES_CM_128_HMAC_SHA1_80 line with its own key.
		var tag string
		var sbcToB []byte
		for _, c := range offered {
			if t, su, k, err := keyOf(c); err == nil && su == suite {
				tag, sbcToB = t, k
				break
			}
		}
		if tag == "" {
			p.close()
			return nil, fmt.Errorf("the SBC offered no %s to B: %q", suite, offered)
		}
		toA, err := s.Answer(media.SideB, sdpWith(udpload.Port(b), tag+" "+suite+" inline:"+base64.StdEncoding.EncodeToString(keyB)))
		if err != nil {
			p.close()
			return nil, fmt.Errorf("answer: %w", err)
		}
		portA, _, err := parsed(toA)
		if err != nil {
			p.close()
			return nil, err
		}
		if st.Send, err = udpload.Connect(st.Send, portA); err != nil {
			p.close()
			return nil, err
		}
		vk := keyA
		if terminate {
			vk = sbcToB
		}
		vc, err := newCtx(vk)
		if err != nil {
			p.close()
			return nil, err
		}
		p.verify = append(p.verify, vc)
	}
	return p, nil
}

// check sends one packet on stream 0 and decrypts it at B.
func (p *path) check() error {
	if len(p.verify) == 0 {
		return nil
	}
	st := p.streams[0]
	pl := make([]byte, udpload.PacketSize-10)
	pl[0], pl[3], pl[11] = 0x80, 1, 0x42
	out, err := st.Protect(make([]byte, 0, 512), pl)
	if err != nil {
		return err
	}
	if _, err := st.Send.Write(out); err != nil {
		return err
	}
	_ = st.Recv.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	n, err := st.Recv.Read(buf)
	if err != nil {
		return fmt.Errorf("no packet relayed: %w", err)
	}
	if _, err := p.verify[0].DecryptRTP(nil, buf[:n], nil); err != nil {
		return fmt.Errorf("relayed packet does not decrypt with the key of the SDP: %w", err)
	}
	return nil
}

func maxRate(n int, terminate bool, dur time.Duration) (udpload.Result, error) {
	p, err := build(n, terminate, false)
	if err != nil {
		return udpload.Result{}, err
	}
	defer p.close()
	if err := p.check(); err != nil {
		return udpload.Result{}, err
	}
	warm := 300 * time.Millisecond
	sat, err := udpload.Run(p.streams, udpload.Mode{Burst: udpload.BatchSize, Senders: 2, Warmup: warm, Dur: dur})
	if err != nil {
		return sat, err
	}
	rate := sat.PPS()
	var best udpload.Result
	up := true
	for i := range 8 {
		r, err := udpload.Run(p.streams, udpload.Mode{Rate: rate, Burst: udpload.BatchSize, Senders: 2, Warmup: warm, Dur: max(dur/2, 500*time.Millisecond)})
		if err != nil {
			return best, err
		}
		ok := r.Loss() <= 0.005 && r.OfferedPPS() >= 0.97*rate
		logf("%d streams terminate=%v %.0f pkt/s offered: received %.0f, loss %.2f%%", n, terminate, rate, r.PPS(), 100*r.Loss())
		if i == 0 {
			up = ok
		}
		if ok {
			best = r
		}
		if up != ok || (!up && ok) {
			break
		}
		if up {
			rate *= 1.15
		} else {
			rate *= 0.85
		}
	}
	return best, nil
}

func atRate(n int, terminate, direct bool, rate float64, dur time.Duration) (udpload.Result, error) {
	p, err := build(n, terminate, direct)
	if err != nil {
		return udpload.Result{}, err
	}
	defer p.close()
	return udpload.Run(p.streams, udpload.Mode{Rate: rate, Burst: 1, Senders: 2, Warmup: 300 * time.Millisecond, Dur: dur, Latency: true})
}

func measure(n int, dur time.Duration) ([]result, error) {
	term, err := maxRate(n, true, dur)
	if err != nil {
		return nil, err
	}
	pass, err := maxRate(n, false, dur)
	if err != nil {
		return nil, err
	}
	tag := fmt.Sprintf(" (%d streams)", n)
	out := []result{{Section: 4, Name: "SRTP terminate: packets/s, <=0.5% loss" + tag, Value: term.PPS(), Unit: "pkt/s", Baseline: pass.PPS(), BaseName: "passthrough",
		Note: "AES_CM_128_HMAC_SHA1_80 both legs; senders encrypt with pion/srtp (same generator for both columns)"}}
	half := term.PPS() / 2
	d, err := atRate(n, false, true, half, dur)
	if err != nil {
		return nil, err
	}
	pt, err := atRate(n, false, false, half, dur)
	if err != nil {
		return nil, err
	}
	tm, err := atRate(n, true, false, half, dur)
	if err != nil {
		return nil, err
	}
	logf("%d streams at %.0f pkt/s: CPU/pkt direct %.0f, passthrough %.0f, terminate %.0f ns; p99 %.0f/%.0f/%.0f µs",
		n, half, d.CPUPerPacket(), pt.CPUPerPacket(), tm.CPUPerPacket(), d.P99, pt.P99, tm.P99)
	out = append(out,
		result{Section: 4, Name: "SRTP terminate: CPU per forwarded packet" + tag, Value: tm.CPUPerPacket() - d.CPUPerPacket(), Unit: "ns/pkt",
			Baseline: pt.CPUPerPacket() - d.CPUPerPacket(), BaseName: "passthrough",
			Note: fmt.Sprintf("at %.0f pkt/s (half the terminate maximum), minus socket-to-socket %.0f ns/pkt", half, d.CPUPerPacket())},
		result{Section: 4, Name: "SRTP terminate: added latency p99" + tag, Value: tm.P99 - d.P99, Unit: "µs",
			Baseline: pt.P99 - d.P99, BaseName: "passthrough",
			Note: fmt.Sprintf("at %.0f pkt/s; p50 added %.0f vs %.0f µs; loss %.2f%%", half, tm.P50-d.P50, pt.P50-d.P50, 100*tm.Loss())})
	return out, nil
}
