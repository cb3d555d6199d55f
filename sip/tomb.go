package sip

import (
	"hash/maphash"
	"time"
)

// tombSlots is how many one-second buckets the tombstones are spread
// over: a tombstone lives between timerTx and timerTx + 1 s.
const tombSlots = int(timerTx/time.Second) + 1

// tombs holds the INVITE server transactions answered 2xx for Timer L
// (RFC 6026 §8.7, 64*T1): a CANCEL crossing the 2xx gets 200 without
// effect and a retransmitted INVITE is absorbed.
//
// A tombstone is the transaction key's 128-bit keyed hash (two
// hash/maphash seeds, random per process, so a peer cannot aim at a
// collision), 16 bytes, not the key string and its expiry. They sit in
// one bucket per second; each second the sweep clears the oldest bucket
// and reuses it for the next second's tombstones. Once the ring has held
// a full Timer L of traffic it allocates nothing more and its size stays
// flat: at 2,000 calls/s the 64,000 tombstones take about 1.5 MiB, and
// the process's heap does not keep growing until the first of them
// expires (with a map of strings and expiries it was about 150 B per
// call, and its churn at the 32 s mark grew the heap further).
//
// tombs is not safe for concurrent use: txLayer.mu guards it.
type tombs struct {
	seed [2]maphash.Seed
	ring [tombSlots]map[[2]uint64]struct{}
	cur  int // the bucket new tombstones go to
}

func newTombs() *tombs {
	t := &tombs{seed: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
	for i := range t.ring {
		t.ring[i] = map[[2]uint64]struct{}{}
	}
	return t
}

func (t *tombs) id(key string) [2]uint64 {
	return [2]uint64{maphash.String(t.seed[0], key), maphash.String(t.seed[1], key)}
}

// add tombstones key for at least timerTx.
func (t *tombs) add(key string) { t.ring[t.cur][t.id(key)] = struct{}{} }

// has reports whether key is tombstoned.
func (t *tombs) has(key string) bool {
	id := t.id(key)
	for i := range t.ring {
		if _, ok := t.ring[i][id]; ok {
			return true
		}
	}
	return false
}

// tick starts the next second: the oldest bucket, whose tombstones are
// all at least timerTx old, is emptied (its memory kept) and takes the
// new ones. A late tick only makes tombstones live longer.
func (t *tombs) tick() {
	t.cur = (t.cur + 1) % tombSlots
	clear(t.ring[t.cur])
}

// len is the number of tombstones.
func (t *tombs) len() int {
	n := 0
	for i := range t.ring {
		n += len(t.ring[i])
	}
	return n
}
