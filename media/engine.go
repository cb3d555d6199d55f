package media

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/edge-sbc/edge-sbc/media/fastpath"
)

// Engine owns the relay port pool, the sessions and the dead-media
// watchdog. All methods are safe for concurrent use.
type Engine struct {
	cfg   Config // immutable after NewEngine
	log   zerolog.Logger
	pool  *portPool
	fdMax int       // the descriptor limit at NewEngine (HasRoom)
	slots *slotPool // batch buffers lent to readers
	bios  sync.Pool // *batchIO of ended readers, for the next ones
	epoch time.Time // origin of arrival times for jitter
	tick  time.Duration

	mu       sync.Mutex // guards sessions, started, closed
	sessions map[*Session]struct{}
	started  bool
	closed   bool

	lastTick atomic.Int64 // UnixNano of the watchdog's last scan (Alive)

	fp        atomic.Pointer[fastpath.Program] // kernel fast path, nil when off (Start loads it)
	fpStreams atomic.Int64                     // streams in the kernel

	stop     chan struct{} // closed by Close to stop the watchdog
	stopOnce sync.Once
	wg       sync.WaitGroup // the watchdog goroutine
}

// NewEngine validates cfg, applies its defaults and returns an Engine. It
// does no I/O: sockets are opened by the sessions.
func NewEngine(cfg Config, log zerolog.Logger) (*Engine, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tick := time.Second
	if q := c.Timeout / 4; q > 0 && q < tick {
		tick = max(q, 10*time.Millisecond)
	}
	fds := fdLimit()
	return &Engine{
		cfg:      c,
		log:      log,
		fdMax:    fds,
		pool:     newPortPool(c.PortMin, c.PortMax, c.Quarantine, time.Now).withSocketCache(c.SocketCache, fds-fdReserve(fds)),
		slots:    newSlotPool(),
		epoch:    time.Now(),
		tick:     tick,
		sessions: make(map[*Session]struct{}),
		stop:     make(chan struct{}),
	}, nil
}

// Config returns the effective configuration (defaults applied).
func (e *Engine) Config() Config { return e.cfg }

// Start starts the dead-media watchdog, an engine-wide ticker that scans
// the sessions every second (every Timeout/4 when Timeout is shorter). It
// runs until ctx is done or Close is called. Without Start, OnTimeout is
// never called; relaying works regardless. With Config.Fastpath auto,
// Start loads the kernel fast path (a failure is logged, not returned:
// userspace then relays everything) and the watchdog moves streams into
// the kernel and out of it.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if e.started {
		return fmt.Errorf("media: engine already started")
	}
	e.started = true
	e.startFastpath()
	e.wg.Add(1)
	go e.watchdog(ctx)
	return nil
}

// Alive reports whether the engine works: started, not closed, and its
// watchdog scanned within the last three ticks (the systemd watchdog is
// pinged only while it does).
func (e *Engine) Alive() error {
	e.mu.Lock()
	started, closed := e.started, e.closed
	e.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case !started:
		return fmt.Errorf("media: engine not started")
	}
	last := e.lastTick.Load()
	if last == 0 {
		last = e.epoch.UnixNano()
	}
	if age := time.Since(time.Unix(0, last)); age > 3*e.tick+time.Second {
		return fmt.Errorf("media: watchdog stalled for %s", age.Round(time.Millisecond))
	}
	return nil
}

// Close stops the watchdog, closes every remaining session and waits for
// all goroutines of the engine. Further sessions fail with ErrClosed.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	sessions := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		sessions = append(sessions, s)
	}
	e.mu.Unlock()
	e.stopOnce.Do(func() { close(e.stop) })
	e.wg.Wait()
	for _, s := range sessions {
		s.Close()
	}
	for _, ps := range e.pool.drainOpen() {
		closePair(ps)
	}
	e.stopFastpath()
	return nil
}

// PortsInUse returns the number of relay ports allocated to streams (a
// pair counts as two ports, whether or not its RTCP socket is open).
func (e *Engine) PortsInUse() int {
	inUse, _, _ := e.pool.counts()
	return 2 * inUse
}

// HasRoom reports whether streams more streams (two pairs, at most four
// sockets each) fit within the process's descriptor limit next to the
// pairs in use, with a reserve for the rest of the process (TLS
// connections, files): the SIP layer holds a new call back while they
// would not (sip/overload.go), rather than failing it for want of a
// socket. Sockets the pool keeps open count as free: they are closed
// first when a stream needs a descriptor.
func (e *Engine) HasRoom(streams int) bool {
	inUse, _, _ := e.pool.counts()
	return 2*inUse+4*max(streams, 1) <= e.fdMax-fdReserve(e.fdMax)
}

// fdReserve is the part of a descriptor limit that relay sockets, in use
// and kept, leave to the rest of the process (TLS connections, files): an
// eighth, at least 512.
func fdReserve(limit int) int { return min(limit, max(512, limit/8)) }

