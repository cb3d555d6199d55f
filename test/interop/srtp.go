package interop

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
)

// SuiteAES80 is the SDES suite the test caller offers.
const SuiteAES80 = "AES_CM_128_HMAC_SHA1_80"

// Key is the master key and salt of an SDES inline key (RFC 4568).
type Key struct {
	Suite    string
	Material []byte // master key || master salt
}

// NewKey returns a random AES_CM_128_HMAC_SHA1_80 key (16 + 14 bytes).
func NewKey() Key {
	m := make([]byte, 30)
	_, _ = rand.Read(m)
	return Key{Suite: SuiteAES80, Material: m}
}

// Inline is the key as in "inline:<base64>".
func (k Key) Inline() string { return base64.StdEncoding.EncodeToString(k.Material) }

// Equal reports whether k and o are the same suite and material.
func (k Key) Equal(o Key) bool { return k.Suite == o.Suite && string(k.Material) == string(o.Material) }

// String shows a fingerprint (SHA-256 prefix), never the key material, so
// that test logs can tell keys apart.
func (k Key) String() string {
	sum := sha256.Sum256(k.Material)
	return fmt.Sprintf("%s sha256:%x", k.Suite, sum[:4])
}

func profileOf(suite string) (srtp.ProtectionProfile, int, error) {
	switch suite {
	case "AES_CM_128_HMAC_SHA1_80":
		return srtp.ProtectionProfileAes128CmHmacSha1_80, 16, nil
	case "AES_CM_128_HMAC_SHA1_32":
		return srtp.ProtectionProfileAes128CmHmacSha1_32, 16, nil
	case "AEAD_AES_128_GCM":
		return srtp.ProtectionProfileAeadAes128Gcm, 16, nil
	case "AEAD_AES_256_GCM":
		return srtp.ProtectionProfileAeadAes256Gcm, 32, nil
	case "AES_256_CM_HMAC_SHA1_80":
		return srtp.ProtectionProfileAes256CmHmacSha1_80, 32, nil
	case "AES_256_CM_HMAC_SHA1_32":
		return srtp.ProtectionProfileAes256CmHmacSha1_32, 32, nil
	}
	return 0, 0, fmt.Errorf("unknown SRTP suite %q", suite)
}

// Context returns a fresh pion SRTP context keyed with k (no replay
// protection: the test looks at every packet).
func (k Key) Context() (*srtp.Context, error) {
	p, keyLen, err := profileOf(k.Suite)
	if err != nil {
		return nil, err
	}
	if len(k.Material) <= keyLen {
		return nil, fmt.Errorf("%s: key material of %d bytes", k.Suite, len(k.Material))
	}
	return srtp.CreateContext(k.Material[:keyLen], k.Material[keyLen:], p)
}

// Crypto is one a=crypto line.
type Crypto struct {
	Tag int
	Key Key
}

// ParseCrypto parses "<tag> <suite> inline:<key>[|...] [params]".
func ParseCrypto(v string) (Crypto, error) {
	f := strings.Fields(v)
	if len(f) < 3 {
		return Crypto{}, errors.New("short a=crypto")
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil {
		return Crypto{}, fmt.Errorf("a=crypto tag: %w", err)
	}
	inline, ok := strings.CutPrefix(f[2], "inline:")
	if !ok {
		return Crypto{}, errors.New("a=crypto without inline key")
	}
	inline, _, _ = strings.Cut(inline, "|")
	m, err := base64.StdEncoding.DecodeString(inline)
	if err != nil {
		if m, err = base64.RawStdEncoding.DecodeString(inline); err != nil {
			return Crypto{}, errors.New("a=crypto key is not base64")
		}
	}
	return Crypto{Tag: tag, Key: Key{Suite: f[1], Material: m}}, nil
}

// AudioSDP is what the test needs of the first audio m-line of an SDP.
type AudioSDP struct {
	Addr    netip.AddrPort // c= address (media level, else session) and m= port
	Proto   string         // "RTP/SAVP"
	Formats []string
	Crypto  []Crypto
	RTCPMux bool
}

// ParseAudio parses body and returns its first audio stream.
func ParseAudio(body []byte) (AudioSDP, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(string(body)); err != nil {
		return AudioSDP{}, fmt.Errorf("SDP: %w", err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "audio" {
			continue
		}
		var a AudioSDP
		ci := sd.ConnectionInformation
		if md.ConnectionInformation != nil {
			ci = md.ConnectionInformation
		}
		if ci == nil || ci.Address == nil {
			return AudioSDP{}, errors.New("SDP: no c= line")
		}
		ip, err := netip.ParseAddr(ci.Address.Address)
		if err != nil {
			return AudioSDP{}, fmt.Errorf("SDP: c= address: %w", err)
		}
		a.Addr = netip.AddrPortFrom(ip, uint16(md.MediaName.Port.Value))
		a.Proto = strings.Join(md.MediaName.Protos, "/")
		a.Formats = md.MediaName.Formats
		for _, at := range md.Attributes {
			switch at.Key {
			case "crypto":
				c, err := ParseCrypto(at.Value)
				if err != nil {
					return AudioSDP{}, err
				}
				a.Crypto = append(a.Crypto, c)
			case "rtcp-mux":
				a.RTCPMux = true
			}
		}
		return a, nil
	}
	return AudioSDP{}, errors.New("SDP: no audio stream")
}
