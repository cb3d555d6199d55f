package media

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseSRTPMode(t *testing.T) {
	for _, c := range []struct {
		in   string
		want SRTPMode
	}{{"passthrough", SRTPPassthrough}, {"terminate", SRTPTerminate}, {"rtp", SRTPPlainRTP}, {"Terminate", SRTPTerminate}} {
		got, err := ParseSRTPMode(c.in)
		if err != nil || got != c.want {
			t.Fatalf("ParseSRTPMode(%q) = %v, %v", c.in, got, err)
		}
		if got.String() != strings.ToLower(c.in) {
			t.Fatalf("String() = %q", got.String())
		}
	}
	for _, bad := range []string{"", "srtp", "pass-through", "rtp "} {
		if _, err := ParseSRTPMode(bad); !errors.Is(err, ErrBadSRTPMode) {
			t.Fatalf("ParseSRTPMode(%q): err = %v", bad, err)
		}
	}
	if m, _ := effectiveModes(SRTPPassthrough, SRTPPlainRTP); m != [2]SRTPMode{SRTPTerminate, SRTPPlainRTP} {
		t.Fatalf("effective modes %v", m)
	}
	if m, _ := effectiveModes(0, 0); m != [2]SRTPMode{} {
		t.Fatalf("zero modes not pass-through: %v", m)
	}
	if _, err := effectiveModes(7, 0); !errors.Is(err, ErrBadSRTPMode) {
		t.Fatalf("bad mode accepted: %v", err)
	}
}

func TestCryptoRoundTripEverySuite(t *testing.T) {
	for id := range numSuites {
		t.Run(id.String(), func(t *testing.T) {
			k := newSRTPKey(id)
			if len(k.material) != id.info().keyLen+id.info().saltLen {
				t.Fatalf("generated %d bytes", len(k.material))
			}
			if newSRTPKey(id).equal(k) {
				t.Fatal("two generated keys are equal")
			}
			in := cryptoLine{tag: 7, key: k}
			v := in.attrValue()
			if !strings.HasPrefix(v, "7 "+id.String()+" inline:") {
				t.Fatalf("attr value %q", redact(v))
			}
			out, err := parseCrypto(v)
			if err != nil {
				t.Fatal(err)
			}
			if out.tag != 7 || !out.key.equal(k) {
				t.Fatal("round trip changed the line")
			}
			// Lifetime, MKI and a window size hint are accepted.
			out, err = parseCrypto(v + "|2^31|1:4 WSH=64")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.key.mki, []byte{0, 0, 0, 1}) || !bytes.Equal(out.key.material, k.material) {
				t.Fatalf("mki %x", out.key.mki)
			}
			if again, err := parseCrypto(out.attrValue()); err != nil || !again.key.equal(out.key) {
				t.Fatalf("MKI round trip: %v", err)
			}
			// Key material one byte short or long is rejected.
			for _, n := range []int{len(k.material) - 1, len(k.material) + 1} {
				b64 := base64.StdEncoding.EncodeToString(make([]byte, n))
				_, err := parseCrypto(fmt.Sprintf("1 %s inline:%s", id, b64))
				if !errors.Is(err, errBadCrypto) {
					t.Fatalf("%d bytes of key material: err = %v", n, err)
				}
			}
			if s := fmt.Sprintf("%v %+v %#v %s", in, in, in, in.key); strings.Contains(s, v[strings.Index(v, "inline:")+7:]) {
				t.Fatalf("formatting leaks the key: %s", s)
			}
		})
	}
}

