package media

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-sbc/edge-sbc/media/fastpath"
)

// FastpathMode selects whether latched pass-through streams are moved into
// the kernel (see doc.go, Kernel fast path).
type FastpathMode uint8

const (
	// FastpathOff (the zero value) relays everything in userspace.
	FastpathOff FastpathMode = iota
	// FastpathAuto loads the kernel fast path at Start when the kernel
	// and the privileges allow it, and else relays in userspace.
	FastpathAuto
)

// String returns "off" or "auto".
func (m FastpathMode) String() string {
	switch m {
	case FastpathOff:
		return "off"
	case FastpathAuto:
		return "auto"
	}
	return fmt.Sprintf("FastpathMode(%d)", uint8(m))
}

// ParseFastpathMode parses "auto" or "off" (the empty string is off).
// Errors wrap ErrBadFastpathMode.
func ParseFastpathMode(s string) (FastpathMode, error) {
	switch s {
	case "", "off":
		return FastpathOff, nil
	case "auto":
		return FastpathAuto, nil
	}
	return 0, fmt.Errorf("%w: %q (auto or off)", ErrBadFastpathMode, s)
}

// lockInfo is what a reader publishes about the source its socket learned
// and locked: the kernel fast path may take over a direction only from it.
// Immutable; a new one is allocated only when something changes.
type lockInfo struct {
	src     netip.AddrPort
	gen     uint64 // the stream's sigGen it was learned under
	ssrc    uint32 // SSRC and payload type of its last RTP packet
	pt      uint8
	hasSSRC bool
}

// kernelEntry is one installed flow: packets from side on the RTP (or
// RTCP) port.
type kernelEntry struct {
	flow fastpath.Flow
	key  fastpath.Key
	side Side
	rtcp bool
}

// kernelState is a stream's part of the fast path. mu guards entries, base
// and notBefore; in, ran and act are read without it.
type kernelState struct {
	mu        sync.Mutex
	entries   []kernelEntry
	base      [2][2]fastpath.Counters // by side, then RTP/RTCP port: periods already ended
	notBefore time.Time               // after a rebind candidate: no re-entry before

	in  atomic.Bool   // entries are installed
	ran atomic.Bool   // the stream ran in the kernel at some point
	act atomic.Uint64 // packets counted in the kernel (watchdog's last read)
}

// Why a stream leaves the kernel (logged at debug level).
const (
	leaveOffer   = "offer"
	leaveRebind  = "rebind candidate"
	leaveLatch   = "new destination"
	leaveChanged = "no longer eligible"
	leaveClose   = "closed"
)

// fastpath returns the loaded program, nil when the fast path is off.
func (e *Engine) fastpath() *fastpath.Program { return e.fp.Load() }

// startFastpath loads the fast path (Start, FastpathAuto). A failure is
// logged once and leaves userspace relaying everything.
func (e *Engine) startFastpath() {
	if e.cfg.Fastpath != FastpathAuto {
		return
	}
	if e.cfg.Learning == LearningOff && !e.cfg.StrictSource {
		e.log.Info().Msg("media: kernel fast path off: learning off follows every new source, which only userspace sees")
		return
	}
	p, err := fastpath.Load(e.cfg.BindAddr)
	if err != nil {
		e.log.Warn().Err(err).Msg("media: kernel fast path unavailable, userspace relays everything")
		return
	}
	e.fp.Store(p)
	e.log.Info().Strs("interfaces", p.Interfaces()).Msg("media: kernel fast path loaded")
}

// stopFastpath detaches and frees the program (Close, after the sessions).
func (e *Engine) stopFastpath() {
	if p := e.fp.Swap(nil); p != nil {
		if err := p.Close(); err != nil {
			e.log.Warn().Err(err).Msg("media: kernel fast path")
		}
	}
}

// FastpathStreams returns the number of streams whose packets the kernel
// fast path forwards now.
func (e *Engine) FastpathStreams() int { return int(e.fpStreams.Load()) }

// FastpathPackets returns the packets the kernel fast path forwarded since
// Start (0 when it is not loaded).
func (e *Engine) FastpathPackets() uint64 {
	if p := e.fastpath(); p != nil {
		n, _ := p.Totals()
		return n
	}
	return 0
}

// FastpathInterfaces returns the interfaces the fast path is attached to
// (nil when it is not loaded).
func (e *Engine) FastpathInterfaces() []string {
	if p := e.fastpath(); p != nil {
		return p.Interfaces()
	}
	return nil
}

// syncFastpath moves eligible streams into the kernel and out of it, and
// reads the kernel's counters for the dead-media timer. Called by the
// watchdog goroutine at every tick.
func (e *Engine) syncFastpath(now time.Time, sessions []*Session) {
	p := e.fastpath()
	if p == nil {
		return
	}
	if err := p.Refresh(); err != nil {
		e.log.Debug().Err(err).Msg("media: kernel fast path: addresses")
	}
	for _, s := range sessions {
		s.syncKernel(p, now)
	}
}

