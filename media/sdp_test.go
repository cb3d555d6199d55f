package media

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

var audioTwoCrypto = sdpLines(`v=0
	o=Cisco-SIPUA 12345 0 IN IP4 127.0.0.21
	s=SIP Call
	c=IN IP4 127.0.0.21
	b=AS:4064
	t=0 0
	m=audio 20000 RTP/SAVP 114 9 0 8 101
	c=IN IP4 127.0.0.21
	b=TIAS:64000
	a=rtpmap:114 opus/48000/2
	a=fmtp:114 maxplaybackrate=48000;maxaveragebitrate=64000;stereo=1
	a=rtpmap:9 G722/8000
	a=rtpmap:0 PCMU/8000
	a=rtpmap:8 PCMA/8000
	a=rtpmap:101 telephone-event/8000
	a=fmtp:101 0-15
	a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31
	a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^31
	a=x-cisco-srtp-fec
	a=sendrecv
	a=rtcp:20001 IN IP4 127.0.0.21`)

// webexOffer: audio, main video, content video (slides) and BFCP.
var webexOffer = sdpLines(`v=0
	o=Cisco-SIPUA 4711 1 IN IP4 127.0.0.22
	s=SIP Call
	c=IN IP4 127.0.0.22
	b=AS:6000
	t=0 0
	m=audio 30000 RTP/SAVP 114 0 101
	b=TIAS:64000
	a=rtpmap:114 opus/48000/2
	a=rtpmap:0 PCMU/8000
	a=rtpmap:101 telephone-event/8000
	a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA|2^31
	a=rtcp-mux
	a=sendrecv
	m=video 30002 RTP/SAVP 97 126
	b=TIAS:4000000
	a=rtpmap:97 H264/90000
	a=fmtp:97 profile-level-id=42801f;packetization-mode=0;max-mbps=490000
	a=rtpmap:126 H264/90000
	a=fmtp:126 profile-level-id=42801f;packetization-mode=1;max-mbps=490000
	a=rtcp-fb:* nack pli
	a=rtcp-fb:* ccm fir
	a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB|2^31
	a=content:main
	a=label:11
	a=rtcp-mux
	a=sendrecv
	m=video 30004 RTP/SAVP 97
	b=TIAS:2000000
	a=rtpmap:97 H264/90000
	a=fmtp:97 profile-level-id=42801f;packetization-mode=1
	a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC|2^31
	a=content:slides
	a=label:12
	a=rtcp-mux
	a=sendrecv
	m=application 30006 UDP/BFCP *
	a=floorctrl:c-s
	a=confid:1
	a=userid:2
	a=floorid:2 mstrm:12
	a=setup:actpass
	a=connection:new`)

var iceOffer = sdpLines(`v=0
	o=- 99 2 IN IP4 127.0.0.23
	s=-
	c=IN IP4 127.0.0.23
	t=0 0
	a=ice-lite
	a=ice-options:trickle
	a=group:BUNDLE 0
	m=audio 40000 RTP/SAVPF 111
	a=mid:0
	a=rtpmap:111 opus/48000/2
	a=ice-ufrag:abcd
	a=ice-pwd:0123456789abcdef0123456789
	a=candidate:1 1 UDP 2130706431 127.0.0.23 40000 typ host
	a=candidate:2 1 UDP 1694498815 127.0.0.24 40000 typ srflx raddr 127.0.0.23 rport 40000
	a=end-of-candidates
	a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD
	a=rtcp-mux
	a=remote-candidates:1 127.0.0.25 5000
	a=x-unknown-after-ice:7`)

var plainOffer = sdpLines(`v=0
	o=- 1 1 IN IP4 127.0.0.26
	s=-
	c=IN IP4 127.0.0.26
	t=0 0
	m=audio 50000 RTP/AVP 0
	a=rtpmap:0 PCMU/8000`)

// rejectedVideoOffer has a video stream disabled with port 0.
var rejectedVideoOffer = sdpLines(`v=0
	o=- 1 1 IN IP4 127.0.0.27
	s=-
	c=IN IP4 127.0.0.27
	t=0 0
	m=audio 50010 RTP/SAVP 0
	a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE
	a=rtcp-mux
	m=video 0 RTP/SAVP 97
	a=rtpmap:97 H264/90000`)

// attrsOf returns "key:value" of md's attributes, in order.
func attrsOf(attrs []sdp.Attribute) []string {
	var out []string
	for _, a := range attrs {
		out = append(out, a.String())
	}
	return out
}