// PortsFree returns the number of relay ports available for allocation
// now; ports in quarantine are neither free nor in use.
func (e *Engine) PortsFree() int {
	_, free, _ := e.pool.counts()
	return 2 * free
}

// NewSession creates a session. It does no I/O: ports are allocated by
// Offer. If the engine is closed, the session's methods return ErrClosed.
func (e *Engine) NewSession(sc SessionConfig) *Session {
	s := newSession(e, sc)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		s.closed = true
		return s
	}
	e.sessions[s] = struct{}{}
	return s
}

func (e *Engine) removeSession(s *Session) {
	e.mu.Lock()
	delete(e.sessions, s)
	e.mu.Unlock()
}

// NumSessions returns the number of open sessions.
func (e *Engine) NumSessions() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sessions)
}

// listen binds one relay socket on port of the bind address.
func (e *Engine) listen(port int) (*net.UDPConn, error) {
	return listenUDP(e.cfg.BindAddr, port)
}

// listenUDP binds a UDP socket on addr:port. An IPv4 address binds an IPv4
// socket; "::" binds one dual-stack socket that carries IPv4 (as v4-mapped
// addresses) as well as IPv6: Go's "udp6" network sets IPV6_V6ONLY, while
// "udp" with an unspecified IPv6 address leaves it off. Any other IPv6
// address binds an IPv6 socket.
func listenUDP(addr netip.Addr, port int) (*net.UDPConn, error) {
	network := "udp4"
	switch {
	case addr.Is6() && addr.IsUnspecified():
		network = "udp"
	case addr.Is6():
		network = "udp6"
	}
	return net.ListenUDP(network, &net.UDPAddr{IP: addr.AsSlice(), Port: port})
}

// openPair takes a pair from the pool with its sockets: a warm pair whose
// sockets stayed open (drained of what arrived meanwhile), else a free
// pair whose RTP socket it binds, and its RTCP socket if withRTCP. A warm
// pair may come with an RTCP socket when withRTCP is false: the caller
// keeps it for later. A pair that cannot be bound (taken by another
// process) is set aside and the next pair is tried; the pairs set aside go
// back through quarantine when openPair returns, so a pool without
// quarantine does not hand the same unusable pair out twice.
//
// A bind address that is not an address of this host fails at once with
// ErrAddressNotLocal (also wrapping ErrPortsExhausted, which the SIP layer
// answers with 503), and the pair goes back to the pool untouched: every
// other pair would fail the same way, and none of them is to blame.
func (e *Engine) openPair(withRTCP bool) (base int, ps pairSocks, err error) {
	if b, warm, ok := e.pool.getWarm(); ok {
		if ps, ok := e.reuse(b, warm, withRTCP); ok {
			return b, ps, nil
		}
	}
	var lastErr error
	var taken []int
	defer func() {
		for _, b := range taken {
			e.pool.release(b)
		}
	}()
	for range e.pool.total() {
		b, ok := e.pool.get()
		if !ok {
			break
		}
		rtp, rtcp, err := e.bindPair(b, withRTCP)
		if outOfDescriptors(err) {
			if shed := e.pool.shed(shedBatch); len(shed) > 0 {
				for _, ps := range shed {
					closePair(ps)
				}
				rtp, rtcp, err = e.bindPair(b, withRTCP)
			}
		}
		switch {
		case err == nil:
			return b, pairSocks{rtp: rtp, rtcp: rtcp, tos: -1}, nil
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			e.pool.unget(b)
			return 0, pairSocks{}, fmt.Errorf("%w (%w): %w", ErrAddressNotLocal, ErrPortsExhausted, err)
		case !portTaken(err):
			// Out of descriptors or buffers: no other pair would bind
			// either, and this one is not to blame.
			e.pool.unget(b)
			return 0, pairSocks{}, fmt.Errorf("%w: %w", ErrPortsExhausted, err)
		}
		taken = append(taken, b)
		lastErr = err
	}
	if lastErr != nil {
		return 0, pairSocks{}, fmt.Errorf("%w: last bind error: %w", ErrPortsExhausted, lastErr)
	}
	return 0, pairSocks{}, ErrPortsExhausted
}

// reuse readies the open sockets of warm pair b for a new stream: their
// read deadline (which stopped the previous stream's readers) is cleared
// and whatever arrived since is discarded, so that nothing of the previous
// call reaches this one; a missing RTCP socket is bound if withRTCP. When
// that fails the sockets are closed and the pair goes back to the pool.
func (e *Engine) reuse(b int, ps pairSocks, withRTCP bool) (pairSocks, bool) {
	ok := ps.rtp != nil
	for _, c := range [2]*net.UDPConn{ps.rtp, ps.rtcp} {
		if c != nil && ok {
			ok = c.SetReadDeadline(time.Time{}) == nil && discardQueued(c) == nil
		}
	}
	if ok && withRTCP && ps.rtcp == nil {
		c, err := e.listen(b + 1)
		if err == nil {
			ps.rtcp = c
			ps.tos = -1 // the new socket is not marked yet
		} else {
			ok = false
		}
	}
	if ok {
		return ps, true
	}
	closePair(ps)
	e.pool.release(b)
	return pairSocks{}, false
}

