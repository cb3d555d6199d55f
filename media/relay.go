package media

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

const (
	// batchSize is the most datagrams one recvmmsg/sendmmsg moves.
	batchSize = 8
	// rtpSlots and rtcpSlots are how many datagrams a reader takes per
	// system call. Buffers are borrowed from the engine's slotPool for one
	// batch only, so idle streams hold none and a full batch costs nothing
	// while parked.
	rtpSlots  = batchSize
	rtcpSlots = 2
	// bufSize is the size of one relay buffer; larger datagrams are
	// dropped as oversize.
	bufSize = 2048
	// slotSize is the memory of one relay buffer: bufSize plus the room
	// SRTP protection may add in place.
	slotSize = bufSize + srtpHeadroom
)

// slotBuf is the buffer memory of one batch.
type slotBuf [batchSize * slotSize]byte

// slotPool lends batch buffers to readers for the time of one batch (a few
// microseconds); readers parked in the netpoller hold none. It is a bounded
// free list behind a mutex rather than a sync.Pool: the lending happens
// inside the recvmmsg callback, and sync.Pool's deeper call chain grew every
// reader goroutine's stack from 2 to 4 KB. Safe for concurrent use; get and
// put do not allocate in the steady state.
type slotPool struct {
	mu   sync.Mutex // guards free
	free []*slotBuf
}

// maxFreeSlots bounds the idle buffers kept (256 x 16.9 KB = 4.3 MB).
const maxFreeSlots = 256

func newSlotPool() *slotPool { return &slotPool{free: make([]*slotBuf, 0, maxFreeSlots)} }

func (s *slotPool) get() *slotBuf {
	s.mu.Lock()
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		s.mu.Unlock()
		return b
	}
	s.mu.Unlock()
	return new(slotBuf)
}

func (s *slotPool) put(b *slotBuf) {
	s.mu.Lock()
	if len(s.free) < maxFreeSlots {
		s.free = append(s.free, b)
	}
	s.mu.Unlock()
}

// mediaKind selects the DSCP of a stream.
type mediaKind uint8

// Content video and application streams were one class ("other") marked
// like video; they are two now. Content video (slides shared in a call) is
// video and is marked Config.DSCPVideo (AF41). An application stream such
// as BFCP carries floor control, i.e. call control: it is marked
// Config.DSCPApplication, the signalling code point (CS3) by default, so
// that a floor request is not queued behind the video it is about.
const (
	kindAudio       mediaKind = iota
	kindVideo                 // main video (no a=content, or a=content:main)
	kindContent               // content video (a=content:slides, alt, ...)
	kindApplication           // application (BFCP) and any other media type
)

func classify(media, content string) mediaKind {
	switch media {
	case "audio":
		return kindAudio
	case "video":
		if content == "" || content == "main" {
			return kindVideo
		}
		return kindContent
	}
	return kindApplication
}

// clockTable maps RTP payload types to clock rates (0: no jitter, e.g.
// telephone-event). Tables are immutable once published.
type clockTable [128]uint32

// sock is one relay socket and the published statistics of its reader.
type sock struct {
	conn  *net.UDPConn
	port  int
	dscp  int // DSCP the socket is marked with; -1 not known (a new socket)
	stats sockStats
	// local and learn are the private state of the socket's reader (its
	// counters before publication, its endpoint learning), owned by that
	// goroutine alone. They live here rather than on the reader's stack,
	// which then stays within its first 2 KB.
	local localStats
	learn learner

	// lock is the source the reader learned and locked, published for the
	// kernel fast path; kgen counts the stream's moves into and out of the
	// kernel, after which the reader's sequence runs start anew.
	lock atomic.Pointer[lockInfo]
	kgen atomic.Uint64
}

// leg is the part of a stream facing one side.
//
// The endpoint pointers are written by the session's signalling (SDP) and,
// for latching, by the reader goroutine of this leg's socket; they are read
// by the reader of the other leg's socket, which sends to them. Endpoints
// are immutable, so a Load gives a consistent address. A reader latches with
// CompareAndSwap, so it never overwrites an address the signalling just set.
type leg struct {
	base int   // even port of the pair reserved in the pool
	rtp  *sock // set before the stream is shared, then immutable
	// rtcp is nil until RTCP is known not to be muxed; it is set by the
	// signalling and read by Stats and the watchdog, hence atomic.
	rtcp atomic.Pointer[sock]
	// spare is the open RTCP socket of a reused pair while RTCP is muxed
	// (ensureRTCP takes it; close keeps it with the pair). Signalling.
	spare *pairSocks

	sigRTP, sigRTCP atomic.Pointer[endpoint] // signalled in this side's SDP
	remRTP, remRTCP atomic.Pointer[endpoint] // where packets to this side go

	// SRTP termination (streams with sec != nil): remote decrypts what
	// this side sends, local encrypts what is sent to it. nil until the
	// key is negotiated. Published by the signalling; each reader loads
	// them once per batch (see cryptoCtx for who uses which context).
	remote, local atomic.Pointer[cryptoCtx]
}

