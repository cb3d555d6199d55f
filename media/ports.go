package media

import (
	"math/rand/v2"
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

	pairs int // pairs managed, immutable

	mu    sync.Mutex // guards the fields below
	free  []int      // free base ports, unordered; capacity for every pair
	quar  []quarEntry
	qhead int // quar[qhead:] are still in quarantine, oldest first
	inUse int // pairs handed out and not released
}

type quarEntry struct {
	base  int
	until time.Time
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

// release returns a pair obtained from get; it becomes free again after
// the quarantine.
func (p *portPool) release(base int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse--
	if p.quarantine <= 0 {
		p.pushFreeLocked(base)
		return
	}
	if p.qhead > 0 && p.qhead >= len(p.quar)/2 {
		n := copy(p.quar, p.quar[p.qhead:])
		p.quar = p.quar[:n]
		p.qhead = 0
	}
	p.quar = append(p.quar, quarEntry{base: base, until: p.now().Add(p.quarantine)})
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

// expireLocked moves pairs whose quarantine ended back to the free pairs.
func (p *portPool) expireLocked() {
	if p.qhead == len(p.quar) {
		return
	}
	now := p.now()
	for p.qhead < len(p.quar) && !now.Before(p.quar[p.qhead].until) {
		p.pushFreeLocked(p.quar[p.qhead].base)
		p.quar[p.qhead] = quarEntry{}
		p.qhead++
	}
	if p.qhead == len(p.quar) {
		p.quar = p.quar[:0]
		p.qhead = 0
	}
}

// counts returns the number of pairs in use, free, and in quarantine.
func (p *portPool) counts() (inUse, free, quarantined int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked()
	return p.inUse, len(p.free), len(p.quar) - p.qhead
}

// total returns the number of pairs managed by the pool.
func (p *portPool) total() int { return p.pairs }