// syncKernel is syncFastpath for one session. It skips a session whose
// signalling is busy (next tick).
func (s *Session) syncKernel(p *fastpath.Program, now time.Time) {
	if !s.opMu.TryLock() {
		return
	}
	defer s.opMu.Unlock()
	if s.closed {
		return
	}
	for _, st := range s.streams {
		if st != nil {
			st.syncKernel(p, s.pending == nil, now)
		}
	}
}

// leaveKernel gives every stream of the session back to userspace. Caller
// holds opMu.
func (s *Session) leaveKernel(why string) {
	for _, st := range s.openStreams() {
		st.leaveKernel(why)
	}
}

// syncKernel installs the flows the stream should have in the kernel, or
// removes them, and reads the counters of those installed. idle: no offer
// is pending. Caller holds the session's opMu.
func (st *stream) syncKernel(p *fastpath.Program, idle bool, now time.Time) {
	k := &st.kern
	k.mu.Lock()
	defer k.mu.Unlock()
	var want []fastpath.Flow
	if idle && now.After(k.notBefore) {
		want = st.kernelFlows()
	}
	if !sameFlows(k.entries, want) {
		if len(k.entries) > 0 {
			st.leaveLocked(p, leaveChanged)
		}
		if len(want) > 0 {
			st.enterLocked(p, want)
		}
	}
	var act uint64
	for _, e := range k.entries {
		if c, err := p.Read(e.key); err == nil {
			act += c.Packets + c.RTCPPackets
		}
	}
	for i := range k.base {
		for j := range k.base[i] {
			act += k.base[i][j].Packets + k.base[i][j].RTCPPackets
		}
	}
	k.act.Store(act)
}

func sameFlows(es []kernelEntry, fs []fastpath.Flow) bool {
	if len(es) != len(fs) {
		return false
	}
	for i := range es {
		if es[i].flow != fs[i] {
			return false
		}
	}
	return true
}