func TestOfferRewrite(t *testing.T) {
	tests := []struct {
		name     string
		offer    []byte
		allowRTP bool
		wantErr  error
		// wantPorts: true for m-lines that must get a relay port, false
		// for rejected (port 0) ones.
		wantPorts []bool
		wantDSCP  []mediaKind
	}{
		{name: "audio two crypto suites", offer: audioTwoCrypto, wantPorts: []bool{true}, wantDSCP: []mediaKind{kindAudio}},
		{name: "audio video content bfcp", offer: webexOffer, wantPorts: []bool{true, true, true, true},
			wantDSCP: []mediaKind{kindAudio, kindVideo, kindContent, kindApplication}},
		{name: "ice removed", offer: iceOffer, wantPorts: []bool{true}, wantDSCP: []mediaKind{kindAudio}},
		{name: "port zero stays zero", offer: rejectedVideoOffer, wantPorts: []bool{true, false}},
		{name: "plain RTP refused", offer: plainOffer, wantErr: ErrNotAcceptable},
		{name: "plain RTP allowed", offer: plainOffer, allowRTP: true, wantPorts: []bool{true}},
		{name: "garbage", offer: []byte("hello\r\n"), wantErr: ErrBadSDP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := testEngine(t, nil)
			s := e.NewSession(SessionConfig{CallID: tc.name, AdvertiseA: advA, AdvertiseB: advB, AllowPlainRTP: tc.allowRTP})
			defer s.Close()
			out, err := s.Offer(SideA, tc.offer)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if e.PortsInUse() != 0 {
					t.Fatal("refused offer holds ports")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			in := mustParse(t, tc.offer)
			got := mustParse(t, out)
			text := string(out)

			if got.ConnectionInformation == nil || got.ConnectionInformation.Address.Address != advB.String() {
				t.Errorf("session c= = %v, want %v", got.ConnectionInformation, advB)
			}
			if got.Origin.UnicastAddress != advB.String() || got.Origin.Username != in.Origin.Username {
				t.Errorf("o= = %+v", got.Origin)
			}
			for _, bad := range []string{"candidate", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite", "end-of-candidates", "remote-candidates", "BUNDLE"} {
				if strings.Contains(text, bad) {
					t.Errorf("output still contains %q", bad)
				}
			}
			if strings.Contains(text, "127.0.0.2") {
				t.Errorf("output leaks the peer address:\n%s", text)
			}
			if len(got.MediaDescriptions) != len(tc.wantPorts) {
				t.Fatalf("%d m-lines, want %d", len(got.MediaDescriptions), len(tc.wantPorts))
			}
			used := 0
			for i, md := range got.MediaDescriptions {
				port := md.MediaName.Port.Value
				pa, pb := s.Ports(i)
				if !tc.wantPorts[i] {
					if port != 0 || pa != 0 {
						t.Errorf("m-line %d: port %d (alloc %d), want 0", i, port, pa)
					}
					continue
				}
				used++
				if port != pb || port%2 != 0 || port < 12000 || port > 12399 {
					t.Errorf("m-line %d: port %d, want the B-facing even relay port %d", i, port, pb)
				}
				if pa == pb || pa == 0 {
					t.Errorf("m-line %d: A port %d B port %d", i, pa, pb)
				}
				if md.ConnectionInformation != nil && md.ConnectionInformation.Address.Address != advB.String() {
					t.Errorf("m-line %d: c= %v", i, md.ConnectionInformation)
				}
				if v, ok := md.Attribute("rtcp"); ok && v != itoa(port+1)+" IN IP4 "+advB.String() {
					t.Errorf("m-line %d: a=rtcp:%s", i, v)
				}
				// All non-ICE attributes kept, in order, crypto untouched;
				// a=rtcp only has its value rewritten.
				var want []string
				for _, a := range in.MediaDescriptions[i].Attributes {
					if isICEAttr(a.Key) {
						continue
					}
					if a.Key == "rtcp" {
						a.Value = itoa(port+1) + " IN IP4 " + advB.String()
					}
					want = append(want, a.String())
				}
				if g := attrsOf(md.Attributes); !slices.Equal(g, want) {
					t.Errorf("m-line %d attributes\n got %q\nwant %q", i, g, want)
				}
				if md.MediaName.Media != in.MediaDescriptions[i].MediaName.Media ||
					!slices.Equal(md.MediaName.Formats, in.MediaDescriptions[i].MediaName.Formats) ||
					!slices.Equal(md.MediaName.Protos, in.MediaDescriptions[i].MediaName.Protos) {
					t.Errorf("m-line %d: %v changed from %v", i, md.MediaName, in.MediaDescriptions[i].MediaName)
				}
				if tc.wantDSCP != nil {
					s.mu.Lock()
					k := s.streams[i].kind
					s.mu.Unlock()
					if k != tc.wantDSCP[i] {
						t.Errorf("m-line %d: kind %d, want %d", i, k, tc.wantDSCP[i])
					}
				}
			}
			if e.PortsInUse() != used*4 {
				t.Errorf("ports in use %d, want %d", e.PortsInUse(), used*4)
			}
			if strings.Count(text, "a=crypto:") != strings.Count(string(tc.offer), "a=crypto:") {
				t.Error("crypto lines lost")
			}
		})
	}
}

