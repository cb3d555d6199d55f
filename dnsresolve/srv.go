package dnsresolve

import (
	"cmp"
	"slices"
)

// srvRecord is the part of an SRV RR (RFC 2782) the resolver needs. Target
// is a lower-case fully qualified name with its trailing dot.
type srvRecord struct {
	Target   string
	Priority uint16
	Weight   uint16
	Port     uint16
}

// orderSRV returns a new slice holding recs in the order RFC 2782 says to
// try them; recs is not modified. intn must return a uniformly distributed
// integer in [0, n) for n > 0.
//
// RFC 2782 ("Usage rules"): records are tried in ascending priority. Within
// one priority the client arranges the not yet ordered records "in any
// order, except that all those with weight 0 are placed at the beginning of
// the list", computes running sums of the weights, draws a uniform random
// number in [0, sum] (inclusive) and selects the first record whose running
// sum is greater than or equal to it; the selected record is removed and the
// procedure repeated until none is left. A weight-0 record thus has a small
// chance (1/(sum+1) on each draw) of being picked while weighted records
// remain. Records of weight 0 are shuffled among themselves first, which the
// "any order" wording allows, so that a set of only weight-0 records
// spreads load evenly instead of always favouring the first one returned.
func orderSRV(recs []srvRecord, intn func(n int) int) []srvRecord {
	out := slices.Clone(recs)
	slices.SortStableFunc(out, func(a, b srvRecord) int { return cmp.Compare(a.Priority, b.Priority) })
	for start := 0; start < len(out); {
		end := start + 1
		for end < len(out) && out[end].Priority == out[start].Priority {
			end++
		}
		weightedOrder(out[start:end], intn)
		start = end
	}
	return out
}

// weightedOrder reorders group, whose records share one priority, in place
// into RFC 2782 weighted random order.
func weightedOrder(group []srvRecord, intn func(n int) int) {
	if len(group) < 2 {
		return
	}
	// Weight-0 records first (stable), then shuffle that prefix.
	slices.SortStableFunc(group, func(a, b srvRecord) int {
		return cmp.Compare(min(a.Weight, 1), min(b.Weight, 1))
	})
	zeros := 0
	for zeros < len(group) && group[zeros].Weight == 0 {
		zeros++
	}
	for i := zeros - 1; i > 0; i-- {
		j := intn(i + 1)
		group[i], group[j] = group[j], group[i]
	}

	sum := 0
	for _, r := range group {
		sum += int(r.Weight)
	}
	// group[:i] is ordered; group[i:] is the remaining list, whose relative
	// order (weight-0 records first) is kept across draws.
	for i := 0; i < len(group)-1; i++ {
		draw := intn(sum + 1) // uniform in [0, sum]
		pick, running := len(group)-1, 0
		for j := i; j < len(group); j++ {
			running += int(group[j].Weight)
			if running >= draw {
				pick = j
				break
			}
		}
		sum -= int(group[pick].Weight)
		// Move the pick to position i, shifting group[i:pick] right by one.
		picked := group[pick]
		copy(group[i+1:pick+1], group[i:pick])
		group[i] = picked
	}
}