// stream relays one m= line between side A and side B.
//
// Fields set at creation are immutable. Signalling fields (media, content,
// kind, dir) are guarded by the owning Session's opMu. The atomics are
// shared with the reader goroutines and the watchdog.
type stream struct {
	eng   *Engine
	log   zerolog.Logger
	index int
	isRTP bool // the transport carries RTP (stats parse RTP headers)
	v6    bool // sockets are IPv6

	media, content string
	kind           mediaKind
	dir            [2]direction

	// modes are the effective SRTP modes of the legs, immutable; both
	// SRTPPassthrough unless the stream terminates SRTP (sec != nil).
	modes [2]SRTPMode
	sec   *streamSec // SDES keys; signalling state (Session.opMu)

	legs     [2]leg
	clocks   atomic.Pointer[clockTable]
	codec    atomic.Pointer[Codec]
	held     atomic.Bool // pauses the dead-media timer
	answered atomic.Bool // both sides signalled: the timer may run
	closing  atomic.Bool
	wg       sync.WaitGroup // reader goroutines
	sigGen   atomic.Uint64  // SDPs of either side (setRemote): each makes the readers learn anew
	kern     kernelState    // the kernel fast path's part (kernel.go)
}

// openStream allocates relay sockets on both legs and starts their
// readers. RTCP sockets are opened only if withRTCP (no rtcp-mux). An RTP
// stream terminates SRTP when modes (the session's effective modes) are not
// pass-through.
func (e *Engine) openStream(log zerolog.Logger, index int, media, content string, isRTP, withRTCP bool, modes [2]SRTPMode) (*stream, error) {
	return e.openStreamAt(log, index, media, content, isRTP, withRTCP, modes, [2]int{})
}

// openStreamAt is openStream on the pairs of ports given per leg (0: any
// free pair): a restored session keeps its ports (snapshot.go).
func (e *Engine) openStreamAt(log zerolog.Logger, index int, media, content string, isRTP, withRTCP bool, modes [2]SRTPMode, at [2]int) (*stream, error) {
	st := &stream{
		eng:     e,
		index:   index,
		isRTP:   isRTP,
		v6:      e.cfg.BindAddr.Is6(),
		media:   media,
		content: content,
		kind:    classify(media, content),
	}
	st.log = log // the session's: st.ev adds the m-line to what is logged
	st.dir = [2]direction{dirSendRecv, dirSendRecv}
	if isRTP && modes != [2]SRTPMode{} {
		st.modes = modes
		st.sec = newStreamSec()
	}
	for side := range st.legs {
		var base int
		var ps pairSocks
		var err error
		if at[side] != 0 {
			base = at[side]
			ps, err = e.openPairAt(base, withRTCP)
		} else {
			base, ps, err = e.openPair(withRTCP)
		}
		if err != nil {
			st.close()
			return nil, err
		}
		l := &st.legs[side]
		l.base = base
		l.rtp = &sock{conn: ps.rtp, port: base, dscp: ps.tos}
		switch {
		case ps.rtcp != nil && withRTCP:
			l.rtcp.Store(&sock{conn: ps.rtcp, port: base + 1, dscp: ps.tos})
		case ps.rtcp != nil:
			l.spare = &pairSocks{rtcp: ps.rtcp, tos: ps.tos}
		}
	}
	st.applyDSCP()
	st.startReaders(false)
	if withRTCP {
		st.startReaders(true)
	}
	return st, nil
}

func (st *stream) dscp() int {
	switch st.kind {
	case kindAudio:
		return st.eng.cfg.DSCPAudio
	case kindVideo, kindContent:
		return st.eng.cfg.DSCPVideo
	}
	return st.eng.cfg.DSCPApplication
}

