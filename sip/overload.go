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
// before new INVITEs). Every gateTick it reads how many goroutines wait
// for a processor (runtime/metrics); while that is more than the machine
// runs in a few milliseconds (behindPerProc per processor; the SBC is
// behind again only after calmTicks samples below half that), a new call,
// already answered 100 Trying, waits here instead of opening its relay
// sockets and placing leg B. The answers, ACKs and BYEs of the calls
// already placed are then handled first, so those end and free their
// sockets, and an offered rate beyond the machine's costs post-dial delay
// rather than failed calls (a queue of parsed INVITEs, not of calls
// holding media sockets). A new call also waits while its relay sockets
// would not fit in the process's descriptor limit (media.Engine.HasRoom):
// after a burst, calls end and free theirs within seconds. Waiting calls
// start in arrival order as the run queue shortens; one that waited longer
// than limits.setup_queue_timeout is refused with 503 and Retry-After.
//
// Lock rules: mu guards queue and head; behind and waiting are atomics
// read without it. No other lock is taken while mu is held, and calls are
// posted to after it is released. The sampler goroutine (run) is owned by
// the B2BUA's lifetime; without it (a B2BUA never started) no call waits.
type setupGate struct {
	behind  atomic.Bool  // the last sample saw more runnable goroutines than limit
	waiting atomic.Int64 // len(queue) - head
	limit   uint64       // runnable goroutines beyond which new calls wait
	room    roomAnchor   // the media layer's descriptor check; nil: none

	mu    sync.Mutex
	queue []gated
	head  int
}

type gated struct {
	c       *call
	streams int
	at      time.Time
}

const (
	// gateTick is how often the run queue is sampled (about 10 µs a read).
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
	return &setupGate{limit: uint64(behindPerProc * runtime.GOMAXPROCS(0)), room: room}
}

// fits reports whether a call of streams media streams finds descriptors.
func (g *setupGate) fits(streams int) bool { return g.room == nil || g.room.HasRoom(streams) }

// start posts evStart to c (a call of streams media streams) now, or
// queues c when the SBC is behind, its sockets would not fit, or other
// new calls already wait (first come, first placed). timeout 0 starts at
// once whatever the load.
func (g *setupGate) start(c *call, streams int, timeout time.Duration) {
	if timeout <= 0 || (g.waiting.Load() == 0 && !g.behind.Load() && g.fits(streams)) {
		c.post(event{kind: evStart})
		return
	}
	g.mu.Lock()
	g.queue = append(g.queue, gated{c: c, streams: streams, at: time.Now()})
	g.waiting.Add(1)
	g.mu.Unlock()
	c.b.metrics.SetupQueued.Inc()
}

// run samples the run queue every gateTick until ctx ends, starting
// waiting calls while the SBC is not behind and refusing those that
// waited too long. timeout reads limits.setup_queue_timeout (reloadable).
func (g *setupGate) run(ctx context.Context, timeout func() time.Duration) {
	s := []metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	t := time.NewTicker(gateTick)
	defer t.Stop()
	calm := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(s)
		var runnable uint64
		if s[0].Value.Kind() == metrics.KindUint64 {
			runnable = s[0].Value.Uint64()
		}
		behind := g.behind.Load()
		switch {
		case runnable > g.limit:
			behind, calm = true, 0
		case runnable < g.limit/2:
			if calm++; calm >= calmTicks {
				behind = false
			}
		default:
			calm = 0
		}
		g.behind.Store(behind)
		if g.waiting.Load() == 0 {
			continue
		}
		n := 0
		if !behind {
			n = startsPerTick * runtime.GOMAXPROCS(0)
		}
		g.release(n, timeout())
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
		if !late && (n <= 0 || !g.fits(e.streams)) {
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
