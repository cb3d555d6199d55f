package media

import (
	"testing"
)

// FuzzOffer feeds arbitrary SDP to Offer (and, when accepted, to Answer):
// it must never panic, and any SDP it produces must parse.
func FuzzOffer(f *testing.F) {
	for _, s := range [][]byte{audioTwoCrypto, webexOffer, iceOffer, plainOffer, rejectedVideoOffer, audioSDP(lo, 4000)} {
		f.Add(s, false)
	}
	f.Add([]byte("v=0\r\n"), true)
	e := testEngine(f, func(c *Config) { c.PortMin, c.PortMax = 13000, 13999 })
	f.Fuzz(func(t *testing.T, in []byte, plain bool) {
		s := e.NewSession(SessionConfig{AdvertiseA: advA, AdvertiseB: advB, AllowPlainRTP: plain})
		defer s.Close()
		out, err := s.Offer(SideA, in)
		if err != nil {
			return
		}
		mustParse(t, out)
		if out, err = s.Answer(SideB, in); err == nil {
			mustParse(t, out)
		}
		if out, err = s.Offer(SideB, in); err == nil {
			mustParse(t, out)
		}
	})
}
