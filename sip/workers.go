package sip

import (
	"sync"
	"time"
)

// workers runs the B2BUA's short tasks (a call's event loop while it has
// events, a dial, a DNS lookup) on goroutines that outlive one task. A new
// goroutine starts with a 2 KB stack, and handling one SIP message grows
// it (TLS records, SDP, sipgo's writers) by copying, several times per
// message: at 2,000 calls/s that was about a tenth of the CPU. A task goes
// to an idle worker when one waits; otherwise a new worker starts, so a
// task never waits for another to finish (a call's loop may block on a
// connection's write queue). A worker idle for workerIdle exits.
//
// Every worker is counted in the owner's WaitGroup for its whole life;
// stop makes idle workers exit (the owner closes it before waiting).
type workers struct {
	tasks chan func() // unbuffered: a send succeeds only when a worker waits
	wg    *sync.WaitGroup
	stop  chan struct{}
	idle  time.Duration
}

// workerIdle is how long a worker waits for another task before it
// exits: long enough to carry a steady call rate with the same
// goroutines, short enough that a burst's workers do not stay.
const workerIdle = 5 * time.Second

func newWorkers(wg *sync.WaitGroup) *workers {
	return &workers{tasks: make(chan func()), wg: wg, stop: make(chan struct{}), idle: workerIdle}
}

// handOff gives f to an idle worker and reports whether one took it.
func (w *workers) handOff(f func()) bool {
	select {
	case w.tasks <- f:
		return true
	default:
		return false
	}
}

// loop runs f, then further tasks, until it has been idle for w.idle or
// stop is closed. The caller has counted it in w.wg.
func (w *workers) loop(f func()) {
	defer w.wg.Done()
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		f()
		f = nil // nothing of the last task stays reachable while idle
		t.Reset(w.idle)
		select {
		case f = <-w.tasks:
		case <-t.C:
			return
		case <-w.stop:
			return
		}
	}
}
