package main

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestProcsGovernorLaw: processors are added at once under load or a
// run queue that persists, and removed one at a time after a calm spell;
// a steady rate in the band between does not flap.
func TestProcsGovernorLaw(t *testing.T) {
	g := &procsGovernor{max: 4, cur: 1}
	steps := []struct {
		cores    float64
		runnable uint64
		want     int
		why      string
	}{
		{0.3, 0, 1, "a third of a core fits one processor"},
		{0.3, 40, 1, "one tick's run queue is a moment, not load"},
		{0.3, 40, 2, "a run queue two ticks in a row adds a processor"},
		{0.3, 0, 2, "one calm tick removes nothing"},
		{1.0, 0, 2, "a busy processor: 2 x 0.75 not exceeded"},
		{1.9, 0, 4, "most of two: as many as fit 1.9 cores at 0.6 each, at most max"},
		{2.0, 0, 4, "steady"},
	}
	for i, s := range steps {
		if got := g.next(s.cores, s.runnable); got != s.want {
			t.Fatalf("step %d (%.2f cores, %d runnable): %d processors, want %d: %s", i, s.cores, s.runnable, got, s.want, s.why)
		}
	}
	// 1.7 cores at 4 processors would fit 3 at 0.6 (1.8): one goes after
	// procsCalm ticks, not before; then none while 1.7 > 2 x 0.6.
	for i := 1; i < procsCalm; i++ {
		if got := g.next(1.7, 0); got != 4 {
			t.Fatalf("removed a processor after %d calm ticks, want %d", i, procsCalm)
		}
	}
	if got := g.next(1.7, 0); got != 3 {
		t.Fatalf("%d processors after %d calm ticks, want 3", got, procsCalm)
	}
	for i := 0; i < 3*procsCalm; i++ {
		if got := g.next(1.7, 0); got != 3 {
			t.Fatalf("1.7 cores on 3 processors: went to %d", got)
		}
	}
	// Idle: down to one, a step per calm spell.
	for i := 0; i < 2*procsCalm; i++ {
		g.next(0.01, 0)
	}
	if g.cur != 1 {
		t.Fatalf("idle: %d processors after two calm spells, want 1", g.cur)
	}
}

// TestGovernProcs: the real governor on this process: one processor while
// idle, more within a few ticks of a CPU-bound load, one again after it,
// and the full count back when stopped. GOMAXPROCS in the environment
// turns it off.
func TestGovernProcs(t *testing.T) {
	full := runtime.GOMAXPROCS(0)
	if full < 2 {
		t.Skip("one CPU: nothing to govern")
	}
	stop := governProcs("", zerolog.Nop())
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("idle: %d processors, want 1", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < full; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				spinFor(time.Millisecond)
			}
		}()
	}
	waitProcs := func(want int, within time.Duration, what string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for runtime.GOMAXPROCS(0) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d processors after %v, want %d", what, runtime.GOMAXPROCS(0), within, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t0 := time.Now()
	waitProcs(full, 10*procsTick, "CPU-bound load")
	t.Logf("load: %d processors after %v", full, time.Since(t0).Round(time.Millisecond))
	cancel()
	wg.Wait()
	t0 = time.Now()
	waitProcs(1, time.Duration(full+2)*procsCalm*procsTick, "idle again")
	t.Logf("idle: 1 processor after %v", time.Since(t0).Round(time.Millisecond))
	stop()
	stopped = true
	if n := runtime.GOMAXPROCS(0); n != full {
		t.Fatalf("stopped: %d processors, want the full %d back", n, full)
	}
	off := governProcs("2", zerolog.Nop())
	defer off()
	if n := runtime.GOMAXPROCS(0); n != full {
		t.Fatalf("GOMAXPROCS set: the governor changed the processors to %d", n)
	}
}

func spinFor(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}