// kernelFlows returns the flows the stream should have in the kernel now:
// none unless it passes SRTP through, is answered, not on hold, and both
// sides' sources are learned and locked under the current SDPs and are
// where the relay sends to. The RTP port's flows come first, then the RTCP
// port's when RTCP is not muxed and both RTCP sources are locked too.
// Caller holds the session's opMu.
func (st *stream) kernelFlows() []fastpath.Flow {
	if st.sec != nil || !st.answered.Load() || st.held.Load() || st.closing.Load() {
		return nil
	}
	gen := st.sigGen.Load()
	var out []fastpath.Flow
	for _, rtcp := range [2]bool{false, true} {
		var li [2]*lockInfo
		var dst [2]*endpoint
		ok := true
		for side := range st.legs {
			l := &st.legs[side]
			s, rem := l.rtp, l.remRTP.Load()
			if rtcp {
				s, rem = l.rtcp.Load(), l.remRTCP.Load()
			}
			if s == nil {
				ok = false
				break
			}
			li[side], dst[side] = s.lock.Load(), rem
			i := li[side]
			if i == nil || i.gen != gen || rem == nil || rem.ap != i.src || !i.src.Addr().Unmap().Is4() ||
				(st.isRTP && !rtcp && !i.hasSSRC) {
				ok = false
				break
			}
		}
		if !ok {
			break // no RTCP port in the kernel without the RTP port
		}
		for side := range st.legs {
			from, to := &st.legs[side], &st.legs[1-side]
			f := fastpath.Flow{
				Src:  unmapAP(li[side].src),
				Port: uint16(from.base),
				From: netip.AddrPortFrom(st.eng.cfg.BindAddr.Unmap(), uint16(to.base)),
				To:   unmapAP(dst[1-side].ap),
				Kind: fastpath.KindRaw,
				TOS:  uint8(st.dscp() << 2),
			}
			if !f.From.Addr().Is4() {
				f.From = netip.AddrPortFrom(netip.IPv4Unspecified(), f.From.Port()) // "::": the route's source
			}
			switch {
			case rtcp:
				f.Port++
				f.From = netip.AddrPortFrom(f.From.Addr(), f.From.Port()+1)
				f.Kind = fastpath.KindRTCP
			case st.isRTP:
				f.Kind = fastpath.KindRTP
				f.SSRC, f.PT = li[side].ssrc, li[side].pt
				if c := st.clocks.Load(); c != nil {
					f.Clock = c[f.PT]
				}
			}
			out = append(out, f)
		}
	}
	return out
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// enterLocked installs flows; on any failure nothing stays installed.
// Caller holds k.mu.
func (st *stream) enterLocked(p *fastpath.Program, flows []fastpath.Flow) {
	k := &st.kern
	for i, f := range flows {
		key, err := p.Add(f)
		if err != nil {
			st.ev(st.log.Debug()).Err(err).Msg("media: stream stays in userspace")
			st.leaveLocked(p, "")
			return
		}
		k.entries = append(k.entries, kernelEntry{flow: f, key: key, side: Side(i % 2), rtcp: f.Kind == fastpath.KindRTCP})
	}
	k.in.Store(true)
	k.ran.Store(true)
	st.eng.fpStreams.Add(1)
	st.bumpKernelGen()
	st.ev(st.log.Debug()).Int("flows", len(flows)).Msg("media: stream moved into the kernel")
}

// leaveKernel gives the stream back to userspace: its entries are removed
// (their final counters kept), and the next packet reaches the sockets.
func (st *stream) leaveKernel(why string) {
	if !st.kern.in.Load() {
		return
	}
	p := st.eng.fastpath()
	if p == nil {
		return
	}
	st.kern.mu.Lock()
	defer st.kern.mu.Unlock()
	st.leaveLocked(p, why)
}

// leaveRebind is leaveKernel for a NAT rebind candidate seen by the reader
// of side's socket (RTCP port if rtcp): it returns how long ago the kernel
// last forwarded a packet of that side's learned source (ok false: never),
// and keeps the stream out of the kernel long enough for the rebind to be
// proven or to give up.
func (st *stream) leaveRebind(side Side, rtcp bool) (age time.Duration, ok bool) {
	p := st.eng.fastpath()
	if p == nil {
		return 0, false
	}
	k := &st.kern
	k.mu.Lock()
	defer k.mu.Unlock()
	st.leaveLocked(p, leaveRebind)
	k.notBefore = time.Now().Add(st.eng.cfg.RebindSilence + st.eng.cfg.LearnWindow)
	last := k.base[side][b2i(rtcp)].LastNs
	if last == 0 {
		return 0, false
	}
	return time.Duration(p.Now() - last), true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// leaveLocked removes the installed entries. Caller holds k.mu.
func (st *stream) leaveLocked(p *fastpath.Program, why string) {
	k := &st.kern
	if len(k.entries) == 0 {
		return
	}
	for _, e := range k.entries {
		c, err := p.Remove(e.key)
		if err != nil {
			st.ev(st.log.Warn()).Err(err).Msg("media: kernel fast path: removing a flow")
			continue
		}
		k.base[e.side][b2i(e.rtcp)].Add(c)
	}
	full := k.in.Load()
	k.entries = k.entries[:0]
	k.in.Store(false)
	if full {
		st.eng.fpStreams.Add(-1)
		st.bumpKernelGen()
	}
	if why != "" {
		st.ev(st.log.Debug()).Str("why", why).Msg("media: stream back in userspace")
	}
}

// bumpKernelGen tells the readers that packets went through the kernel:
// their sequence trackers start new runs (see seqTracker.rerun).
func (st *stream) bumpKernelGen() {
	for i := range st.legs {
		for _, s := range [2]*sock{st.legs[i].rtp, st.legs[i].rtcp.Load()} {
			if s != nil {
				s.kgen.Add(1)
			}
		}
	}
}

// kernelStats adds what the kernel forwarded to dirs (FromA, FromB):
// finished periods and, read now, the installed entries.
func (st *stream) kernelStats(dirs [2]*DirectionStats) bool {
	k := &st.kern
	if !k.ran.Load() {
		return false
	}
	p := st.eng.fastpath()
	k.mu.Lock()
	sum := k.base
	var live [2]bool
	if p != nil {
		for _, e := range k.entries {
			if c, err := p.Read(e.key); err == nil {
				sum[e.side][b2i(e.rtcp)].Add(c)
				live[e.side] = true
			}
		}
	}
	k.mu.Unlock()
	var nowNs uint64
	if p != nil {
		nowNs = p.Now()
	}
	for side, d := range dirs {
		for _, c := range sum[side] {
			d.Packets += c.Packets
			d.Bytes += c.Bytes
			d.RTCPPackets += c.RTCPPackets
			d.RTCPBytes += c.RTCPBytes
			d.Expected += c.Expected
			d.Lost += c.Lost
			d.OutOfOrder += c.OutOfOrder
			d.KernelPackets += c.Packets + c.RTCPPackets
			d.MaxJitterMs = max(d.MaxJitterMs, float64(c.MaxJitterUs)/1000)
			// The kernel's jitter is the current one while it forwards
			// (and its SSRC was heard within the last 5 s, as in userspace).
			if live[side] && c.LastNs != 0 && nowNs-c.LastNs <= ssrcIdleUs*1000 {
				d.JitterMs = max(d.JitterMs, float64(c.JitterUs)/1000)
			}
		}
	}
	return true
}

// publishLock publishes, at the end of a batch, the source the reader has
// locked (src; invalid: none), when it changed. It allocates only then.
func (s *sock) publishLock(src netip.AddrPort, gen uint64, ssrc uint32, pt uint8, hasSSRC bool) {
	old := s.lock.Load()
	if !src.IsValid() {
		if old != nil {
			s.lock.Store(nil)
		}
		return
	}
	if old != nil && old.src == src && old.gen == gen && old.ssrc == ssrc && old.pt == pt && old.hasSSRC == hasSSRC {
		return
	}
	s.lock.Store(&lockInfo{src: src, gen: gen, ssrc: ssrc, pt: pt, hasSSRC: hasSSRC})
}