func TestCryptoBadLinesRejected(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 30))
	raw := base64.RawStdEncoding.EncodeToString(make([]byte, 30))
	if _, err := parseCrypto("1 AES_CM_128_HMAC_SHA1_80 inline:" + raw); err != nil {
		t.Fatalf("unpadded base64: %v", err)
	}
	for _, c := range []struct {
		line string
		want error
	}{
		{"", errBadCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80", errBadCrypto},
		{"x AES_CM_128_HMAC_SHA1_80 inline:" + key, errBadCrypto},
		{"-1 AES_CM_128_HMAC_SHA1_80 inline:" + key, errBadCrypto},
		{"1234567890 AES_CM_128_HMAC_SHA1_80 inline:" + key, errBadCrypto},
		{"1 F8_128_HMAC_SHA1_80 inline:" + key, errUnsupportedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 uri:http://example.com/key", errUnsupportedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + ";inline:" + key, errUnsupportedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + " UNENCRYPTED_SRTP", errUnsupportedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + " KDR=3", errUnsupportedCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:!!notbase64!!", errBadCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + "|2^x", errBadCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + "|1:4|2^31", errBadCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + "|256:1", errBadCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + "|1:0", errBadCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + "|1:4|2:4", errBadCrypto},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + key + "|2^31|1:4|x", errBadCrypto},
		{"1 AEAD_AES_128_GCM inline:" + key, errBadCrypto}, // 30 bytes, GCM needs 28
	} {
		_, err := parseCrypto(c.line)
		if !errors.Is(err, c.want) {
			t.Fatalf("%q: err = %v, want %v", c.line, err, c.want)
		}
		if strings.Contains(err.Error(), "AAAAAAAA") {
			t.Fatalf("error quotes the key: %v", err)
		}
	}
}

func TestSetProfileAndCrypto(t *testing.T) {
	sd := mustParse(t, audioTwoCrypto)
	md := sd.MediaDescriptions[0]
	if got := cryptoLines(md); len(got) != 2 || got[0].tag != 1 || got[1].key.suite != suiteAES128SHA1x32 {
		t.Fatalf("cryptoLines = %v", got)
	}
	var keys [numSuites]srtpKey
	for id := range numSuites {
		keys[id] = newSRTPKey(id)
	}
	offered := ourOffer(&keys, secAgreed{})
	setCrypto(md, offered)
	setProfile(md, true)
	attrs := attrsOf(md.Attributes)
	// Our lines replace the two, where the first one was.
	i := 0
	for ; i < len(attrs) && !strings.HasPrefix(attrs[i], "crypto:"); i++ {
	}
	if i == len(attrs) || !strings.HasPrefix(attrs[i-1], "fmtp:101") || attrs[i+len(offerSuites)] != "x-cisco-srtp-fec" {
		t.Fatalf("attributes %v", attrs)
	}
	for j, id := range offerSuites {
		want := fmt.Sprintf("crypto:%d %s inline:", j+1, id)
		if !strings.HasPrefix(attrs[i+j], want) {
			t.Fatalf("attr %d = %q, want prefix %q", j, redact(attrs[i+j]), want)
		}
	}
	if proto(md) != "RTP/SAVP" {
		t.Fatalf("proto %s", proto(md))
	}
	md.MediaName.Protos = []string{"UDP", "TLS", "RTP", "SAVPF"}
	setProfile(md, false)
	setCrypto(md, nil)
	if proto(md) != "RTP/AVPF" || hasAttr(md.Attributes, "crypto") {
		t.Fatalf("proto %s, attrs %v", proto(md), attrsOf(md.Attributes))
	}
	if c, ok := matchAnswer([]cryptoLine{{tag: 2, key: keys[suiteAES128SHA1x80]}, {tag: 3, key: keys[suiteAEADAES128GCM]}}, offered); !ok || c.tag != 3 {
		t.Fatalf("matchAnswer = %v, %v (tag 2 with the wrong suite must be skipped)", c, ok)
	}
}

// FuzzOfferTerminate feeds arbitrary SDP to a session terminating SRTP
// (a=crypto parsing, rewriting, key installation): no panic, and any SDP
// produced parses and carries only well-formed a=crypto lines.
func FuzzOfferTerminate(f *testing.F) {
	for _, s := range [][]byte{audioTwoCrypto, webexOffer, iceOffer, plainOffer, rejectedVideoOffer,
		termSDP(4000, "RTP/SAVPF", nil, "1 AEAD_AES_128_GCM inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==|2^31|1:4")} {
		f.Add(s, false)
	}
	e := testEngine(f, func(c *Config) { c.PortMin, c.PortMax = 13000, 13999 })
	f.Fuzz(func(t *testing.T, in []byte, plainB bool) {
		modeB := SRTPTerminate
		if plainB {
			modeB = SRTPPlainRTP
		}
		s := e.NewSession(SessionConfig{AdvertiseA: advA, AdvertiseB: advB, ModeA: SRTPTerminate, ModeB: modeB})
		defer s.Close()
		check := func(out []byte) {
			for _, md := range mustParse(t, out).MediaDescriptions {
				for _, a := range md.Attributes {
					if a.Key == "crypto" {
						if _, err := parseCrypto(a.Value); err != nil {
							t.Fatalf("SBC produced a bad a=crypto: %v", err)
						}
					}
				}
			}
		}
		out, err := s.Offer(SideA, in)
		if err != nil {
			return
		}
		check(out)
		if out, err = s.Answer(SideB, in); err == nil {
			check(out)
		}
		if out, err = s.Offer(SideB, in); err == nil {
			check(out)
		}
	})
}
