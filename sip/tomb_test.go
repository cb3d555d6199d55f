package sip

import (
	"fmt"
	"runtime"
	"testing"
)

// TestTombsLifetime: a tombstone is found for 32 ticks (Timer L) and is
// gone after the 33rd; other keys are never found.
func TestTombsLifetime(t *testing.T) {
	tb := newTombs()
	tb.add("z9hG4bK-a|10.0.0.1:5061|INVITE")
	for i := 1; i <= tombSlots-1; i++ {
		tb.tick()
		if !tb.has("z9hG4bK-a|10.0.0.1:5061|INVITE") {
			t.Fatalf("tombstone gone after %d s, want at least %v", i, timerTx)
		}
		if tb.has("z9hG4bK-b|10.0.0.1:5061|INVITE") || tb.has("z9hG4bK-a|10.0.0.1:5061|CANCEL") {
			t.Fatal("a key never added is tombstoned")
		}
	}
	tb.tick()
	if tb.has("z9hG4bK-a|10.0.0.1:5061|INVITE") || tb.len() != 0 {
		t.Fatalf("tombstone kept after %d s (%d left)", tombSlots, tb.len())
	}
}

// TestTombsFlat: once the ring has held one Timer L of tombstones, more
// seconds of the same rate neither allocate nor grow the heap.
func TestTombsFlat(t *testing.T) {
	const perSec = 2000
	tb := newTombs()
	keys := make([]string, perSec)
	for i := range keys {
		keys[i] = fmt.Sprintf("z9hG4bK-%08d|198.51.100.7:5061|INVITE", i)
	}
	second := func() {
		for _, k := range keys {
			tb.add(k)
		}
		tb.tick()
	}
	for i := 0; i < 2*tombSlots; i++ { // fill the ring, then reuse every bucket once
		second()
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	allocs := testing.AllocsPerRun(tombSlots, second)
	after := heap()
	t.Logf("%d tombstones: %d allocations per second of %d calls; heap %d -> %d B", tb.len(), int(allocs), perSec, before, after)
	if allocs > 0 {
		t.Errorf("%.0f allocations per second once the ring is full, want 0", allocs)
	}
	if grew := int64(after) - int64(before); grew > 64<<10 {
		t.Errorf("heap grew %d B over one more Timer L of tombstones", grew)
	}
}