func TestAnswerRewriteAndHoldResume(t *testing.T) {
	e := testEngine(t, nil)
	s := e.NewSession(SessionConfig{AdvertiseA: advA, AdvertiseB: advB})
	defer s.Close()
	toB, err := s.Offer(SideA, webexOffer)
	if err != nil {
		t.Fatal(err)
	}
	answer := strings.ReplaceAll(string(webexOffer), "127.0.0.22", "127.0.0.30")
	toA, err := s.Answer(SideB, []byte(answer))
	if err != nil {
		t.Fatal(err)
	}
	got := mustParse(t, toA)
	if got.ConnectionInformation.Address.Address != advA.String() || got.Origin.UnicastAddress != advA.String() {
		t.Fatalf("answer toward A not on advertise A:\n%s", toA)
	}
	var portsA, portsB []int
	for i := range got.MediaDescriptions {
		pa, pb := s.Ports(i)
		if got.MediaDescriptions[i].MediaName.Port.Value != pa {
			t.Fatalf("m-line %d toward A: port %d want %d", i, got.MediaDescriptions[i].MediaName.Port.Value, pa)
		}
		portsA, portsB = append(portsA, pa), append(portsB, pb)
	}
	s.mu.Lock()
	st0 := s.streams[0]
	s.mu.Unlock()
	if rem := st0.legs[SideB].remRTP.Load(); rem == nil || rem.ap.String() != "127.0.0.30:30000" {
		t.Fatalf("B address not learned: %v", rem)
	}
	verB := mustParse(t, toB).Origin.SessionVersion

	// Hold from B: re-offer sendonly.
	hold := strings.ReplaceAll(answer, "a=sendrecv", "a=sendonly")
	toA2, err := s.Offer(SideB, []byte(hold))
	if err != nil {
		t.Fatal(err)
	}
	if !st0.held.Load() {
		t.Fatal("stream not held")
	}
	if !strings.Contains(string(toA2), "a=sendonly") {
		t.Fatal("direction not passed through")
	}
	if v2, v1 := mustParse(t, toA2).Origin.SessionVersion, got.Origin.SessionVersion; v2 != v1+1 {
		t.Fatalf("o= version toward A %d -> %d, want +1", v1, v2)
	}
	toB2, err := s.Answer(SideA, []byte(strings.ReplaceAll(string(webexOffer), "a=sendrecv", "a=recvonly")))
	if err != nil {
		t.Fatal(err)
	}
	if v := mustParse(t, toB2).Origin.SessionVersion; v != verB+1 {
		t.Fatalf("o= version toward B %d, want %d", v, verB+1)
	}
	// Resume.
	if _, err := s.Offer(SideB, []byte(answer)); err != nil {
		t.Fatal(err)
	}
	toB3, err := s.Answer(SideA, webexOffer)
	if err != nil {
		t.Fatal(err)
	}
	if st0.held.Load() {
		t.Fatal("stream still held after resume")
	}
	// Same content as the first answer toward B: version still changes
	// (the hold answer was different), and ports never moved.
	for i := range portsA {
		pa, pb := s.Ports(i)
		if pa != portsA[i] || pb != portsB[i] {
			t.Fatalf("m-line %d ports moved: %d/%d -> %d/%d", i, portsA[i], portsB[i], pa, pb)
		}
		if p := mediaPort(t, toB3, i); p != pb {
			t.Fatalf("m-line %d toward B: %d want %d", i, p, pb)
		}
	}
	if e.PortsInUse() != 4*4 {
		t.Fatalf("ports in use %d, want 16", e.PortsInUse())
	}
}

