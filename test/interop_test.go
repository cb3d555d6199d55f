package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/edge-sbc/edge-sbc/test/harness"
	"github.com/edge-sbc/edge-sbc/test/interop"
)

// TestInteropSRTPTerminateBaresip is a call through the edge-sbc binary
// between two peers that can each decrypt only with the keys of their own
// SDP exchange: a Go caller built on sipgo and pion/srtp (trunk "outside",
// srtp: terminate) and baresip as callee (trunk "inside", srtp: terminate),
// both over mutual TLS on loopback.
//
// The caller offers its own key K_A and plays 440 Hz; baresip plays
// 1000 Hz. The test checks that:
//
//  1. the SBC answers the caller with a key of its own (neither K_A nor
//     baresip's), and baresip is offered keys of the SBC (never K_A);
//  2. what the caller receives authenticates with the SBC's key from the
//     answer and with neither K_A nor baresip's key;
//  3. the caller hears baresip's 1000 Hz tone (decrypted, decoded μ-law);
//  4. baresip hears the caller's 440 Hz tone (its sndfile recording): the
//     audio crossed two SRTP legs with different keys, both ways;
//  5. baresip's SRTP layer refuses none of the packets the SBC sends it
//     (RTP and one SRTCP report of the caller's);
//  6. the CDR counts packets both ways, no authentication drop from the
//     caller and none from baresip beyond its unprotected RTCP BYE at
//     hang-up (see checkInteropCDR).
func TestInteropSRTPTerminateBaresip(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	if _, err := exec.LookPath("baresip"); err != nil {
		t.Fatal(interop.BaresipInstallHint)
	}
	const (
		rate       = 8000
		callerTone = 440.0  // Hz, sent by the Go caller
		calleeTone = 1000.0 // Hz, sent by baresip
		toneSlack  = 15.0   // Hz
		talk       = 3 * time.Second
		ptime      = 20 * time.Millisecond
		samples    = rate * int(ptime/time.Millisecond) / 1000 // 160 per packet
	)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	dir := t.TempDir()
	pki := harness.DevPKI(t, dir, "sbc.test", "caller.test", "callee.test")

	// Callee: baresip answering with SDES-SRTP, playing 1000 Hz.
	src := filepath.Join(dir, "callee-1000hz.wav")
	if err := interop.WriteWAV(src, rate, interop.Tone(calleeTone, rate, 0, 10*rate, 8000)); err != nil {
		t.Fatal(err)
	}
	bs := interop.StartBaresip(t, interop.BaresipOptions{
		User: "callee",
		Cert: pki["callee.test"].Cert, Key: pki["callee.test"].Key, CA: pki["callee.test"].CA,
		Source:   src,
		RTPPorts: "47300-47399",
		MaxLife:  55 * time.Second,
	})

	// The SBC: terminate on both legs.
	mtls := harness.FreePort(t)
	cdrPath := filepath.Join(dir, "cdr.jsonl")
	sbc := harness.StartSBC(t, fmt.Sprintf(`
node: { fqdn: sbc.test, domains: [sbc.test] }
tls: { cert: %[1]s, key: %[2]s, ca: %[3]s }
listen:
  - { addr: "127.0.0.1:%[4]d", client_auth: required }
trunks:
  - { name: outside, identity: caller.test, srtp: terminate }
  - { name: inside, uri: "sips:127.0.0.1:%[5]d", identity: callee.test, srtp: terminate }
routes:
  - { from: outside, to: inside }
sip: { provisional_timeout: 2s }
media: { port_range: "47200-47299", bind: 127.0.0.1 }
log: { level: debug, format: json }
shutdown: { drain_timeout: 2s }
limits: { max_connections_per_ip: 100, handshakes_per_ip: 100 }
cdr: { file: %[6]s, sync_interval: 100ms }
`, pki["sbc.test"].Cert, pki["sbc.test"].Key, pki["sbc.test"].CA, mtls, bs.TLSPort, cdrPath))

	// Caller: sipgo over mutual TLS with the caller.test certificate.
	cli := newInteropCaller(t, pki["caller.test"])
	media, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	keyA := interop.NewKey()
	offer := fmt.Sprintf("v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=rtcp-mux\r\n"+
		"a=crypto:1 %s inline:%s\r\na=sendrecv\r\n",
		media.LocalAddr().(*net.UDPAddr).Port, interop.SuiteAES80, keyA.Inline())

	inv := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sips", User: "callee", Host: "sbc.test"})
	inv.SetTransport("TLS")
	inv.SetDestination(fmt.Sprintf("127.0.0.1:%d", mtls))
	fromParams := sip.NewParams()
	fromParams.Add("tag", sip.GenerateTagN(16))
	inv.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sips", User: "alice", Host: "caller.test"}, Params: fromParams})
	inv.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sips", User: "callee", Host: "sbc.test"}, Params: sip.NewParams()})
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody([]byte(offer))
	dua := sipgo.DialogUA{
		Client:         cli,
		ContactHDR:     sip.ContactHeader{Address: sip.Uri{Scheme: "sips", User: "alice", Host: "127.0.0.1"}},
		RewriteContact: true, // in-dialog requests go back on the connection to the SBC
	}
	dlg, err := dua.WriteInvite(ctx, inv)
	if err != nil {
		t.Fatalf("INVITE: %v", err)
	}
	if err := dlg.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("call not answered: %v", err)
	}
	if err := dlg.Ack(ctx); err != nil {
		t.Fatalf("ACK: %v", err)
	}
	answered := true
	defer func() {
		if answered {
			bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer bcancel()
			_ = dlg.Bye(bctx)
		}
	}()

	// (1) Keys: the caller's answer carries a key of the SBC's.
	ans, err := interop.ParseAudio(dlg.InviteResponse.Body())
	if err != nil {
		t.Fatalf("answer: %v\n%s", err, dlg.InviteResponse.Body())
	}
	if ans.Proto != "RTP/SAVP" || len(ans.Crypto) != 1 || ans.Crypto[0].Tag != 1 || ans.Crypto[0].Key.Suite != interop.SuiteAES80 {
		t.Fatalf("answer to the caller: want RTP/SAVP with one a=crypto tag 1 %s, have %s with %d lines:\n%s",
			interop.SuiteAES80, ans.Proto, len(ans.Crypto), dlg.InviteResponse.Body())
	}
	keySBCA := ans.Crypto[0].Key
	if keySBCA.Equal(keyA) {
		t.Fatal("the SBC answered the caller with the caller's own key")
	}
	if !ans.Addr.Addr().IsLoopback() {
		t.Fatalf("SBC media address %s is not loopback", ans.Addr)
	}
	keyB := baresipKeys(t, bs, keyA)
	if keySBCA.Equal(keyB) {
		t.Fatal("the SBC answered the caller with baresip's key")
	}
	t.Logf("keys: caller K_A %v, SBC leg A %v, baresip %v; SBC media for the caller at %s", keyA, keySBCA, keyB, ans.Addr)

	// Media: 3 s of 440 Hz toward the SBC, encrypted with K_A; everything
	// received is checked against the three keys.
	encA, err := keyA.Context()
	if err != nil {
		t.Fatal(err)
	}
	rx := &interopReceiver{conn: media}
	for i, k := range []interop.Key{keySBCA, keyA, keyB} {
		if rx.ctx[i], err = k.Context(); err != nil {
			t.Fatal(err)
		}
	}
	rx.rtcpCtx, _ = keySBCA.Context()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rx.run(time.Now().Add(talk + 2*time.Second))
	}()
	dst := net.UDPAddrFromAddrPort(ans.Addr)
	var hdr [12]byte
	_, _ = rand.Read(hdr[:])
	seq, ts, ssrc := binary.BigEndian.Uint16(hdr[0:]), binary.BigEndian.Uint32(hdr[2:]), binary.BigEndian.Uint32(hdr[6:])
	sent := 0
	tick := time.NewTicker(ptime)
	for i := 0; i < int(talk/ptime); i++ {
		<-tick.C
		pcm := interop.Tone(callerTone, rate, i*samples, samples, 8000)
		payload := make([]byte, samples)
		for j, s := range pcm {
			payload[j] = interop.ULawEncode(s)
		}
		pkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq + uint16(i),
			Timestamp: ts + uint32(i*samples), SSRC: ssrc, Marker: i == 0}, Payload: payload}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		enc, err := encA.EncryptRTP(nil, pkt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := media.WriteToUDP(enc, dst); err != nil {
			t.Fatalf("send RTP: %v", err)
		}
		sent++
		if i == int(talk/ptime)/2 {
			// One SRTCP receiver report (no report blocks), muxed on the
			// RTP port: the SBC must re-protect it for baresip too.
			rr := []byte{0x80, 201, 0, 1, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(rr[4:], ssrc)
			srtcp, err := encA.EncryptRTCP(nil, rr, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := media.WriteToUDP(srtcp, dst); err != nil {
				t.Fatalf("send RTCP: %v", err)
			}
		}
	}
	tick.Stop()
	time.Sleep(300 * time.Millisecond)
	rx.stop()
	wg.Wait()

	// Hang up.
	bctx, bcancel := context.WithTimeout(ctx, 5*time.Second)
	err = dlg.Bye(bctx)
	bcancel()
	answered = false
	if err != nil {
		t.Fatalf("BYE: %v", err)
	}

	// (2) Keys of what the caller received.
	t.Logf("caller: sent %d SRTP packets; received %d SRTP (+%d SRTCP): %d authentic with the SBC's key, %d with K_A, %d with baresip's key",
		sent, rx.rtp, rx.rtcp, rx.ok[0], rx.ok[1], rx.ok[2])
	if rx.rtp < int(talk/ptime)*3/4 {
		t.Fatalf("the caller received %d RTP packets in %s, want at least %d", rx.rtp, talk, int(talk/ptime)*3/4)
	}
	if rx.ok[0] != rx.rtp {
		t.Errorf("%d of %d packets received by the caller failed authentication with the key of the SBC's answer", rx.rtp-rx.ok[0], rx.rtp)
	}
	if rx.ok[1] != 0 || rx.ok[2] != 0 {
		t.Errorf("packets to the caller authenticate with the caller's own key (%d) or baresip's (%d): the SBC did not re-key", rx.ok[1], rx.ok[2])
	}
	if rx.rtcp > 0 && rx.rtcpOK != rx.rtcp {
		t.Errorf("%d of %d SRTCP packets to the caller failed with the SBC's key", rx.rtcp-rx.rtcpOK, rx.rtcp)
	}

	// (3) The caller heard baresip.
	heard := interop.TrimSilence(rx.pcm, rate, 300)
	spA := interop.DominantFrequency(heard, rate)
	t.Logf("caller heard %.2f s of audio (RMS %.0f): dominant %.0f Hz (%.0f%% of the energy)",
		float64(len(heard))/rate, spA.RMS, spA.Freq, 100*spA.Share)
	if len(heard) < rate || math.Abs(spA.Freq-calleeTone) > toneSlack || spA.Share < 0.5 {
		t.Errorf("the caller did not hear baresip's %.0f Hz: %.2f s, dominant %.0f Hz, share %.2f",
			calleeTone, float64(len(heard))/rate, spA.Freq, spA.Share)
	}

	// (4) Baresip heard the caller (its recording is closed with the call).
	if !bs.WaitOutput("Call with sips:alice@caller.test terminated", 5*time.Second) {
		t.Errorf("baresip did not end the call: the caller's BYE did not reach it")
	}
	rec := waitRecording(t, bs, "dec")
	w, err := interop.ReadWAV(rec)
	if err != nil {
		t.Fatalf("baresip recording %s: %v", rec, err)
	}
	heardB := interop.TrimSilence(w.Samples, w.Rate, 300)
	spB := interop.DominantFrequency(heardB, w.Rate)
	t.Logf("baresip heard %.2f s of audio at %d Hz (RMS %.0f): dominant %.0f Hz (%.0f%% of the energy)",
		float64(len(heardB))/float64(w.Rate), w.Rate, spB.RMS, spB.Freq, 100*spB.Share)
	if len(heardB) < w.Rate || math.Abs(spB.Freq-callerTone) > toneSlack || spB.Share < 0.5 {
		t.Errorf("baresip did not hear the caller's %.0f Hz: %.2f s, dominant %.0f Hz, share %.2f",
			callerTone, float64(len(heardB))/float64(w.Rate), spB.Freq, spB.Share)
	}

	// Baresip logs every packet its SRTP layer refuses.
	if n := strings.Count(bs.Output(), "srtp: failed to decrypt"); n > 0 {
		t.Errorf("baresip failed to decrypt %d packets the SBC sent it", n)
	}

	// (5) The CDR.
	checkInteropCDR(t, cdrPath)
	logs := sbc.Logs()
	for name, k := range map[string]interop.Key{"caller's": keyA, "SBC's": keySBCA, "baresip's": keyB} {
		if strings.Contains(logs, k.Inline()) {
			t.Errorf("the %s SRTP master key appeared in the SBC log", name)
		}
	}
}

// newInteropCaller returns a sipgo client presenting files' certificate and
// verifying the SBC as sbc.test.
func newInteropCaller(t *testing.T, files harness.TLSFiles) *sipgo.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in " + files.CA)
	}
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("alice"),
		sipgo.WithUserAgentHostname("caller.test"),
		sipgo.WithUserAgenTLSConfig(&tls.Config{
			Certificates: []tls.Certificate{cert},
			RootCAs:      pool,
			ServerName:   "sbc.test",
			MinVersion:   tls.VersionTLS12,
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ua.Close() })
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// baresipKeys returns the key baresip answered the SBC with, from its SIP
// trace, and checks that what baresip was offered is the SBC's (not K_A).
func baresipKeys(t *testing.T, bs *interop.Baresip, keyA interop.Key) interop.Key {
	t.Helper()
	sent, received := bs.SDPCrypto()
	if len(received) == 0 || len(sent) == 0 {
		t.Fatalf("no a=crypto in baresip's SIP trace (received %d, sent %d lines):\n%s", len(received), len(sent), bs.Output())
	}
	for _, v := range received {
		c, err := interop.ParseCrypto(v)
		if err != nil {
			t.Fatalf("a=crypto offered to baresip: %v", err)
		}
		if c.Key.Equal(keyA) || strings.Contains(v, keyA.Inline()) {
			t.Fatal("the caller's key K_A reached baresip")
		}
	}
	c, err := interop.ParseCrypto(sent[len(sent)-1])
	if err != nil {
		t.Fatalf("baresip's a=crypto: %v", err)
	}
	if c.Key.Equal(keyA) {
		t.Fatal("baresip answered with the caller's key")
	}
	return c.Key
}

