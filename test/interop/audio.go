// Package interop holds helpers of the interoperability tests: G.711 μ-law,
// tone generation and frequency measurement (Goertzel), WAV reading, SDES
// keys and SDP parsing for a test caller built on pion/srtp, and a headless
// baresip callee.
package interop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
)

// ULawEncode encodes one 16-bit linear PCM sample as G.711 μ-law.
func ULawEncode(s int16) byte {
	const bias, clip = 0x84, 32635
	v := int(s)
	sign := 0
	if v < 0 {
		v = -v
		sign = 0x80
	}
	if v > clip {
		v = clip
	}
	v += bias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

// ULawDecode decodes one G.711 μ-law byte into 16-bit linear PCM.
func ULawDecode(u byte) int16 {
	u = ^u
	exp := int(u>>4) & 7
	mant := int(u & 0x0f)
	v := ((mant << 3) + 0x84) << exp
	v -= 0x84
	if u&0x80 != 0 {
		return int16(-v)
	}
	return int16(v)
}

// Tone returns n samples of a sine of freq Hz at rate Hz, amplitude amp
// (full scale 32767), starting at sample index from (so that consecutive
// calls continue the same wave).
func Tone(freq float64, rate, from, n int, amp float64) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * math.Sin(2*math.Pi*freq*float64(from+i)/float64(rate)))
	}
	return out
}

// goertzel returns the power of frequency f (Hz) in x sampled at rate Hz.
func goertzel(x []float64, f float64, rate int) float64 {
	w := 2 * math.Pi * f / float64(rate)
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range x {
		s0 := v + c*s1 - s2
		s2, s1 = s1, s0
	}
	return s1*s1 + s2*s2 - c*s1*s2
}

// Spectrum is the result of DominantFrequency.
type Spectrum struct {
	// Freq is the frequency of the strongest bin (Hz), Power its power.
	Freq, Power float64
	// RMS is the root mean square of the analysed samples (full scale
	// 32767).
	RMS float64
	// Share is the fraction of the power of all scanned bins that lies
	// within ±25 Hz of Freq, 0..1: near 1 for a clean tone, low for noise
	// or a mix of tones.
	Share float64
}

// DominantFrequency scans 50 Hz .. rate/2-50 Hz in 5 Hz steps with the
// Goertzel algorithm and returns the strongest frequency of samples.
func DominantFrequency(samples []int16, rate int) Spectrum {
	x := make([]float64, len(samples))
	var sum float64
	for i, s := range samples {
		x[i] = float64(s)
		sum += x[i] * x[i]
	}
	var sp Spectrum
	if len(x) == 0 {
		return sp
	}
	sp.RMS = math.Sqrt(sum / float64(len(x)))
	type bin struct{ f, p float64 }
	var bins []bin
	var total float64
	for f := 50.0; f <= float64(rate)/2-50; f += 5 {
		p := goertzel(x, f, rate)
		bins = append(bins, bin{f, p})
		total += p
		if p > sp.Power {
			sp.Freq, sp.Power = f, p
		}
	}
	var near float64
	for _, b := range bins {
		if math.Abs(b.f-sp.Freq) <= 25 {
			near += b.p
		}
	}
	if total > 0 {
		sp.Share = near / total
	}
	return sp
}

// TrimSilence drops the leading and trailing samples of a signal whose
// 20 ms blocks are quieter than threshold (RMS, full scale 32767).
func TrimSilence(s []int16, rate int, threshold float64) []int16 {
	block := rate / 50
	loud := func(b []int16) bool {
		var sum float64
		for _, v := range b {
			sum += float64(v) * float64(v)
		}
		return len(b) > 0 && math.Sqrt(sum/float64(len(b))) >= threshold
	}
	first, last := -1, -1
	for i := 0; i+block <= len(s); i += block {
		if loud(s[i : i+block]) {
			if first < 0 {
				first = i
			}
			last = i + block
		}
	}
	if first < 0 {
		return nil
	}
	return s[first:last]
}

// WAV is decoded 16-bit PCM audio (first channel only).
type WAV struct {
	Rate     int
	Channels int
	Samples  []int16
}

// ReadWAV reads a 16-bit PCM RIFF/WAVE file. It is tolerant of a data
// chunk whose size was never finalised (a recorder still writing or
// killed): the samples then run to the end of the file.
func ReadWAV(path string) (WAV, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return WAV{}, err
	}
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return WAV{}, errors.New("not a RIFF/WAVE file")
	}
	var w WAV
	bits := 0
	for off := 12; off+8 <= len(b); {
		id := string(b[off : off+4])
		size := int(binary.LittleEndian.Uint32(b[off+4 : off+8]))
		body := off + 8
		switch id {
		case "fmt ":
			if body+16 > len(b) {
				return WAV{}, errors.New("short fmt chunk")
			}
			format := binary.LittleEndian.Uint16(b[body:])
			w.Channels = int(binary.LittleEndian.Uint16(b[body+2:]))
			w.Rate = int(binary.LittleEndian.Uint32(b[body+4:]))
			bits = int(binary.LittleEndian.Uint16(b[body+14:]))
			if (format != 1 && format != 0xfffe) || bits != 16 || w.Channels < 1 {
				return WAV{}, fmt.Errorf("want 16-bit PCM, have format %d, %d bits, %d channels", format, bits, w.Channels)
			}
		case "data":
			if bits == 0 {
				return WAV{}, errors.New("data chunk before fmt chunk")
			}
			end := body + size
			if size == 0 || end > len(b) {
				end = len(b)
			}
			frame := 2 * w.Channels
			for i := body; i+frame <= end; i += frame {
				w.Samples = append(w.Samples, int16(binary.LittleEndian.Uint16(b[i:])))
			}
			return w, nil
		}
		off = body + size + size%2
	}
	return WAV{}, errors.New("no data chunk")
}

// WriteWAV writes mono 16-bit PCM samples at rate Hz.
func WriteWAV(path string, rate int, samples []int16) error {
	n := 2 * len(samples)
	b := make([]byte, 44+n)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(2*rate))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(n))
	for i, s := range samples {
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(s))
	}
	return os.WriteFile(path, b, 0o600)
}
