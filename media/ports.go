package media

import (
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
)

// portPool hands out relay port pairs. A pair is an even port P (RTP) and
// P+1 (RTCP). The pool always reserves the whole pair, even for rtcp-mux
// streams, so that an answer refusing rtcp-mux can still get its RTCP port
// and so that the advertised a=rtcp port is always RTP+1. The RTCP socket
// itself is only opened when RTCP is not muxed (see stream.ensureRTCP): the
// reservation costs nothing, a socket costs a file descriptor, buffers and a
// reader goroutine.
//
// get hands out a free pair chosen at random (math/rand/v2, seeded by the
// runtime), so that the relay port of a call cannot be guessed from the
// port of another call: relay ports handed out in order let a stranger
// aim at the next call's ports. Free pairs are kept in an unordered slice,
// and a random one is swapped out in O(1). Released pairs first spend
// Config.Quarantine in a FIFO quarantine queue, so that late packets of a
// finished call never reach the next call using the same port.
//
// portPool is safe for concurrent use. It does no I/O: binding sockets is the
// caller's job (see Engine.openPair), which reports a pair it could not bind
// with release; that pair then goes through quarantine and is tried again
// later, so a port held by another process is skipped, not lost.
type portPool struct {
	quarantine time.Duration
	now        func() time.Time

	pairs    int // pairs managed, immutable
	maxCache int // open sockets the pool may keep (Config.SocketCache), immutable
	fdRoom   int // kept sockets plus those of pairs in use stay within this, immutable

	mu    sync.Mutex // guards the fields below
	free  []int      // free base ports without open sockets, unordered; capacity for every pair
	warm  []int      // free base ports whose sockets stayed open, unordered; same capacity
	quar  []quarEntry
	qhead int // quar[qhead:] are still in quarantine, oldest first
	inUse int // pairs handed out and not released
	// open holds the sockets of warm pairs and of quarantined pairs
	// released with their sockets; cached counts those sockets.
	open   map[int]pairSocks
	cached int
}

// pairSocks are the open sockets of a pair kept by the pool between two
// streams: its RTP socket, its RTCP socket if one was opened, and the
// traffic class both are set to.
type pairSocks struct {
	rtp, rtcp *net.UDPConn
	tos       int
	since     time.Time // when the pool took them (releaseOpen)
}

// warmIdle is how long a warm pair's sockets stay open unused before the
// engine's watchdog closes them (expireWarm): after a burst, an idle SBC
// does not keep thousands of sockets.
const warmIdle = 30 * time.Second

func (s pairSocks) count() int {
	n := 0
	if s.rtp != nil {
		n++
	}
	if s.rtcp != nil {
		n++
	}
	return n
}

type quarEntry struct {
	base  int
	until time.Time
	warm  bool // its sockets are in open
}

func newPortPool(minPort, maxPort int, quarantine time.Duration, now func() time.Time) *portPool {
	if minPort%2 != 0 {
		minPort++
	}
	p := &portPool{quarantine: quarantine, now: now}
	p.free = make([]int, 0, max(0, (maxPort-minPort+1)/2))
	for b := minPort; b+1 <= maxPort; b += 2 {
		p.free = append(p.free, b)
	}
	p.pairs = len(p.free)
	return p
}

// withSocketCache lets the pool keep up to n open sockets of released
// pairs (see releaseOpen), as long as they and the sockets of the pairs in
// use (two per pair at most) stay within fdRoom; 0 keeps none.
func (p *portPool) withSocketCache(n, fdRoom int) *portPool {
	p.maxCache = max(0, n)
	p.fdRoom = fdRoom
	if p.maxCache > 0 {
		p.warm = make([]int, 0, p.pairs)
		p.open = make(map[int]pairSocks)
	}
	return p
}

// get takes a free pair chosen at random and returns its even base port.
func (p *portPool) get() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	n := len(p.free)
	if n == 0 {
		return 0, false
	}
	i := rand.IntN(n)
	b := p.free[i]
	p.free[i] = p.free[n-1]
	p.free = p.free[:n-1]
	p.inUse++
	return b, true
}

// getWarm takes a free pair whose sockets are still open, chosen at random
// among those, with its sockets; ok is false when there is none. Reusing
// open sockets spares the system calls that open, bind, mark and register
// new ones (the largest cost of a call's setup). The port is then one of
// the pairs released at least a quarantine ago rather than any free pair:
// learning and the strict-source rule, not the port, keep strangers out.
func (p *portPool) getWarm() (base int, socks pairSocks, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	n := len(p.warm)
	if n == 0 {
		return 0, pairSocks{}, false
	}
	i := rand.IntN(n)
	b := p.warm[i]
	p.warm[i] = p.warm[n-1]
	p.warm = p.warm[:n-1]
	socks = p.open[b]
	delete(p.open, b)
	p.cached -= socks.count()
	p.inUse++
	return b, socks, true
}

// take takes the exact pair base, for a session restored from a snapshot
// (Engine.Restore): a free pair, a warm one (with its open sockets, which
// the caller reuses) or one in quarantine (a call this node ended on that
// pair: the call restored is the pair's owner now). ok is false when the
// pair is in use or not managed by the pool (outside the port range, odd).
// It scans the pool's lists: a takeover, not a call setup, uses it.
func (p *portPool) take(base int) (socks pairSocks, warm, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	if i := slices.Index(p.free, base); i >= 0 {
		p.free[i] = p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		p.inUse++
		return pairSocks{}, false, true
	}
	if i := slices.Index(p.warm, base); i >= 0 {
		p.warm[i] = p.warm[len(p.warm)-1]
		p.warm = p.warm[:len(p.warm)-1]
		socks = p.open[base]
		delete(p.open, base)
		p.cached -= socks.count()
		p.inUse++
		return socks, true, true
	}
	for i := p.qhead; i < len(p.quar); i++ {
		q := p.quar[i]
		if q.base != base {
			continue
		}
		p.quar = slices.Delete(p.quar, i, i+1)
		if q.warm {
			socks = p.open[base]
			delete(p.open, base)
			p.cached -= socks.count()
		}
		p.inUse++
		return socks, q.warm, true
	}
	return pairSocks{}, false, false
}

