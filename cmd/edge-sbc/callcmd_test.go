package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/edge-sbc/edge-sbc/media"
)

func TestMuLaw(t *testing.T) {
	for _, c := range []struct {
		in   int16
		want byte
	}{{0, 0xff}, {32767, 0x80}, {-32768, 0x00}, {-1, 0x7f}, {1000, 0xce}} {
		if got := linearToMuLaw(c.in); got != c.want {
			t.Errorf("mu-law(%d) = %#x, want %#x", c.in, got, c.want)
		}
	}
	f := toneFrame()
	if len(f) != 160 {
		t.Fatalf("frame of %d bytes", len(f))
	}
	for i := 8; i < len(f); i++ { // 1 kHz at 8 kHz: a period of 8 samples
		if f[i] != f[i-8] {
			t.Fatalf("tone not periodic at %d", i)
		}
	}
}

func TestNTP(t *testing.T) {
	now := time.Now()
	if d := fromNTP(ntpTime(now)).Sub(now); d > time.Microsecond || d < -time.Microsecond {
		t.Errorf("NTP round trip off by %v", d)
	}
}

func TestParseCallFlags(t *testing.T) {
	f, err := parseCallFlags([]string{"--config", "c.yaml", "sips:echo@partner.test", "--trunk", "webex", "--duration", "3s", "--json"})
	if err != nil || f.uri != "sips:echo@partner.test" || f.trunk != "webex" || f.duration != 3*time.Second || !f.asJSON || !f.expectMedia {
		t.Fatalf("%+v %v", f, err)
	}
	if _, err := parseCallFlags([]string{"--config", "c.yaml", "sips:a@b"}); err == nil {
		t.Error("no --trunk accepted")
	}
	if _, err := parseCallFlags([]string{"--config", "c.yaml", "--trunk", "x", "sips:a@b", "sips:c@d"}); err == nil {
		t.Error("two URIs accepted")
	}
}

func TestParseAnswer(t *testing.T) {
	const key = "OnM15+1lehlXLKGT5DmR1zPBKt9Zw2leNKbjRGeE"
	sdp := func(proto, crypto string, port int) []byte {
		return []byte("v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n" +
			"m=audio " + itoa(port) + " " + proto + " 0 101\r\na=rtpmap:0 PCMU/8000\r\n" + crypto + "a=rtcp-mux\r\n")
	}
	a, err := parseAnswer(sdp("RTP/SAVP", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+key+"|2^31\r\n", 40000))
	if err != nil || a.remote != netip.MustParseAddrPort("192.0.2.7:40000") || !a.rtcpMux || a.codec != "PCMU" || len(a.key.key) != 16 || len(a.key.salt) != 14 {
		t.Fatalf("%+v %v", a, err)
	}
	for name, body := range map[string][]byte{
		"no crypto":   sdp("RTP/SAVP", "", 40000),
		"plain RTP":   sdp("RTP/AVP", "", 40000),
		"rejected":    sdp("RTP/SAVP", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+key+"\r\n", 0),
		"other suite": sdp("RTP/SAVP", "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:"+key+"\r\n", 40000),
	} {
		if _, err := parseAnswer(body); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// TestRTTFromReceptionReport: a far end's receiver report about our SSRC
// gives the round trip as A - LSR - DLSR (RFC 3550 6.4.1).
func TestRTTFromReceptionReport(t *testing.T) {
	k, err := newSDESKey()
	if err != nil {
		t.Fatal(err)
	}
	ours, err := newSDESKey()
	if err != nil {
		t.Fatal(err)
	}
	remote, _ := k.context(true)
	own, _ := ours.context(true)
	far, _ := k.context(false)
	m := &callMedia{ssrc: 0x1111, remoteCtx: remote, ownEcho: own, recv: media.NewReceiver(8000, 101)}
	now := time.Now()
	sentAt := now.Add(-300 * time.Millisecond) // our SR left then
	rr := &rtcp.ReceiverReport{SSRC: 0x2222, Reports: []rtcp.ReceptionReport{{
		SSRC: 0x1111, LastSenderReport: uint32(ntpTime(sentAt) >> 16), Delay: uint32(0.25 * 65536), // held 250 ms
	}}}
	plain, err := rr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := far.EncryptRTCP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	var dec []byte
	m.receiveRTCP(enc, now, &dec)
	if len(m.rtts) != 1 || m.rtts[0] < 49*time.Millisecond || m.rtts[0] > 51*time.Millisecond || !strings.Contains(m.rttSource, "reception reports") {
		t.Fatalf("rtts %v (%s)", m.rtts, m.rttSource)
	}
	if m.recv.Stats().RTCPPackets != 1 || m.authFailures != 0 {
		t.Fatalf("stats %+v, auth failures %d", m.recv.Stats(), m.authFailures)
	}
	m.receiveRTCP(append([]byte{}, enc...), now, &dec) // a replay
	if m.authFailures != 1 {
		t.Errorf("replayed SRTCP accepted")
	}
}

func TestCallReportResult(t *testing.T) {
	base := func(mos float64, back uint64) *callReport {
		return &callReport{Answered: true, FinalCode: 200, Media: &callMediaView{SentRTP: 100, ReceivedRTP: back, MOS: mos, R: 80, Expected: back}}
	}
	for _, c := range []struct {
		r      *callReport
		expect bool
		want   string
	}{
		{base(4.4, 100), true, "pass"},
		{base(3.8, 100), true, "degraded"},
		{base(3.4, 100), true, "fail"},
		{base(0, 0), true, "fail"},
		{base(0, 0), false, "pass"},
		{&callReport{FinalCode: 486}, true, "fail"},
	} {
		c.r.finish(c.expect)
		if c.r.Result != c.want {
			t.Errorf("%+v: result %s, want %s (%v)", c.r.Media, c.r.Result, c.want, c.r.Failures)
		}
	}
}