// applyDSCP sets the DSCP of every socket of the stream from its kind.
func (st *stream) applyDSCP() {
	d := st.dscp()
	for i := range st.legs {
		for _, s := range [2]*sock{st.legs[i].rtp, st.legs[i].rtcp.Load()} {
			if s == nil || s.dscp == d {
				continue
			}
			if err := SetDSCP(s.conn, d); err != nil {
				st.ev(st.log.Warn()).Err(err).Int("port", s.port).Msg("media: cannot set DSCP")
				s.dscp = -1
				continue
			}
			s.dscp = d
		}
	}
}

// ev adds the stream's m-line to a log event of its session's logger (a
// logger of its own per stream cost an allocation per call).
func (st *stream) ev(e *zerolog.Event) *zerolog.Event {
	return e.Int("mline", st.index).Str("media", st.media)
}

// ensureRTCP opens the RTCP sockets (odd ports of the reserved pairs) when
// the negotiation turned out not to mux RTCP. The pairs are reserved, so
// this fails only if another process took the port meanwhile.
func (st *stream) ensureRTCP() error {
	if st.legs[SideA].rtcp.Load() != nil {
		return nil
	}
	var conns [2]*net.UDPConn
	tos := [2]int{-1, -1}
	for side := range st.legs {
		if sp := st.legs[side].spare; sp != nil {
			conns[side], tos[side] = sp.rtcp, sp.tos
			continue
		}
		c, err := st.eng.listen(st.legs[side].base + 1)
		if err != nil {
			if conns[0] != nil && st.legs[0].spare == nil {
				_ = conns[0].Close()
			}
			return fmt.Errorf("media: open RTCP port %d: %w", st.legs[side].base+1, err)
		}
		conns[side] = c
	}
	d := st.dscp()
	for side := range st.legs {
		l := &st.legs[side]
		l.spare = nil
		sk := &sock{conn: conns[side], port: l.base + 1, dscp: tos[side]}
		if sk.dscp != d {
			if err := SetDSCP(conns[side], d); err != nil {
				st.ev(st.log.Warn()).Err(err).Msg("media: cannot set DSCP")
			} else {
				sk.dscp = d
			}
		}
		l.rtcp.Store(sk)
	}
	st.startReaders(true)
	return nil
}

// startReaders starts the two reader goroutines of the RTP or RTCP
// sockets. Their owner is the stream: close stops and waits for them.
func (st *stream) startReaders(rtcp bool) {
	for side := range st.legs {
		in, out := st.legs[side].rtp, st.legs[1-side].rtp
		if rtcp {
			in, out = st.legs[side].rtcp.Load(), st.legs[1-side].rtcp.Load()
		}
		slots := rtpSlots
		if rtcp {
			slots = rtcpSlots
		}
		bio, err := st.eng.newBatchIO(in.conn, out.conn, slots)
		if err != nil {
			st.ev(st.log.Error()).Err(err).Msg("media: relay socket unusable")
			continue
		}
		in.learn = newLearner(&st.eng.cfg, st.isRTP, rtcp)
		st.wg.Add(1)
		go st.readLoop(Side(side), rtcp, in, bio)
	}
}