// release returns a pair obtained from get; it becomes free again after
// the quarantine.
func (p *portPool) release(base int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.releaseLocked(base, false)
}

// releaseOpen returns a pair with its open sockets, kept (through the
// quarantine, unread) for a later getWarm. It returns false, keeping
// nothing and releasing nothing, when the pool has no room for them: the
// caller then closes them and calls release.
func (p *portPool) releaseOpen(base int, socks pairSocks) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := socks.count()
	// inUse still counts this pair: its sockets are counted twice, which
	// errs on the side of descriptors left for calls.
	if n == 0 || p.cached+n > p.maxCache || p.cached+n+2*p.inUse > p.fdRoom {
		return false
	}
	socks.since = p.now()
	p.open[base] = socks
	p.cached += n
	p.releaseLocked(base, true)
	return true
}

func (p *portPool) releaseLocked(base int, warm bool) {
	p.inUse--
	if p.quarantine <= 0 {
		p.pushLocked(base, warm)
		return
	}
	if p.qhead > 0 && p.qhead >= len(p.quar)/2 {
		n := copy(p.quar, p.quar[p.qhead:])
		p.quar = p.quar[:n]
		p.qhead = 0
	}
	p.quar = append(p.quar, quarEntry{base: base, until: p.now().Add(p.quarantine), warm: warm})
}

// expireWarm takes the sockets of the warm pairs the pool has kept since
// before cutoff (the caller closes them); those pairs become plain free
// pairs.
func (p *portPool) expireWarm(cutoff time.Time) []pairSocks {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []pairSocks
	for i := 0; i < len(p.warm); {
		b := p.warm[i]
		s := p.open[b]
		if !s.since.Before(cutoff) {
			i++
			continue
		}
		out = append(out, s)
		delete(p.open, b)
		p.cached -= s.count()
		p.warm[i] = p.warm[len(p.warm)-1]
		p.warm = p.warm[:len(p.warm)-1]
		p.pushFreeLocked(b)
	}
	return out
}

// shed takes up to n of the open sockets the pool keeps, warm pairs
// first, then pairs still in quarantine (they stay there, without sockets),
// for the caller to close: the process ran out of descriptors, and calls
// need them more than the cache does.
func (p *portPool) shed(n int) []pairSocks {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []pairSocks
	take := func(b int) {
		s := p.open[b]
		delete(p.open, b)
		p.cached -= s.count()
		n -= s.count()
		out = append(out, s)
	}
	for n > 0 && len(p.warm) > 0 {
		b := p.warm[len(p.warm)-1]
		p.warm = p.warm[:len(p.warm)-1]
		take(b)
		p.pushFreeLocked(b)
	}
	for i := p.qhead; n > 0 && i < len(p.quar); i++ {
		if p.quar[i].warm {
			p.quar[i].warm = false
			take(p.quar[i].base)
		}
	}
	return out
}

// drainOpen takes every open socket the pool keeps (the engine closes
// them when it closes); their pairs become plain free pairs.
func (p *portPool) drainOpen() []pairSocks {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]pairSocks, 0, len(p.open))
	for _, s := range p.open {
		out = append(out, s)
	}
	clear(p.open)
	p.cached = 0
	p.free = append(p.free, p.warm...)
	p.warm = p.warm[:0]
	for i := p.qhead; i < len(p.quar); i++ {
		p.quar[i].warm = false
	}
	return out
}

// unget returns a pair obtained from get straight to the free pairs (it was
// never used, so no quarantine).
func (p *portPool) unget(base int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse--
	p.pushFreeLocked(base)
}

// pushFreeLocked adds base to the free pairs; the slice has capacity for
// every pair, so this never allocates.
func (p *portPool) pushFreeLocked(base int) {
	p.free = append(p.free, base)
}

// pushLocked adds base to the warm pairs if its sockets are kept, else to
// the free pairs.
func (p *portPool) pushLocked(base int, warm bool) {
	if warm {
		p.warm = append(p.warm, base)
		return
	}
	p.pushFreeLocked(base)
}

// expireLocked moves pairs whose quarantine ended back to the free pairs.
func (p *portPool) expireLocked() {
	if p.qhead == len(p.quar) {
		return
	}
	now := p.now()
	for p.qhead < len(p.quar) && !now.Before(p.quar[p.qhead].until) {
		p.pushLocked(p.quar[p.qhead].base, p.quar[p.qhead].warm)
		p.quar[p.qhead] = quarEntry{}
		p.qhead++
	}
	if p.qhead == len(p.quar) {
		p.quar = p.quar[:0]
		p.qhead = 0
	}
}

// counts returns the number of pairs in use, free (warm or not), and in
// quarantine.
func (p *portPool) counts() (inUse, free, quarantined int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	return p.inUse, len(p.free) + len(p.warm), len(p.quar) - p.qhead
}

// cachedSockets returns the number of open sockets the pool keeps.
func (p *portPool) cachedSockets() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cached
}

// total returns the number of pairs managed by the pool.
func (p *portPool) total() int { return p.pairs }
