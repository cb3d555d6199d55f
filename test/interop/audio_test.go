package interop

import (
	"math"
	"path/filepath"
	"testing"
)

func TestULawRoundTrip(t *testing.T) {
	for _, s := range []int16{0, 1, -1, 100, -100, 1000, -1000, 8000, -8000, 32767, -32768} {
		got := ULawDecode(ULawEncode(s))
		// μ-law keeps about 4 significant bits: the error grows with the level.
		if tol := math.Max(8, math.Abs(float64(s))/16); math.Abs(float64(got)-float64(s)) > tol {
			t.Errorf("%d -> %d, off by more than %.0f", s, got, tol)
		}
	}
	if ULawEncode(0) != 0xff {
		t.Errorf("silence encodes as %#x, want 0xff", ULawEncode(0))
	}
}

func TestDominantFrequency(t *testing.T) {
	const rate = 8000
	for _, f := range []float64{440, 1000, 2600} {
		s := Tone(f, rate, 0, rate, 8000)
		for i := range s { // through μ-law, as on the wire
			s[i] = ULawDecode(ULawEncode(s[i]))
		}
		sp := DominantFrequency(s, rate)
		if math.Abs(sp.Freq-f) > 5 || sp.Share < 0.9 {
			t.Errorf("%.0f Hz tone: dominant %.0f Hz, share %.2f", f, sp.Freq, sp.Share)
		}
	}
	mix := Tone(440, rate, 0, rate, 8000)
	for i, v := range Tone(1000, rate, 0, rate, 8000) {
		mix[i] += v
	}
	if sp := DominantFrequency(mix, rate); sp.Share > 0.6 {
		t.Errorf("two equal tones: share %.2f, want about 0.5", sp.Share)
	}
}

func TestWAVRoundTripAndTrim(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.wav")
	s := append(make([]int16, 1600), Tone(1000, 8000, 0, 800, 8000)...)
	s = append(s, make([]int16, 1600)...)
	if err := WriteWAV(p, 8000, s); err != nil {
		t.Fatal(err)
	}
	w, err := ReadWAV(p)
	if err != nil {
		t.Fatal(err)
	}
	if w.Rate != 8000 || w.Channels != 1 || len(w.Samples) != len(s) {
		t.Fatalf("read back %d Hz, %d channels, %d samples", w.Rate, w.Channels, len(w.Samples))
	}
	if n := len(TrimSilence(w.Samples, 8000, 300)); n != 800 {
		t.Fatalf("trimmed to %d samples, want 800", n)
	}
}