// interopReceiver reads what the SBC sends the caller and tries each RTP
// packet with three keys: ctx[0] the SBC's (from the answer), ctx[1] the
// caller's own K_A, ctx[2] baresip's. SRTCP (rtcp-mux) is tried with the
// SBC's key.
type interopReceiver struct {
	conn    *net.UDPConn
	ctx     [3]*srtp.Context
	rtcpCtx *srtp.Context

	rtp, rtcp, rtcpOK int
	ok                [3]int
	pcm               []int16 // decoded with the SBC's key, in arrival order
}

// run reads until the deadline or until the socket's read deadline is
// moved into the past by stop.
func (r *interopReceiver) run(until time.Time) {
	_ = r.conn.SetReadDeadline(until)
	buf := make([]byte, 2048)
	for {
		n, err := r.conn.Read(buf)
		if err != nil {
			return
		}
		pkt := buf[:n]
		if n >= 2 && pkt[1] >= 192 && pkt[1] <= 223 { // RFC 5761: RTCP on the RTP port
			r.rtcp++
			if _, err := r.rtcpCtx.DecryptRTCP(nil, append([]byte(nil), pkt...), nil); err == nil {
				r.rtcpOK++
			}
			continue
		}
		r.rtp++
		for i, c := range r.ctx {
			var h rtp.Header
			plain, err := c.DecryptRTP(nil, append([]byte(nil), pkt...), &h)
			if err != nil {
				continue
			}
			r.ok[i]++
			if i == 0 && h.PayloadType == 0 {
				for _, u := range plain[h.MarshalSize():] {
					r.pcm = append(r.pcm, interop.ULawDecode(u))
				}
			}
		}
	}
}

