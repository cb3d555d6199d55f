package dnsresolve

import (
	"math/rand/v2"
	"testing"
)

func seeded() func(int) int {
	return rand.New(rand.NewPCG(1, 2)).IntN
}

func TestOrderSRVPriority(t *testing.T) {
	in := []srvRecord{
		{Target: "c.", Priority: 30, Weight: 5},
		{Target: "a.", Priority: 10, Weight: 5},
		{Target: "b.", Priority: 20, Weight: 0},
		{Target: "a2.", Priority: 10, Weight: 5},
	}
	orig := append([]srvRecord(nil), in...)
	intn := seeded()
	for range 100 {
		out := orderSRV(in, intn)
		if len(out) != 4 {
			t.Fatalf("got %d records", len(out))
		}
		if out[0].Priority != 10 || out[1].Priority != 10 || out[2].Target != "b." || out[3].Target != "c." {
			t.Fatalf("bad order %+v", out)
		}
	}
	for i := range in {
		if in[i] != orig[i] {
			t.Fatal("orderSRV modified its input")
		}
	}
}

// firstPickFreq orders recs n times and returns how often each target came
// first, and fails if any ordering is not a permutation of recs.
func firstPickFreq(t *testing.T, recs []srvRecord, n int) map[string]float64 {
	t.Helper()
	intn := seeded()
	counts := make(map[string]int)
	for range n {
		out := orderSRV(recs, intn)
		seen := make(map[string]bool)
		for _, r := range out {
			seen[r.Target] = true
		}
		if len(out) != len(recs) || len(seen) != len(recs) {
			t.Fatalf("ordering %+v is not a permutation of %+v", out, recs)
		}
		counts[out[0].Target]++
	}
	freq := make(map[string]float64)
	for k, c := range counts {
		freq[k] = float64(c) / float64(n)
	}
	return freq
}

func checkFreq(t *testing.T, freq map[string]float64, want map[string]float64, tol float64) {
	t.Helper()
	for k, w := range want {
		if g := freq[k]; g < w-tol || g > w+tol {
			t.Errorf("%s first in %.4f of orderings, want %.4f ± %.3f", k, g, w, tol)
		}
	}
}

func TestOrderSRVWeightDistribution(t *testing.T) {
	// RFC 2782: draw uniform in [0, 100]; running sums 60, 90, 100, so
	// the first pick is a with p = 61/101, b 30/101, c 10/101.
	recs := []srvRecord{
		{Target: "a.", Priority: 1, Weight: 60},
		{Target: "b.", Priority: 1, Weight: 30},
		{Target: "c.", Priority: 1, Weight: 10},
	}
	freq := firstPickFreq(t, recs, 10000)
	checkFreq(t, freq, map[string]float64{"a.": 61.0 / 101, "b.": 30.0 / 101, "c.": 10.0 / 101}, 0.02)
}

func TestOrderSRVWeightZero(t *testing.T) {
	// A weight-0 record sits first in the list before the draw and is
	// picked only when the draw is 0: p = 1/(sum+1).
	recs := []srvRecord{
		{Target: "w10.", Priority: 1, Weight: 10},
		{Target: "zero.", Priority: 1, Weight: 0},
	}
	freq := firstPickFreq(t, recs, 10000)
	checkFreq(t, freq, map[string]float64{"zero.": 1.0 / 11, "w10.": 10.0 / 11}, 0.015)

	// With a large weight beside it the weight-0 record almost never wins.
	freq = firstPickFreq(t, []srvRecord{
		{Target: "big.", Priority: 1, Weight: 65535},
		{Target: "zero.", Priority: 1, Weight: 0},
	}, 10000)
	if freq["zero."] > 0.001 {
		t.Errorf("weight-0 record first in %.4f of orderings next to weight 65535", freq["zero."])
	}

	// Only weight-0 records: spread evenly.
	freq = firstPickFreq(t, []srvRecord{
		{Target: "x.", Priority: 1},
		{Target: "y.", Priority: 1},
		{Target: "z.", Priority: 1},
	}, 9000)
	checkFreq(t, freq, map[string]float64{"x.": 1.0 / 3, "y.": 1.0 / 3, "z.": 1.0 / 3}, 0.03)
}