// readLoop is the hot path: it receives batches on the socket facing side
// from, accounts them, and sends them, from the same buffers, through the
// socket facing the other side: unmodified in pass-through, else decrypted
// with the sending side's remote context and encrypted with the receiving
// side's local context, in place. It owns bio, its SRTP scratch state and
// its local statistics; it returns when its socket is closed.
func (st *stream) readLoop(from Side, rtcp bool, in *sock, bio *batchIO) {
	defer st.wg.Done()
	defer st.eng.freeBatchIO(bio)
	me, peer := &st.legs[from], &st.legs[from.Other()]
	term := st.terminates()
	modeIn, modeOut := st.modes[from], st.modes[from.Other()]
	// xf is the SRTP scratch state, only needed (and allocated) when the
	// stream terminates SRTP.
	var xf *srtpXform
	if term {
		xf = new(srtpXform)
	}
	own, dstp, sig := &me.remRTP, &peer.remRTP, &me.sigRTP
	if rtcp {
		own, dstp, sig = &me.remRTCP, &peer.remRTCP, &me.sigRTCP
	}
	cfg := &st.eng.cfg
	strict := cfg.StrictSource || cfg.Learning == LearningStrict
	// Sources are learned (learner) unless strict, off, or proven by SRTP
	// authentication: a terminate leg latches every authentic packet.
	learn := !strict && cfg.Learning == LearningHeuristic && !(term && modeIn == SRTPTerminate)
	lr := &in.learn // set up by startReaders
	epoch := st.eng.epoch
	ls := &in.local
	// The kernel fast path may take over latched pass-through streams:
	// the reader publishes its locked source, gives the stream back to
	// userspace before a new destination or a rebind candidate is dealt
	// with, and starts new sequence runs after a kernel period.
	kernOK := st.eng.cfg.Fastpath == FastpathAuto && !term && (strict || learn)
	var kgen uint64
	for {
		n, err := bio.recv()
		if err != nil {
			if isClosed(err) || st.closing.Load() {
				ls.publish(&in.stats)
				return
			}
			continue // transient error, e.g. an ICMP report
		}
		nowUs := uint64(time.Since(epoch) / time.Microsecond)
		dst := dstp.Load()
		var clocks *clockTable
		if st.isRTP && !rtcp {
			clocks = st.clocks.Load()
		}
		if learn {
			lr.sync(st.sigGen.Load(), sig.Load(), nowUs)
		}
		cur := own.Load()
		var dec, enc *cryptoCtx
		if term {
			dec, enc = me.remote.Load(), peer.local.Load()
		}
		var want *endpoint
		var gen uint64
		if strict {
			want = sig.Load()
			gen = st.sigGen.Load()
		}
		if kernOK {
			if g := in.kgen.Load(); g != kgen {
				kgen = g
				ls.seq.rerun()
			}
		}
		var heard bool // strict: a packet from want came
		var ssrc uint32
		var pt uint8
		for i := range n {
			if bio.truncated(i) {
				ls.oversize++
				continue
			}
			src := bio.src(i)
			p := bio.buf(i)
			isRTCP := rtcp || (st.isRTP && isMuxedRTCP(p))
			latch := false
			switch {
			case strict:
				if want == nil || want.ap != src {
					ls.stranger++
					continue
				}
				if heard = true; !isRTCP && len(p) >= 12 {
					ssrc, pt = binary.BigEndian.Uint32(p[8:12]), p[1]&0x7f
				}
			case learn:
				if kernOK && (cur == nil || cur.ap != src) && st.kern.in.Load() && lr.candidate(p, isRTCP) {
					// The kernel forwarded the learned source's packets:
					// the learner must know when it last sent.
					if age, ok := st.leaveRebind(from, rtcp); ok && uint64(age/time.Microsecond) < nowUs {
						lr.heardAt(nowUs - uint64(age/time.Microsecond))
					}
				}
				switch lr.admit(src, cur, p, isRTCP, nowUs) {
				case verdictLatch:
					latch = true
				case verdictStranger:
					ls.stranger++
					continue
				case verdictUnproven:
					ls.rebindPending++
					continue
				}
			default:
				latch = cur == nil || cur.ap != src
			}
			n := len(p)
			if term {
				var why dropReason
				if p, why = xf.unprotect(p, isRTCP, modeIn, dec); why != dropNone {
					ls.drop(why)
					continue // and do not latch: only authentic SRTP moves the destination
				}
			}
			if latch {
				if kernOK && st.kern.in.Load() {
					st.leaveKernel(leaveLatch) // the kernel sends to the old destination
				}
				// Symmetric latching: answer where the side sends from,
				// unless the signalling set a new address meanwhile.
				if ep := newEndpoint(src, st.v6); own.CompareAndSwap(cur, ep) {
					cur = ep
				} else {
					cur = own.Load()
				}
			}
			ls.account(p[:n], isRTCP, clocks, nowUs) // the header is left in clear
			if dst == nil {
				ls.noDest++
				continue
			}
			if term {
				var why dropReason
				if p, why = xf.protect(p, isRTCP, modeOut, enc); why != dropNone {
					ls.drop(why)
					continue
				}
			}
			bio.queue(i, len(p), dst)
		}
		ls.sendErr += uint64(bio.flush())
		ls.publish(&in.stats)
		switch {
		case !kernOK:
		case strict && heard && want != nil:
			in.publishLock(want.ap, gen, ssrc, pt, st.isRTP && ssrc != 0)
		case learn && lr.locked() && cur != nil:
			in.publishLock(cur.ap, lr.gen, lr.ssrc, lr.pt, lr.hasSSRC)
		case learn:
			in.publishLock(netip.AddrPort{}, 0, 0, 0, false)
		}
	}
}