func (r *interopReceiver) stop() { _ = r.conn.SetReadDeadline(time.Unix(1, 0)) }

// waitRecording waits for baresip's sndfile recording of kind to hold
// audio.
func waitRecording(t *testing.T, bs *interop.Baresip, kind string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := bs.Recording(kind)
		if err == nil {
			if st, err := os.Stat(p); err == nil && st.Size() > 44+8000 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip recording: %v (files: %v)", err, listDir(bs.RecDir))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func listDir(dir string) []string {
	es, _ := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// interopCDR is the part of a CDR line the test reads.
type interopCDR struct {
	HangupBy string `json:"hangup_by"`
	Media    struct {
		Streams []struct {
			Media        string
			PortA, PortB int
			FromA, FromB struct {
				Packets, RTCPPackets, Lost uint64
				Drops                      map[string]uint64
			}
		} `json:"streams"`
	} `json:"media"`
}

// checkInteropCDR waits for the CDR line of the call and checks its media
// statistics: packets both ways, no authentication failure.
func checkInteropCDR(t *testing.T, path string) {
	t.Helper()
	var line []byte
	deadline := time.Now().Add(5 * time.Second)
	for len(line) == 0 {
		if b, err := os.ReadFile(path); err == nil {
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(make([]byte, 64*1024), 1024*1024)
			for sc.Scan() {
				line = append([]byte(nil), sc.Bytes()...)
			}
		}
		if len(line) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no CDR in %s", path)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var cdr interopCDR
	if err := json.Unmarshal(line, &cdr); err != nil {
		t.Fatalf("CDR: %v\n%s", err, line)
	}
	if len(cdr.Media.Streams) != 1 {
		t.Fatalf("CDR: want 1 media stream, have %d:\n%s", len(cdr.Media.Streams), line)
	}
	s := cdr.Media.Streams[0]
	t.Logf("CDR (hangup by %s): %s ports A %d / B %d; from caller %d RTP + %d RTCP, lost %d, drops %v; from baresip %d RTP + %d RTCP, lost %d, drops %v",
		cdr.HangupBy, s.Media, s.PortA, s.PortB, s.FromA.Packets, s.FromA.RTCPPackets, s.FromA.Lost, s.FromA.Drops,
		s.FromB.Packets, s.FromB.RTCPPackets, s.FromB.Lost, s.FromB.Drops)
	if s.FromA.Packets == 0 || s.FromB.Packets == 0 {
		t.Errorf("CDR: media not counted both ways (from caller %d, from baresip %d)", s.FromA.Packets, s.FromB.Packets)
	}
	// Every packet of the caller is SRTP with K_A: none may fail.
	if d := s.FromA.Drops["Auth"]; d != 0 {
		t.Errorf("CDR: %d packets from the caller failed SRTP authentication", d)
	}
	if s.FromA.RTCPPackets != 1 {
		t.Errorf("CDR: %d RTCP packets from the caller, want its 1 SRTCP receiver report", s.FromA.RTCPPackets)
	}
	// Baresip 1.0 (libre 1.1) sends RTCP in clear twice: an APP
	// "PING"/"PONG" when its stream starts (before its 200 OK, so it is
	// counted NoKey; the SRTCP copy that follows too) and an RTCP BYE+SDES
	// when the call ends (81cb...), after its SRTP state is gone. That BYE
	// races with the SBC closing the stream on the 200 to BYE: when it
	// wins, it is rightly dropped as Auth. Anything more is a real
	// authentication failure.
	if d := s.FromB.Drops["Auth"]; d > 1 {
		t.Errorf("CDR: %d packets from baresip failed SRTP authentication (1 may be its unprotected RTCP BYE)", d)
	}
	if s.FromA.Drops["Replay"] != 0 || s.FromB.Drops["Replay"] != 0 {
		t.Errorf("CDR: SRTP replay drops: from caller %d, from baresip %d", s.FromA.Drops["Replay"], s.FromB.Drops["Replay"])
	}
	// The caller starts sending after the ACK: both keys of its direction
	// are known by then. Baresip starts its audio just before it sends its
	// 200 OK, so the few packets that overtake the answer (whose key the
	// SBC needs to decrypt them) are NoKey drops: SDES cannot do better.
	if d := s.FromA.Drops["NoKey"]; d != 0 {
		t.Errorf("CDR: %d packets from the caller dropped for want of a key after the call was answered", d)
	}
	if d := s.FromB.Drops["NoKey"] + s.FromB.Drops["Auth"]; d > 10 {
		t.Errorf("CDR: %d packets from baresip dropped for want of a key or authentication (more than the ones sent before its 200 OK)", d)
	}
	if cdr.HangupBy != "a" {
		t.Errorf("CDR: hangup_by %q, want a (the caller's BYE)", cdr.HangupBy)
	}
}
