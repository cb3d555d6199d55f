package main

import (
	"math"
	"runtime"
	"runtime/metrics"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// The Go scheduler runs goroutines on GOMAXPROCS processors, by default
// one per CPU. An SBC's work is many short events (a message read, a
// call's event handled, a response written), each handed from one
// goroutine to another. While processors are idle, every hand-off wakes
// another OS thread, which finds nothing to steal and sleeps again: at
// 500 calls/s on 2 CPUs about a quarter of edge-sbc's CPU went to those
// wake-ups and sleeps (futex, findRunnable in a CPU profile), and the
// same load on one processor took 0.56-0.67 ms of CPU per call instead of
// 0.74-0.82 (make bench, section 1).
//
// procsGovernor therefore runs on as few processors as the load needs:
// one while the process uses well under a core, all of them (the
// GOMAXPROCS the runtime chose at start, which follows the CPU quota)
// once it needs more. It samples the process's CPU time and the run
// queue every procsTick. It adds processors at once when the last tick
// used more than procsUp of each processor or goroutines kept queueing
// for them,
// and removes one only after procsCalm ticks in a row that would fit in
// fewer at procsDown each: a burst gets its processors within a tick,
// and the count does not flap at a steady rate. Setting GOMAXPROCS in
// the environment turns it off (the runtime keeps that value).
//
// It owns GOMAXPROCS: nothing else in the process changes it.
type procsGovernor struct {
	max, cur int
	calm     int // ticks in a row that fit in fewer processors
	queued   int // ticks in a row with more than procsQueue runnable per processor
}

const (
	procsTick = 100 * time.Millisecond
	procsUp   = 0.75 // CPU per processor above which processors are added
	// procsDown is the CPU per processor the load must fit in before one
	// is removed. It is measured with the processors it would remove,
	// whose wake-ups cost 15-25 % more CPU than the same load on fewer.
	procsDown = 0.6
	procsCalm = 20 // ticks (2 s) below procsDown before one is removed
	// procsQueue is the runnable goroutines per processor that add
	// processors whatever the CPU of the last tick: work has waited for
	// a processor for a millisecond or more (an event takes tens of
	// microseconds), in procsQueued ticks in a row. It is below the setup
	// gate's limit, sized by the full count (sip/overload.go), so
	// processors are added before new calls would wait. The run queue of
	// one processor holds 10-50 goroutines for a moment now and then at
	// 500 calls/s (the messages of one read, timers firing together),
	// which is no load: a single tick's sample does not count.
	procsQueue  = 24
	procsQueued = 2
)

// next returns the processors for the next tick, given the CPU the
// process used over the last one (in cores) and the goroutines waiting
// to run.
func (g *procsGovernor) next(cores float64, runnable uint64) int {
	if runnable > uint64(procsQueue*g.cur) {
		g.queued++
	} else {
		g.queued = 0
	}
	switch {
	case cores > procsUp*float64(g.cur) || g.queued >= procsQueued:
		g.calm, g.queued = 0, 0
		want := int(math.Ceil(cores / procsDown))
		g.cur = min(g.max, max(g.cur+1, want))
	case g.cur > 1 && cores < procsDown*float64(g.cur-1):
		if g.calm++; g.calm >= procsCalm {
			g.calm = 0
			g.cur--
		}
	default:
		g.calm = 0
	}
	return g.cur
}

// governProcs starts the governor unless GOMAXPROCS is set in env or the
// process has a single processor anyway; stop ends it (and waits) and
// gives the runtime back its full processor count.
func governProcs(env string, log zerolog.Logger) (stop func()) {
	full := runtime.GOMAXPROCS(0)
	if env != "" || full < 2 {
		return func() {}
	}
	g := &procsGovernor{max: full, cur: 1}
	runtime.GOMAXPROCS(1)
	log.Debug().Int("max", full).Msg("scheduler processors follow the load (GOMAXPROCS unset)")
	sample := []metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	lastCPU, lastAt := processCPU(), time.Now()
	stopTicks := every(procsTick, func(now time.Time) {
		cpu := processCPU()
		cores := float64(cpu-lastCPU) / float64(now.Sub(lastAt))
		lastCPU, lastAt = cpu, now
		metrics.Read(sample)
		var runnable uint64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			runnable = sample[0].Value.Uint64()
		}
		was := g.cur
		if n := g.next(cores, runnable); n != was {
			runtime.GOMAXPROCS(n)
			log.Debug().Int("from", was).Int("to", n).Float64("cores", math.Round(cores*100)/100).
				Uint64("runnable", runnable).Msg("scheduler processors changed")
		}
	})
	return func() { stopTicks(); runtime.GOMAXPROCS(full) }
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