func TestOriginVersionUnchangedWhenSDPUnchanged(t *testing.T) {
	e := testEngine(t, nil)
	s := e.NewSession(SessionConfig{AdvertiseA: advA, AdvertiseB: advB})
	defer s.Close()
	o1, err := s.Offer(SideA, audioTwoCrypto)
	if err != nil {
		t.Fatal(err)
	}
	o2, err := s.Offer(SideA, audioTwoCrypto) // session refresh re-INVITE
	if err != nil {
		t.Fatal(err)
	}
	if string(o1) != string(o2) {
		t.Fatalf("identical re-offer produced a different SDP:\n%s\n%s", o1, o2)
	}
	v1 := mustParse(t, o1).Origin
	o3, err := s.Offer(SideA, []byte(strings.Replace(string(audioTwoCrypto), "a=sendrecv", "a=sendonly", 1)))
	if err != nil {
		t.Fatal(err)
	}
	v3 := mustParse(t, o3).Origin
	if v3.SessionVersion != v1.SessionVersion+1 || v3.SessionID != v1.SessionID {
		t.Fatalf("origin %+v -> %+v", v1, v3)
	}
}

func TestRejectedInAnswerReleasesPorts(t *testing.T) {
	e := testEngine(t, nil)
	s := e.NewSession(SessionConfig{AdvertiseA: advA, AdvertiseB: advB})
	if _, err := s.Offer(SideA, webexOffer); err != nil {
		t.Fatal(err)
	}
	// B accepts audio only.
	answer := strings.NewReplacer("30002", "0", "30004", "0", "30006", "0").Replace(string(webexOffer))
	toA, err := s.Answer(SideB, []byte(answer))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		if p := mediaPort(t, toA, i); p != 0 {
			t.Fatalf("m-line %d port %d toward A, want 0", i, p)
		}
	}
	if e.PortsInUse() != 4 {
		t.Fatalf("ports in use %d, want 4", e.PortsInUse())
	}
	// The rejected streams' stats are still reported by Close.
	if st := s.Close(); len(st) != 4 {
		t.Fatalf("Close returned %d streams, want 4", len(st))
	}
}

func TestOfferAnswerStateErrors(t *testing.T) {
	e := testEngine(t, nil)
	s := e.NewSession(SessionConfig{AdvertiseA: advA, AdvertiseB: advB})
	defer s.Close()
	if _, err := s.Answer(SideB, audioTwoCrypto); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("answer without offer: %v", err)
	}
	if _, err := s.Offer(SideA, webexOffer); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideA, webexOffer); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("answer from the offerer: %v", err)
	}
	if _, err := s.Answer(SideB, audioTwoCrypto); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("m-line count mismatch: %v", err)
	}
	if _, err := s.Offer(SideB, webexOffer); !errors.Is(err, ErrOfferPending) || errors.Is(err, ErrBadSDP) {
		t.Fatalf("offer from B while A's offer is pending: %v", err)
	}
	if _, err := s.Answer(SideB, []byte(strings.ReplaceAll(string(plainOffer), "50000", "50002"))); !errors.Is(err, ErrNotAcceptable) {
		t.Fatalf("plain answer: %v", err)
	}
	if from, ok := s.Pending(); !ok || from != SideA {
		t.Fatalf("Pending() = %v, %v after refused answers, want A, true", from, ok)
	}
	if _, err := s.Answer(SideB, webexOffer); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideB, webexOffer); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("second final answer: %v", err)
	}
	if _, err := s.Offer(SideB, audioTwoCrypto); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("re-offer removing m-lines: %v", err)
	}
	if _, ok := s.Pending(); ok {
		t.Fatal("a refused re-offer is pending")
	}
}

func TestUnparsableSDPRedactsKeys(t *testing.T) {
	e := testEngine(t, nil)
	s := e.NewSession(SessionConfig{AdvertiseA: advA, AdvertiseB: advB})
	defer s.Close()
	bad := []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio x RTP/SAVP 0 inline:SECRETKEY|2^31\r\n")
	_, err := s.Offer(SideA, bad)
	if !errors.Is(err, ErrNotAcceptable) || !errors.Is(err, ErrBadSDP) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "SECRETKEY") {
		t.Fatalf("error leaks key material: %v", err)
	}
	if got := redact("x inline:abc|2^31 y inline:def"); got != "x inline:<redacted>|2^31 y inline:<redacted>" {
		t.Fatalf("redact = %q", got)
	}
}

func TestClockRates(t *testing.T) {
	sd := mustParse(t, audioTwoCrypto)
	ct := buildClocks(nil, sd.MediaDescriptions[0])
	for pt, want := range map[int]uint32{114: 48000, 9: 8000, 0: 8000, 101: 0, 96: 8000} {
		if ct[pt] != want {
			t.Errorf("pt %d clock %d, want %d", pt, ct[pt], want)
		}
	}
	sd = mustParse(t, webexOffer)
	ct = buildClocks(nil, sd.MediaDescriptions[1])
	if ct[97] != 90000 || ct[100] != 90000 {
		t.Errorf("video clocks %d %d", ct[97], ct[100])
	}
}