// account updates the local statistics for packet p, received as is (RTCP
// when rtcp: on an RTCP port, or muxed on the RTP port).
func (ls *localStats) account(p []byte, rtcp bool, clocks *clockTable, nowUs uint64) {
	n := uint64(len(p))
	if rtcp {
		ls.rtcpPackets++
		ls.rtcpBytes += n
		return
	}
	ls.packets++
	ls.bytes += n
	if clocks == nil || len(p) < 12 || p[0]>>6 != 2 {
		return
	}
	ls.seq.update(binary.BigEndian.Uint16(p[2:4]), binary.BigEndian.Uint32(p[4:8]),
		binary.BigEndian.Uint32(p[8:12]), nowUs, clocks[p[1]&0x7f])
}

// setRemote records the address:port signalled in side's SDP. The relay
// destination is reset to it only if it changed, so a destination latched
// behind a NAT survives re-INVITEs that repeat the same SDP address.
// rtcpAP is the RTCP address (a=rtcp, or RTP port+1). Either way the
// readers of both sides learn their sources anew (see learner): an answer
// opens a learning window on the offerer's side too, when its media starts.
func (st *stream) setRemote(side Side, rtpAP, rtcpAP netip.AddrPort) {
	l := &st.legs[side]
	set := func(sig, rem *atomic.Pointer[endpoint], ap netip.AddrPort) {
		if old := sig.Load(); old != nil && old.ap == ap {
			return
		}
		e := newEndpoint(ap, st.v6)
		sig.Store(e)
		rem.Store(e)
	}
	set(&l.sigRTP, &l.remRTP, rtpAP)
	set(&l.sigRTCP, &l.remRTCP, rtcpAP)
	st.sigGen.Add(1) // after the endpoints: a reader seeing it sees them
}

// activity returns a counter that grows with every packet accepted on the
// stream, in either direction.
func (st *stream) activity() uint64 {
	a := st.kern.act.Load() // what the kernel forwarded (the watchdog's last read)
	for i := range st.legs {
		for _, s := range [2]*sock{st.legs[i].rtp, st.legs[i].rtcp.Load()} {
			if s != nil {
				a += s.stats.activity()
			}
		}
	}
	return a
}

// stats returns the stream's statistics so far.
func (st *stream) stats() StreamStats {
	ss := StreamStats{Index: st.index, Media: st.media, Content: st.content}
	dirs := [2]*DirectionStats{&ss.FromA, &ss.FromB}
	for side := range st.legs {
		l := &st.legs[side]
		if l.rtp != nil {
			l.rtp.stats.addTo(dirs[side])
		}
		if s := l.rtcp.Load(); s != nil {
			s.stats.addTo(dirs[side])
		}
	}
	ss.PortA, ss.PortB = st.legs[SideA].base, st.legs[SideB].base
	ss.Kernel = st.kernelStats(dirs)
	for side, ap := range [2]*netip.AddrPort{&ss.RemoteA, &ss.RemoteB} {
		if e := st.legs[side].remRTP.Load(); e != nil {
			*ap = e.ap
		}
	}
	ss.score(st.codec.Load()) // voice codec of the last SDP (nil: not voice)
	return ss
}

// close closes the sockets, waits for the readers and returns the ports to
// the pool (through quarantine). It must be called once, by the owner.
//
// The readers are stopped with a read deadline in the past rather than by
// closing their sockets: each pair goes back to the pool with its sockets
// open (Engine.recycle), unless the pool keeps enough open sockets.
func (st *stream) close() {
	st.leaveKernel(leaveClose)
	st.closing.Store(true)
	past := time.Unix(1, 0)
	for i := range st.legs {
		for _, s := range [2]*sock{st.legs[i].rtp, st.legs[i].rtcp.Load()} {
			if s != nil {
				_ = s.conn.SetReadDeadline(past)
			}
		}
	}
	st.wg.Wait()
	for i := range st.legs {
		l := &st.legs[i]
		if l.rtp == nil {
			continue
		}
		ps := pairSocks{rtp: l.rtp.conn, tos: l.rtp.dscp}
		if r := l.rtcp.Load(); r != nil {
			ps.rtcp = r.conn
			if r.dscp != ps.tos {
				ps.tos = -1
			}
		} else if l.spare != nil {
			ps.rtcp = l.spare.rtcp
			if l.spare.tos != ps.tos {
				ps.tos = -1
			}
		}
		st.eng.recycle(l.base, ps)
	}
}