// recycle returns pair b after its stream: with its sockets open when the
// pool has room for them (Config.SocketCache), else closed.
func (e *Engine) recycle(b int, ps pairSocks) {
	if e.pool.releaseOpen(b, ps) {
		return
	}
	closePair(ps)
	e.pool.release(b)
}

func closePair(ps pairSocks) {
	for _, c := range [2]*net.UDPConn{ps.rtp, ps.rtcp} {
		if c != nil {
			_ = c.Close()
		}
	}
}

// discardQueued reads and drops every datagram waiting on c, without
// waiting for more.
func discardQueued(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var buf [1]byte // datagrams are truncated: only their removal matters
	return rc.Read(func(fd uintptr) bool {
		for {
			// A raw call, as in batchIO: the socket is non-blocking.
			_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1, unix.MSG_DONTWAIT, 0, 0)
			if e != 0 && e != unix.EINTR {
				return true
			}
		}
	})
}

// bindPair binds the RTP socket of pair b, and its RTCP socket if withRTCP;
// on failure nothing stays open.
func (e *Engine) bindPair(b int, withRTCP bool) (rtp, rtcp *net.UDPConn, err error) {
	if rtp, err = e.listen(b); err != nil {
		return nil, nil, err
	}
	if withRTCP {
		if rtcp, err = e.listen(b + 1); err != nil {
			_ = rtp.Close()
			return nil, nil, err
		}
	}
	return rtp, rtcp, nil
}

// newBatchIO gives a reader its batched I/O between own and peer: one an
// ended reader left (its message headers are a few KB, allocated once)
// or a new one.
func (e *Engine) newBatchIO(own, peer *net.UDPConn, slots int) (*batchIO, error) {
	if b, ok := e.bios.Get().(*batchIO); ok {
		if err := b.rebind(own, peer, slots); err == nil {
			return b, nil
		}
	}
	return newBatchIO(own, peer, slots, e.slots)
}

// freeBatchIO keeps the batchIO of an ending reader for newBatchIO.
func (e *Engine) freeBatchIO(b *batchIO) {
	b.unbind()
	e.bios.Put(b)
}

// shedBatch is how many kept sockets openPair closes when the process is
// out of descriptors, before it tries again.
const shedBatch = 64

// outOfDescriptors reports whether a bind failed for lack of file
// descriptors, of the process or of the system.
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// portTaken reports whether a bind failed because another socket holds the
// port (try the next pair) rather than for lack of resources (stop).
// EADDRNOTAVAIL is neither: the address is not on this host (see openPair).
func portTaken(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EACCES)
}

// CheckBindAddress reports whether addr, the relay bind address
// (Config.BindAddr), is an address of this host, by binding and closing a
// UDP socket on an ephemeral port of it. It returns nil for an address of
// this host and for the unspecified addresses, an error wrapping
// ErrAddressNotLocal when the host does not have addr (for instance a
// keepalived address that is on another node for now: relay ports cannot
// be allocated until it arrives), and any other bind error wrapped as is.
// It is meant for start-up logs and readiness checks; allocation does not
// need it.
func CheckBindAddress(addr netip.Addr) error {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return fmt.Errorf("media: invalid bind address")
	}
	c, err := listenUDP(addr, 0)
	if err != nil {
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return fmt.Errorf("%w: %v: %w", ErrAddressNotLocal, addr, err)
		}
		return fmt.Errorf("media: bind %v: %w", addr, err)
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("media: bind %v: %w", addr, err)
	}
	return nil
}

// watchdog scans the sessions for dead media. It is owned by the Engine
// (started by Start, stopped by Close or ctx).
func (e *Engine) watchdog(ctx context.Context) {
	defer e.wg.Done()
	t := time.NewTicker(e.tick)
	defer t.Stop()
	var list []*Session
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.stop:
			return
		case now := <-t.C:
			e.lastTick.Store(now.UnixNano())
			for _, ps := range e.pool.expireWarm(now.Add(-warmIdle)) {
				closePair(ps)
			}
			e.mu.Lock()
			for s := range e.sessions {
				list = append(list, s)
			}
			e.mu.Unlock()
			e.syncFastpath(now, list)
			if e.cfg.Timeout <= 0 {
				// No dead-media timeout: the watchdog only proves it runs.
				clear(list)
				list = list[:0]
				continue
			}
			for _, s := range list {
				if s.deadMedia(now, e.cfg.Timeout) {
					s.log.Warn().Dur("timeout", e.cfg.Timeout).Msg("media: no media received, timing out")
					if s.cfg.OnTimeout != nil {
						s.cfg.OnTimeout()
					}
				}
			}
			clear(list)
			list = list[:0]
		}
	}
}
