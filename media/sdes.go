package media

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
)

// suiteID names an SRTP crypto suite of SDES (RFC 4568, 6188, 7714).
type suiteID uint8

const (
	suiteAES128SHA1x80 suiteID = iota // AES_CM_128_HMAC_SHA1_80
	suiteAES128SHA1x32                // AES_CM_128_HMAC_SHA1_32
	suiteAEADAES128GCM                // AEAD_AES_128_GCM
	suiteAES256SHA1x80                // AES_256_CM_HMAC_SHA1_80
	suiteAES256SHA1x32                // AES_256_CM_HMAC_SHA1_32
	suiteAEADAES256GCM                // AEAD_AES_256_GCM
	numSuites
)

// offerSuites are the suites of the a=crypto lines the SBC offers toward a
// terminate-mode leg, in order of preference (after the suite the leg
// agreed before, see ourOffer); the tag of offerSuites[i] is i+1.
// AES_256_CM_HMAC_SHA1_32 is accepted in offers from peers, and offered
// again (tag len(offerSuites)+1) to a leg that agreed it, but not offered
// otherwise.
var offerSuites = [...]suiteID{suiteAES128SHA1x80, suiteAES128SHA1x32, suiteAEADAES128GCM, suiteAES256SHA1x80, suiteAEADAES256GCM}

// offerTag is the tag of suite id in the SBC's offers.
func offerTag(id suiteID) int {
	for i, o := range offerSuites {
		if o == id {
			return i + 1
		}
	}
	return len(offerSuites) + 1
}

// secAgreed is the suite a leg used in its last negotiation (ok false:
// none yet).
type secAgreed struct {
	suite suiteID
	ok    bool
}

// suiteInfo describes a suite: its SDES name, the pion profile and the
// lengths of the master key and salt carried in the inline key.
type suiteInfo struct {
	name            string
	profile         srtp.ProtectionProfile
	keyLen, saltLen int
}

func (id suiteID) info() suiteInfo {
	switch id {
	case suiteAES128SHA1x80:
		return suiteInfo{"AES_CM_128_HMAC_SHA1_80", srtp.ProtectionProfileAes128CmHmacSha1_80, 16, 14}
	case suiteAES128SHA1x32:
		return suiteInfo{"AES_CM_128_HMAC_SHA1_32", srtp.ProtectionProfileAes128CmHmacSha1_32, 16, 14}
	case suiteAEADAES128GCM:
		return suiteInfo{"AEAD_AES_128_GCM", srtp.ProtectionProfileAeadAes128Gcm, 16, 12}
	case suiteAES256SHA1x80:
		return suiteInfo{"AES_256_CM_HMAC_SHA1_80", srtp.ProtectionProfileAes256CmHmacSha1_80, 32, 14}
	case suiteAES256SHA1x32:
		return suiteInfo{"AES_256_CM_HMAC_SHA1_32", srtp.ProtectionProfileAes256CmHmacSha1_32, 32, 14}
	case suiteAEADAES256GCM:
		return suiteInfo{"AEAD_AES_256_GCM", srtp.ProtectionProfileAeadAes256Gcm, 32, 12}
	}
	return suiteInfo{}
}

func (id suiteID) String() string { return id.info().name }

// materialLen is the length of the inline key: master key || master salt.
func (id suiteID) materialLen() int {
	i := id.info()
	return i.keyLen + i.saltLen
}

func suiteByName(name string) (suiteID, bool) {
	for id := range numSuites {
		if id.info().name == name {
			return id, true
		}
	}
	return 0, false
}

// srtpKey is the keying of one direction of one leg: a suite, its master
// key and salt, and for keys received from a peer an optional MKI.
//
// Key material must never reach a log, a metric or an error: String and
// GoString redact it, and no error of this package quotes it.
type srtpKey struct {
	suite    suiteID
	material []byte // master key || master salt
	mki      []byte // MKI value, big endian, of the signalled length; nil: none
}

func (k srtpKey) equal(o srtpKey) bool {
	return k.suite == o.suite && bytes.Equal(k.material, o.material) && bytes.Equal(k.mki, o.mki)
}

func (k srtpKey) String() string   { return k.suite.String() + " key <redacted>" }
func (k srtpKey) GoString() string { return k.String() }

// newSRTPKey returns a fresh random master key and salt for suite.
func newSRTPKey(suite suiteID) srtpKey {
	m := make([]byte, suite.materialLen())
	_, _ = rand.Read(m) // crypto/rand.Read never fails (Go 1.24+)
	return srtpKey{suite: suite, material: m}
}

