package media

import (
	"runtime"
	"testing"
)

// TestFootprint measures the memory cost of idle audio calls (rtcp-mux:
// one reader goroutine and socket per leg) and reports it with -v; the
// numbers are quoted in doc.go. It fails if a reader costs more than
// 64 KiB, a sign that buffers or stacks grew unnoticed.
func TestFootprint(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes memory use")
	}
	const calls = 200
	e := testEngine(t, func(c *Config) { c.PortMin, c.PortMax = 15000, 16999 })
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	sessions := make([]*Session, 0, calls)
	for i := range calls {
		s := e.NewSession(SessionConfig{AdvertiseA: lo, AdvertiseB: lo})
		if _, err := s.Offer(SideA, audioSDP(lo, 5000+2*i)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Answer(SideB, audioSDP(lo, 15000+2*i)); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	readers := runtime.NumGoroutine() - g0
	if readers != 2*calls {
		t.Fatalf("%d reader goroutines for %d calls, want %d", readers, calls, 2*calls)
	}
	stack := float64(after.StackInuse-before.StackInuse) / float64(readers)
	heap := float64(after.HeapInuse-before.HeapInuse) / float64(calls)
	t.Logf("per reader goroutine: %.0f B stack; per audio call (2 sockets, 2 readers): %.0f B heap, %.0f B total",
		stack, heap, heap+2*stack)
	if per := (heap + 2*stack) / 2; per > 64<<10 {
		t.Fatalf("%.0f B per socket", per)
	}
	for _, s := range sessions {
		s.Close()
	}
}
