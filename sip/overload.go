package sip

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// setupGate keeps the calls in progress ahead of new ones when the SBC
// falls behind (RFC 6357 section 4: in-dialog requests and responses
// before new INVITEs). With each new call (at most every gateTick) it
// reads how many goroutines wait for a processor (runtime/metrics); while
// that is more than the machine runs in a few milliseconds (behindPerProc
// per processor; the SBC is no longer behind only after calmTicks samples
// below half that), a new call, already answered 100 Trying, waits here
// instead of opening its relay sockets and placing leg B. The answers,
// ACKs and BYEs of the calls already placed are then handled first, so
// those end and free their sockets, and an offered rate beyond the
// machine's costs post-dial delay rather than failed calls (a queue of
// parsed INVITEs, not of calls holding media sockets). A new call also
// waits while its relay sockets would not fit in the process's
// descriptor limit (media.Engine.HasRoom): after a burst, calls end and
// free theirs within seconds. While calls wait, a releaser samples every
// gateTick and starts them in arrival order as the run queue shortens;
// one that waited longer than limits.setup_queue_timeout is refused with
// 503 and Retry-After. An idle SBC samples nothing.
//
// Lock rules: mu guards queue, head and releasing; smu the sampler's
// state (taken with TryLock: a caller finding it held uses the last
// sample). behind, waiting and last are atomics read without either. No
// other lock is taken while one is held, and calls are posted to after
// mu is released. The releaser runs on a B2BUA worker (spawn) and ends
// when the queue is empty or the B2BUA's lifetime ends.
type setupGate struct {
	behind  atomic.Bool  // the last samples saw more runnable goroutines than limit
	waiting atomic.Int64 // len(queue) - head
	last    atomic.Int64 // UnixNano of the last sample
	limit   uint64       // runnable goroutines beyond which new calls wait
	room    roomAnchor   // the media layer's descriptor check; nil: none

	smu    sync.Mutex
	sample []metrics.Sample
	calm   int // samples in a row below limit/2

	mu        sync.Mutex
	queue     []gated
	head      int
	releasing bool // a releaser runs
}

type gated struct {
	c  *call
	at time.Time
}

const (
	// gateTick is the least time between two samples of the run queue
	// (about 10 µs a read), and the releaser's period.
	gateTick = 2 * time.Millisecond
	// behindPerProc is the runnable goroutines per processor beyond which
	// the SBC is behind: an event takes tens of microseconds, so this is a
	// few milliseconds of waiting work, more than one burst of messages
	// read at once from a connection makes runnable.
	behindPerProc = 24
	// calmTicks is how many samples in a row must find the run queue
	// below half the limit before the SBC is no longer behind: one short
	// sample in a busy spell does not start the waiting calls.
	calmTicks = 5
	// startsPerTick caps the waiting calls started per tick and
	// processor while the SBC is not behind: each makes work runnable only
	// after it has run, so the next sample must see their effect.
	startsPerTick = 8
)

func newSetupGate(room roomAnchor) *setupGate {
	return &setupGate{
		limit:  uint64(behindPerProc * runtime.GOMAXPROCS(0)),
		room:   room,
		sample: []metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}},
	}
}

// fits reports whether a call of streams media streams finds descriptors.
func (g *setupGate) fits(streams int) bool { return g.room == nil || g.room.HasRoom(streams) }

// observe samples the run queue unless it was sampled less than gateTick
// ago, and reports whether the SBC is behind.
func (g *setupGate) observe() bool {
	now := time.Now().UnixNano()
	if now-g.last.Load() < int64(gateTick) || !g.smu.TryLock() {
		return g.behind.Load()
	}
	defer g.smu.Unlock()
	g.last.Store(now)
	metrics.Read(g.sample)
	var runnable uint64
	if g.sample[0].Value.Kind() == metrics.KindUint64 {
		runnable = g.sample[0].Value.Uint64()
	}
	behind := g.behind.Load()
	switch {
	case runnable > g.limit:
		behind, g.calm = true, 0
	case runnable < g.limit/2:
		if g.calm++; g.calm >= calmTicks {
			behind = false
		}
	default:
		g.calm = 0
	}
	g.behind.Store(behind)
	return behind
}

// start posts evStart to c now, or queues c when the SBC is behind, its
// sockets would not fit (c.streams, set before and never changed), or
// other new calls already wait (first come, first placed). A
// limits.setup_queue_timeout of 0 in the call's configuration starts it
// at once whatever the load.
func (g *setupGate) start(c *call) {
	if c.snap.cfg.Limits.SetupQueueTimeout <= 0 || (!g.observe() && g.waiting.Load() == 0 && g.fits(c.streams)) {
		c.post(event{kind: evStart})
		return
	}
	b := c.b
	g.mu.Lock()
	g.queue = append(g.queue, gated{c: c, at: time.Now()})
	g.waiting.Add(1)
	run := !g.releasing
	g.releasing = true
	g.mu.Unlock()
	b.metrics.SetupQueued.Inc()
	if run && !b.spawn(func() {
		g.releaser(b.lifetime(), func() time.Duration { return b.snap().cfg.Limits.SetupQueueTimeout })
	}) {
		g.mu.Lock()
		g.releasing = false // closing: HangupAll ends the waiting calls
		g.mu.Unlock()
	}
}

// releaser starts waiting calls every gateTick while the SBC is not
// behind, and refuses those that waited too long, until none waits or
// ctx ends. timeout reads limits.setup_queue_timeout (reloadable).
func (g *setupGate) releaser(ctx context.Context, timeout func() time.Duration) {
	t := time.NewTicker(gateTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			g.mu.Lock()
			g.releasing = false
			g.mu.Unlock()
			return
		case <-t.C:
		}
		n := 0
		if !g.observe() {
			n = startsPerTick * runtime.GOMAXPROCS(0)
		}
		g.release(n, timeout())
		g.mu.Lock()
		if g.head == len(g.queue) {
			g.releasing = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
	}
}

// release starts up to n waiting calls and refuses (503) those at the
// head that waited longer than timeout (0: none is refused).
func (g *setupGate) release(n int, timeout time.Duration) {
	now := time.Now()
	for {
		g.mu.Lock()
		if g.head == len(g.queue) {
			g.mu.Unlock()
			return
		}
		e := g.queue[g.head]
		late := timeout > 0 && now.Sub(e.at) > timeout
		if !late && (n <= 0 || !g.fits(e.c.streams)) {
			g.mu.Unlock()
			return
		}
		g.queue[g.head] = gated{}
		g.head++
		if g.head == len(g.queue) {
			g.queue, g.head = g.queue[:0], 0
		} else if g.head >= 1024 && 2*g.head >= len(g.queue) {
			k := copy(g.queue, g.queue[g.head:])
			clear(g.queue[k:])
			g.queue, g.head = g.queue[:k], 0
		}
		g.waiting.Add(-1)
		g.mu.Unlock()
		if late {
			e.c.b.metrics.Admission.WithLabelValues("setup_queue_timeout").Inc()
			e.c.post(event{kind: evOverloaded})
			continue
		}
		n--
		e.c.post(event{kind: evStart})
	}
}

// queued reports how many new calls wait.
func (g *setupGate) queued() int { return int(g.waiting.Load()) }