// cryptoLine is one a=crypto attribute (RFC 4568) with a single inline key.
type cryptoLine struct {
	tag int
	key srtpKey
}

func (c cryptoLine) String() string   { return fmt.Sprintf("crypto tag %d %v", c.tag, c.key) }
func (c cryptoLine) GoString() string { return c.String() }

// maxMKILen bounds the MKI length accepted in a key (bytes).
const maxMKILen = 8

// parseCrypto parses the value of an a=crypto attribute:
//
//	<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<mki>:<length>] [<session param>...]
//
// Lines with several keys, another key method, session parameters other
// than WSH (window size hint, ignored) and KDR=0, or an unknown suite are
// unsupported (errUnsupportedCrypto); syntax errors and key material of the
// wrong length are errBadCrypto. Errors never quote the key.
func parseCrypto(v string) (cryptoLine, error) {
	f := strings.Fields(v)
	if len(f) < 3 {
		return cryptoLine{}, fmt.Errorf("%w: want tag, suite and key parameters", errBadCrypto)
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil || tag < 0 || tag > 999999999 || len(f[0]) > 9 {
		return cryptoLine{}, fmt.Errorf("%w: bad tag", errBadCrypto)
	}
	suite, ok := suiteByName(f[1])
	if !ok {
		return cryptoLine{}, fmt.Errorf("%w: tag %d: unknown suite", errUnsupportedCrypto, tag)
	}
	for _, p := range f[3:] {
		if strings.HasPrefix(p, "WSH=") || p == "KDR=0" {
			continue
		}
		return cryptoLine{}, fmt.Errorf("%w: tag %d: session parameter %q", errUnsupportedCrypto, tag, redact(firstN(p, 24)))
	}
	kp := f[2]
	if strings.Contains(kp, ";") {
		return cryptoLine{}, fmt.Errorf("%w: tag %d: several keys", errUnsupportedCrypto, tag)
	}
	method, info, ok := strings.Cut(kp, ":")
	if !ok || !strings.EqualFold(method, "inline") {
		return cryptoLine{}, fmt.Errorf("%w: tag %d: key method is not inline", errUnsupportedCrypto, tag)
	}
	parts := strings.Split(info, "|")
	if len(parts) > 3 {
		return cryptoLine{}, fmt.Errorf("%w: tag %d: bad key parameters", errBadCrypto, tag)
	}
	key := srtpKey{suite: suite}
	key.material, err = base64.StdEncoding.DecodeString(parts[0])
	if err != nil {
		key.material, err = base64.RawStdEncoding.DecodeString(parts[0])
	}
	if err != nil {
		return cryptoLine{}, fmt.Errorf("%w: tag %d: key is not base64", errBadCrypto, tag)
	}
	if want := suite.materialLen(); len(key.material) != want {
		return cryptoLine{}, fmt.Errorf("%w: tag %d: %v key material is %d bytes, want %d",
			errBadCrypto, tag, suite, len(key.material), want)
	}
	for i, p := range parts[1:] {
		if val, length, isMKI := strings.Cut(p, ":"); isMKI {
			if key.mki != nil {
				return cryptoLine{}, fmt.Errorf("%w: tag %d: two MKIs", errBadCrypto, tag)
			}
			if key.mki, err = parseMKI(val, length); err != nil {
				return cryptoLine{}, fmt.Errorf("%w: tag %d: %w", errBadCrypto, tag, err)
			}
			continue
		}
		if i > 0 || !validLifetime(p) {
			return cryptoLine{}, fmt.Errorf("%w: tag %d: bad lifetime", errBadCrypto, tag)
		}
	}
	return cryptoLine{tag: tag, key: key}, nil
}

// validLifetime accepts "<n>" and "2^<n>" (RFC 4568 section 9.2).
func validLifetime(s string) bool {
	s = strings.TrimPrefix(s, "2^")
	n, err := strconv.ParseUint(s, 10, 64)
	return err == nil && n > 0
}

// parseMKI decodes "<value>:<length>" into length big-endian bytes.
func parseMKI(val, length string) ([]byte, error) {
	n, err := strconv.Atoi(length)
	if err != nil || n < 1 || n > maxMKILen {
		return nil, fmt.Errorf("MKI length must be 1..%d", maxMKILen)
	}
	v, err := strconv.ParseUint(val, 10, 64)
	if err != nil || (n < 8 && v >= 1<<(8*n)) {
		return nil, fmt.Errorf("MKI value does not fit its length")
	}
	mki := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		mki[i] = byte(v)
		v >>= 8
	}
	return mki, nil
}

// attrValue formats c as the value of an a=crypto attribute.
func (c cryptoLine) attrValue() string {
	v := fmt.Sprintf("%d %s inline:%s", c.tag, c.key.suite, base64.StdEncoding.EncodeToString(c.key.material))
	if len(c.key.mki) > 0 {
		var n uint64
		for _, b := range c.key.mki {
			n = n<<8 | uint64(b)
		}
		v += fmt.Sprintf("|%d:%d", n, len(c.key.mki))
	}
	return v
}

func firstN(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// cryptoLines returns the a=crypto lines of md this package supports, in
// SDP order; the others are skipped.
func cryptoLines(md *sdp.MediaDescription) []cryptoLine {
	var out []cryptoLine
	for _, a := range md.Attributes {
		if a.Key != "crypto" {
			continue
		}
		if c, err := parseCrypto(a.Value); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// removeCrypto drops the a=crypto lines of md, keeping the rest in order.
func removeCrypto(md *sdp.MediaDescription) {
	out := md.Attributes[:0]
	for _, a := range md.Attributes {
		if a.Key != "crypto" {
			out = append(out, a)
		}
	}
	md.Attributes = out
}

// dtlsAttrs describe DTLS-SRTP keying; a terminated stream uses SDES only.
var dtlsAttrs = [...]string{"fingerprint", "setup", "tls-id"}

// setCrypto replaces the a=crypto lines of md (and any DTLS-SRTP
// attributes) with lines, placed where the first a=crypto line was, else at
// the end. Other attributes keep their order.
func setCrypto(md *sdp.MediaDescription, lines []cryptoLine) {
	out := make([]sdp.Attribute, 0, len(md.Attributes)+len(lines))
	at := -1
	for _, a := range md.Attributes {
		if a.Key == "crypto" {
			if at < 0 {
				at = len(out)
			}
			continue
		}
		drop := false
		for _, k := range dtlsAttrs {
			drop = drop || strings.EqualFold(a.Key, k)
		}
		if !drop {
			out = append(out, a)
		}
	}
	if at < 0 {
		at = len(out)
	}
	ours := make([]sdp.Attribute, len(lines))
	for i, c := range lines {
		ours[i] = sdp.NewAttribute("crypto", c.attrValue())
	}
	md.Attributes = append(out[:at], append(ours, out[at:]...)...)
}

// setProfile sets the transport of an RTP m-line to RTP/SAVP(F) when
// secure, RTP/AVP(F) otherwise, keeping the feedback profile (AVPF,
// RFC 4585) of the original.
func setProfile(md *sdp.MediaDescription, secure bool) {
	fb := false
	if n := len(md.MediaName.Protos); n > 0 {
		fb = strings.HasSuffix(strings.ToUpper(md.MediaName.Protos[n-1]), "F")
	}
	p := "AVP"
	if secure {
		p = "SAVP"
	}
	if fb {
		p += "F"
	}
	md.MediaName.Protos = []string{"RTP", p}
}

// answerProfile sets the transport of an SRTP answer to a terminate-mode
// offerer: the offer's own when it is an RTP/AVP(F) or RTP/SAVP(F) profile
// (RFC 3264 section 6: RTP/AVP with a=crypto is best-effort SRTP, as CUCM
// and Polycom offer it), else RTP/SAVP(F).
func answerProfile(md *sdp.MediaDescription, offer []string) {
	switch strings.ToUpper(strings.Join(offer, "/")) {
	case "RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF":
		md.MediaName.Protos = slices.Clone(offer)
		return
	}
	setProfile(md, true)
}

// ourOffer returns the a=crypto lines the SBC offers toward a leg, with
// that leg's keys: first the suite the leg agreed before, if any (a peer
// supporting only that suite can answer a re-offer), then the suites of
// offerSuites, each with its fixed tag (offerTag).
func ourOffer(keys *[numSuites]srtpKey, agreed secAgreed) []cryptoLine {
	out := make([]cryptoLine, 0, len(offerSuites)+1)
	if agreed.ok {
		out = append(out, cryptoLine{tag: offerTag(agreed.suite), key: keys[agreed.suite]})
	}
	for _, id := range offerSuites {
		if agreed.ok && id == agreed.suite {
			continue
		}
		out = append(out, cryptoLine{tag: offerTag(id), key: keys[id]})
	}
	return out
}

// matchAnswer returns the first supported a=crypto line of an answer that
// accepts one of the offered lines (same tag, same suite).
func matchAnswer(lines, offered []cryptoLine) (cryptoLine, bool) {
	for _, c := range lines {
		for _, o := range offered {
			if c.tag == o.tag && c.key.suite == o.key.suite {
				return c, true
			}
		}
	}
	return cryptoLine{}, false
}
