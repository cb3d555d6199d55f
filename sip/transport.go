package sip

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/media"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// This file is where every SIP-over-TLS connection starts and where every
// SIP message enters. The SBC accepts and dials TCP itself, runs the TLS
// handshake itself (so it knows the peer's verified identity and why a
// handshake failed), applies the connection caps, and then reads each
// connection in one goroutine: bytes are parsed with sipgo's stream parser
// and every message is handed, in arrival order, to the B2BUA's dispatcher
// (server.go). sipgo's own transport and transaction layers are not used:
// they start a goroutine per message, which loses the order in which a
// peer sent its messages (a 180 and a 200 back to back, a CANCEL and a
// 200) and lets a peer that never reads pile up goroutines.
//
// Writes go out under a per-connection mutex with limits.write_timeout: a
// peer that does not read is disconnected, and the calls that used the
// connection end.

// conn is one established SIP-over-TLS connection.
type conn struct {
	t          *transport
	nc         net.Conn // the *tls.Conn
	raw        net.Conn // the TCP connection under it
	remote     string   // remote ip:port
	remoteIP   netip.Addr
	leaf       *x509.Certificate // the peer's verified certificate, nil if none
	identities []string          // verified certificate names of the peer, empty if none
	verified   bool              // the peer's chain verified against our roots
	trunk      bool              // a configured trunk: dialed by us, or its certificate names one
	unauth     string            // trunk for peers without a certificate on this listener
	outbound   bool              // we dialed it
	sni        string            // outbound: the host name we dialed
	release    func()            // frees the per-address slot; nil for outbound

	omu      sync.Mutex // guards out, spare, flushing (never held across a write)
	out      []byte     // bytes waiting for the flusher
	spare    []byte     // the flusher's previous buffer, reused
	flushing bool       // a writer is flushing out

	closeOnce sync.Once
	done      chan struct{} // closed when the connection is closed

	mu      sync.Mutex // guards calls, pending
	calls   map[*call]struct{}
	pending int        // requests read from this connection awaiting a final response
	room    *sync.Cond // signalled when pending drops (uses mu)
}

// transport owns the SBC's TLS connections.
type transport struct {
	log       zerolog.Logger
	store     *tlsconf.Store
	minTLS    uint16
	hsTimeout time.Duration
	dscp      int
	keepalive time.Duration
	maxMsg    int
	metrics   *Metrics
	limits    func() config.Limits // current limits (reloadable)
	trusted   func(netip.Addr) bool
	isTrunk   func(*x509.Certificate) bool     // the certificate names a configured trunk
	handler   func(*conn, sip.Message)         // where messages go, in order
	onEnd     func(*conn)                      // a connection ended
	sent      func(*conn, sip.Message, []byte) // a message was written (tracing); nil: none
	parser    *sip.Parser
	bufs      sync.Pool // *bytes.Buffer for serialising messages

	hmu       sync.Mutex // guards perIP, hsBucket, refusedAt, global
	perIP     map[netip.Addr]int
	hsBucket  map[netip.Addr]*bucket
	refusedAt map[netip.Addr]time.Time
	global    bucket

	total atomic.Int64 // established connections (inbound and outbound)

	mu    sync.Mutex // guards conns, dials
	conns map[string]*conn
	dials map[string]*dialCall

	wg sync.WaitGroup // readers and handshakes
}

type dialCall struct {
	done chan struct{}
	c    *conn
	err  error
}

func (t *transport) init() {
	t.perIP = map[netip.Addr]int{}
	t.hsBucket = map[netip.Addr]*bucket{}
	t.refusedAt = map[netip.Addr]time.Time{}
	t.conns = map[string]*conn{}
	t.dials = map[string]*dialCall{}
	t.parser = sip.NewParser()
	if t.maxMsg > 0 {
		t.parser.MaxMessageLength = t.maxMsg
	}
	t.bufs.New = func() any { return new(bytes.Buffer) }
	if t.limits == nil {
		t.limits = func() config.Limits { return config.Limits{} }
	}
	if t.trusted == nil {
		t.trusted = func(netip.Addr) bool { return false }
	}
}

// listener is one configured TLS listener.
type listener struct {
	t           *transport
	ln          net.Listener
	mode        tlsconf.ClientAuth
	unauthTrunk string
}

// serve accepts TCP connections until the listener closes; each handshake
// runs in its own goroutine bounded by the handshake timeout.
func (l *listener) serve(ctx context.Context) {
	var backoff time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			// A temporary failure (EMFILE, ENFILE, ECONNABORTED): retry
			// with a backoff, as net/http does, instead of leaving the
			// listener dead while the process stays up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.t.log.Error().Err(err).Str("listener", l.ln.Addr().String()).Dur("retry_in", backoff).Msg("accept failed")
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		ip := remoteIP(raw)
		if why := l.t.admitConn(ip); why != "" {
			l.t.refuse(ip, why)
			_ = raw.Close()
			continue
		}
		l.t.wg.Add(1)
		go func() {
			defer l.t.wg.Done()
			l.handshake(ctx, raw, ip)
		}()
	}
}

func (l *listener) handshake(ctx context.Context, raw net.Conn, ip netip.Addr) {
	t := l.t
	remote := raw.RemoteAddr().String()
	release := sync.OnceFunc(func() { t.releaseConn(ip) })
	if t.dscp > 0 {
		_ = media.SetDSCP(raw, t.dscp)
	}
	tc := tls.Server(tlsconf.DirectIO(raw), tlsconf.NewServerConfig(t.store, l.mode, t.minTLS))
	hctx, cancel := context.WithTimeout(ctx, t.hsTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		reason, why := tlsconf.Classify(err)
		t.metrics.TLSHandshakes.WithLabelValues("inbound", "refused", string(reason)).Inc()
		t.log.Warn().Str("remote", remote).Str("listener", l.ln.Addr().String()).
			Str("reason", string(reason)).Str("why", why).Msg("inbound TLS refused")
		_ = raw.Close()
		release()
		return
	}
	t.metrics.TLSHandshakes.WithLabelValues("inbound", "ok", "").Inc()
	cs := tc.ConnectionState()
	c := &conn{t: t, nc: tc, raw: raw, remote: remote, remoteIP: ip, unauth: l.unauthTrunk, release: release}
	c.verified = len(cs.VerifiedChains) > 0
	if !c.verified && len(cs.PeerCertificates) > 0 {
		// client_auth optional: the handshake accepted whatever was sent.
		if err := tlsconf.VerifyClient(t.store, cs.PeerCertificates); err == nil {
			c.verified = true
		} else {
			reason, why := tlsconf.Classify(err)
			t.log.Info().Str("remote", remote).Str("reason", string(reason)).Str("why", why).
				Msg("client certificate not verified: peer treated as unauthenticated")
		}
	}
	if c.verified && len(cs.PeerCertificates) > 0 {
		c.leaf = cs.PeerCertificates[0]
		c.identities = tlsconf.Identities(c.leaf)
		c.trunk = t.isTrunk != nil && t.isTrunk(c.leaf)
	}
	t.log.Debug().Str("remote", remote).Strs("identities", c.identities).
		Str("tls", tls.VersionName(cs.Version)).Msg("inbound TLS connection")
	t.start(c)
}

// start registers an established connection and starts its reader.
func (t *transport) start(c *conn) {
	c.done = make(chan struct{})
	c.room = sync.NewCond(&c.mu)
	t.total.Add(1)
	t.mu.Lock()
	if old, ok := t.conns[c.remote]; ok && old != c {
		// A second connection from the same ip:port (only after the first
		// ended): the newest wins the address.
		t.log.Debug().Str("remote", c.remote).Msg("connection replaces an older one from the same address")
	}
	t.conns[c.remote] = c
	t.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		c.readLoop()
	}()
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// readState tracks what the parser holds between reads, so that CRLF
// keepalives between messages are told apart from a message in progress.
type readState struct {
	unconsumed int  // bytes given to the parser that are not part of a complete message yet
	tailCRLF   bool // those bytes are all CR or LF
}

// readLoop reads the connection until it ends and hands every message to
// the transport's handler, in order. It owns the connection's parser.
func (c *conn) readLoop() {
	defer c.t.ended(c)
	defer c.close()
	buf := make([]byte, 16<<10)
	par := c.t.parser.NewSIPStream()
	defer par.Close()
	st := readState{tailCRLF: true}
	for {
		idle := c.t.limits().IdleTimeout
		if idle > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := c.nc.Read(buf)
		if n > 0 {
			if perr := c.feed(par, buf[:n], &st); perr != nil {
				c.t.log.Info().Err(perr).Str("remote", c.remote).Msg("unparseable SIP stream: connection closed")
				return
			}
		}
		if err != nil {
			var ne net.Error
			if n == 0 && errors.As(err, &ne) && ne.Timeout() && c.busy() {
				continue // idle, but a call depends on it: keep it
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.t.log.Debug().Err(err).Str("remote", c.remote).Msg("connection read ended")
			}
			return
		}
	}
}

// feed parses data and dispatches every complete message.
func (c *conn) feed(par *sip.ParserStream, data []byte, st *readState) error {
	if _, err := par.Write(data); err != nil {
		return fmt.Errorf("parser: %w", err)
	}
	st.unconsumed += len(data)
	for par.Buffer().Len() > 0 {
		msg, n, err := par.ParseNext()
		if err == nil || errors.Is(err, sip.ErrMessageTooLarge) && msg != nil {
			st.unconsumed -= n
			st.tailCRLF = true
			if err != nil {
				c.t.log.Info().Str("remote", c.remote).Int("bytes", n).Msg("SIP message too large: dropped")
				if req, ok := msg.(*sip.Request); ok && !req.IsAck() {
					c.t.tooLarge(c, req)
				}
				continue
			}
			msg.SetSource(c.remote)
			msg.SetTransport("TLS")
			c.t.handler(c, msg)
			continue
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			break
		}
		return err
	}
	// What remains in the parser is the tail of the stream. If it is only
	// CRLFs the peer is between messages: they are dropped, and a CRLF-CRLF
	// among them is a ping, answered with a CRLF pong (RFC 5626 §4.4.1). A
	// single CRLF (a pong to our ping) is not answered.
	if st.unconsumed <= 0 {
		st.unconsumed, st.tailCRLF = 0, true
		return nil
	}
	tail := data
	if st.unconsumed <= len(data) {
		tail = data[len(data)-st.unconsumed:]
		st.tailCRLF = true
	}
	st.tailCRLF = st.tailCRLF && len(bytes.Trim(tail, "\r\n")) == 0
	if st.tailCRLF {
		par.Reset()
		st.unconsumed = 0
		if bytes.Contains(tail, []byte("\r\n\r\n")) {
			if err := c.write([]byte("\r\n")); err != nil {
				return err
			}
		}
	}
	return nil
}

// send serialises m and writes it.
func (c *conn) send(m sip.Message) error {
	buf := c.t.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	m.StringWrite(buf)
	err := c.write(buf.Bytes())
	if err == nil && c.t.sent != nil {
		c.t.sent(c, m, buf.Bytes())
	}
	if buf.Cap() <= 64<<10 {
		c.t.bufs.Put(buf)
	}
	return err
}

// maxWriteQueue and maxTrunkWriteQueue bound what may wait for a connection's
// flusher: a writer that would queue more closes the connection (the peer
// does not read). A writer never waits for room: the connection's own
// reader writes too (100 Trying, refusals, OPTIONS answers), and a reader
// blocked on its connection's writes stops reading the peer's ACKs while a
// peer that is itself blocked on its writes stops reading ours: both stall
// (a single-threaded peer at thousands of calls/s did, until
// trunk_write_timeout), and 2xx retransmissions for the unread ACKs grow
// the queue meanwhile. A configured trunk's connection carries bursts of
// many calls and gets the larger bound; each flush is bounded by
// limits.write_timeout (limits.trunk_write_timeout for a trunk).
const (
	maxWriteQueue      = 1 << 20
	maxTrunkWriteQueue = 32 << 20
)

// write queues p and, unless another writer is flushing, writes it and
// whatever others queued meanwhile in as few TLS records and system calls
// as possible (many calls share a trunk's connection). Each flush is
// bounded by limits.write_timeout: a peer that does not read in time is
// disconnected, as one whose queue would exceed maxWriteQueue (maxTrunkWriteQueue).
// A queued write whose flush fails is reported by the connection's end
// (its transactions fail, its calls end), not here.
func (c *conn) write(p []byte) error {
	c.omu.Lock()
	if c.closed() {
		c.omu.Unlock()
		return fmt.Errorf("%w: %s", ErrConnClosed, c.remote)
	}
	if limit := c.queueLimit(); c.flushing && len(c.out)+len(p) > limit {
		queued := len(c.out)
		c.omu.Unlock()
		c.dropEvent().Int("queued", queued).
			Msg("write queue full (peer not reading?): connection closed")
		c.close()
		return fmt.Errorf("%w: %s: write queue full (%d bytes)", ErrConnClosed, c.remote, queued)
	}
	c.out = append(c.out, p...)
	if c.flushing {
		c.omu.Unlock()
		return nil
	}
	c.flushing = true
	for len(c.out) > 0 {
		buf := c.out
		c.out = c.spare[:0]
		c.omu.Unlock()
		err := c.flush(buf)
		c.omu.Lock()
		if cap(buf) <= 256<<10 {
			c.spare = buf[:0]
		} else {
			c.spare = nil // a burst: do not keep its buffer
		}
		if err != nil {
			c.out, c.flushing = nil, false
			c.omu.Unlock()
			return err
		}
	}
	c.flushing = false
	c.omu.Unlock()
	return nil
}

// flush writes buf within the write timeout (only the flusher calls it):
// limits.trunk_write_timeout on a trunk's connection, else
// limits.write_timeout.
func (c *conn) flush(buf []byte) error {
	lim := c.t.limits()
	wt := lim.WriteTimeout
	if c.trunk {
		wt = lim.TrunkWriteTimeout
	}
	if wt > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(wt))
	} else {
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	if _, err := c.nc.Write(buf); err != nil {
		c.dropEvent().Err(err).Msg("write failed (peer not reading?): connection closed")
		c.close()
		return fmt.Errorf("%w: %s: %w", ErrConnClosed, c.remote, err)
	}
	return nil
}

// dropEvent is the log line of a connection closed because its peer does
// not read: a warning for a trunk (its calls end with it), else info.
func (c *conn) dropEvent() *zerolog.Event {
	ev := c.t.log.Info()
	if c.trunk {
		ev = c.t.log.Warn()
	}
	return ev.Str("remote", c.remote).Bool("trunk", c.trunk)
}

// queueLimit is what may wait for the flusher on this connection.
func (c *conn) queueLimit() int {
	if c.trunk {
		return maxTrunkWriteQueue
	}
	return maxWriteQueue
}

// close closes the connection once; the reader then ends and reports it.
// The TCP connection is closed directly: a TLS close_notify would wait on
// a peer that does not read.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.done)
		_ = c.raw.Close()
		c.mu.Lock()
		c.room.Broadcast()
		c.mu.Unlock()
	})
}

func (c *conn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// busy reports whether a call uses the connection.
func (c *conn) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls) > 0
}

// attach and detach record that call uses the connection (so that its
// loss ends the call, and idleness does not close it).
func (c *conn) attach(cl *call) {
	c.mu.Lock()
	if c.calls == nil {
		c.calls = map[*call]struct{}{}
	}
	c.calls[cl] = struct{}{}
	c.mu.Unlock()
}

func (c *conn) detach(cl *call) {
	c.mu.Lock()
	delete(c.calls, cl)
	c.mu.Unlock()
}

// takeCalls returns the calls using the connection and forgets them.
func (c *conn) takeCalls() []*call {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*call, 0, len(c.calls))
	for cl := range c.calls {
		out = append(out, cl)
	}
	c.calls = nil
	return out
}

// beginRequest counts a request awaiting a final response; when capped it
// waits while limits.max_pending_per_connection are in flight (TCP
// backpressure: the reader stops reading) unless wait is false, when it
// reports false instead. Trunks identified by their certificate are not
// capped: all of a partner's calls may share one connection.
func (c *conn) beginRequest(wait, capped bool) bool {
	max := 0
	if capped {
		max = c.t.limits().MaxPendingPerConnection
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for max > 0 && c.pending >= max {
		if !wait || c.closed() {
			return false
		}
		c.room.Wait()
	}
	c.pending++
	return true
}

func (c *conn) endRequest() {
	c.mu.Lock()
	if c.pending > 0 {
		c.pending--
	}
	c.room.Signal()
	c.mu.Unlock()
}

// hasIdentity reports whether the peer's verified certificate is valid for
// identity (tlsconf.MatchIdentity, the one check in both directions); an
// empty identity accepts any peer.
func (c *conn) hasIdentity(identity string) bool {
	if identity == "" {
		return true
	}
	return c.verified && c.leaf != nil && tlsconf.MatchIdentity(c.leaf, identity)
}

// ended forgets a connection and tells the B2BUA.
func (t *transport) ended(c *conn) {
	t.mu.Lock()
	if cur, ok := t.conns[c.remote]; ok && cur == c {
		delete(t.conns, c.remote)
	}
	t.mu.Unlock()
	t.total.Add(-1)
	if c.release != nil {
		c.release()
	}
	t.log.Debug().Str("remote", c.remote).Msg("TLS connection ended")
	if t.onEnd != nil {
		t.onEnd(c)
	}
}

// admitConn applies the global and per-source-address caps to a new
// inbound connection; it returns why it is refused, or "" and counts the
// connection. Trusted sources (limits.trusted_sources, resolved trunk
// targets) skip the per-address caps.
func (t *transport) admitConn(ip netip.Addr) string {
	lim := t.limits()
	if lim.MaxConnections > 0 && t.total.Load() >= int64(lim.MaxConnections) {
		return "too many connections in all"
	}
	now := time.Now()
	trusted := t.trusted(ip)
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if !t.global.take(lim.HandshakesPerSecond, now) {
		return "handshake rate in all"
	}
	if trusted {
		t.perIP[ip]++
		return ""
	}
	if lim.MaxConnectionsPerIP > 0 && t.perIP[ip] >= lim.MaxConnectionsPerIP {
		return "too many connections from this address"
	}
	bk := t.hsBucket[ip]
	if bk == nil {
		if len(t.hsBucket) > 10000 {
			// Bounded: forget addresses whose bucket has refilled.
			for a, b := range t.hsBucket {
				if now.Sub(b.last) > time.Minute {
					delete(t.hsBucket, a)
				}
			}
		}
		bk = &bucket{}
		t.hsBucket[ip] = bk
	}
	if !bk.take(lim.HandshakesPerIP, now) {
		return "handshake rate from this address"
	}
	t.perIP[ip]++
	return ""
}

func (t *transport) releaseConn(ip netip.Addr) {
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if t.perIP[ip] <= 1 {
		delete(t.perIP, ip)
		return
	}
	t.perIP[ip]--
}

// refuse logs a refused connection once a minute per address, not per
// connection, and counts every one.
func (t *transport) refuse(ip netip.Addr, why string) {
	t.metrics.TLSHandshakes.WithLabelValues("inbound", "refused", "limit").Inc()
	now := time.Now()
	t.hmu.Lock()
	last, seen := t.refusedAt[ip]
	if seen && now.Sub(last) <= time.Minute {
		t.hmu.Unlock()
		return
	}
	if len(t.refusedAt) > 10000 {
		clear(t.refusedAt)
	}
	t.refusedAt[ip] = now
	t.hmu.Unlock()
	t.log.Warn().Str("source", ip.String()).Str("why", why).Msg("connection refused (logged once a minute per address)")
}

// tooLarge answers a request larger than sip.max_message_size with 513.
func (t *transport) tooLarge(c *conn, req *sip.Request) {
	res := newResponse(req, 513, "")
	_ = c.send(res)
}

// reusable returns an established connection to addr whose peer proved
// identity: ours, or one the peer opened from that address (RFC 5923-style
// reuse).
func (t *transport) reusable(addr, identity string) (*conn, error) {
	t.mu.Lock()
	c, ok := t.conns[addr]
	t.mu.Unlock()
	if !ok || c.closed() {
		return nil, nil
	}
	if !c.hasIdentity(identity) {
		return nil, fmt.Errorf("%w: a connection to %s exists with another identity", ErrIdentity, addr)
	}
	return c, nil
}

// dial returns an established, verified TLS connection to addr (ip:port),
// reusing one that exists; concurrent dials to one address share one
// handshake. sni is the host name of the target (never an IP literal) and
// identity the name its certificate must carry.
func (t *transport) dial(ctx context.Context, addr, sni, identity string) (*conn, error) {
	for {
		if c, err := t.reusable(addr, identity); c != nil || err != nil {
			return c, err
		}
		t.mu.Lock()
		if d, ok := t.dials[addr]; ok {
			t.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if d.err != nil {
				return nil, d.err
			}
			continue
		}
		d := &dialCall{done: make(chan struct{})}
		t.dials[addr] = d
		t.mu.Unlock()
		d.c, d.err = t.dialNew(ctx, addr, sni, identity)
		t.mu.Lock()
		delete(t.dials, addr)
		t.mu.Unlock()
		close(d.done)
		return d.c, d.err
	}
}

func (t *transport) dialNew(ctx context.Context, addr, sni, identity string) (*conn, error) {
	if lim := t.limits(); lim.MaxConnections > 0 && t.total.Load() >= int64(lim.MaxConnections) {
		return nil, fmt.Errorf("%w: %s: limits.max_connections reached", ErrUnreachable, addr)
	}
	// The one dial + handshake + identity check, shared with edge-sbc check.
	tc, raw, err := tlsconf.Dial(ctx, tlsconf.DialOptions{
		Addr: addr, SNI: sni, Identity: identity, Store: t.store, MinVersion: t.minTLS,
		Timeout: t.hsTimeout, Control: dscpControl(t.dscp),
	})
	if _, ok := errors.AsType[*tlsconf.ConnectError](err); ok {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, err)
	}
	if err != nil {
		reason, why := tlsconf.Classify(err)
		t.metrics.TLSHandshakes.WithLabelValues("outbound", "refused", string(reason)).Inc()
		t.log.Warn().Str("remote", addr).Str("sni", sni).Str("identity", identity).
			Str("reason", string(reason)).Str("why", why).Msg("outbound TLS refused")
		return nil, fmt.Errorf("%w: %s: %s (%s)", ErrTLS, addr, why, reason)
	}
	t.metrics.TLSHandshakes.WithLabelValues("outbound", "ok", "").Inc()
	cs := tc.ConnectionState()
	c := &conn{t: t, nc: tc, raw: raw, remote: addr, outbound: true, sni: sni, verified: true, trunk: true}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		c.remoteIP = ap.Addr().Unmap()
	}
	if len(cs.PeerCertificates) > 0 {
		c.leaf = cs.PeerCertificates[0]
		c.identities = tlsconf.Identities(c.leaf)
	}
	if identity != "" {
		c.identities = appendUnique(c.identities, identity)
	}
	t.log.Debug().Str("remote", addr).Str("sni", sni).Strs("identities", c.identities).
		Str("tls", tls.VersionName(cs.Version)).Msg("outbound TLS connection")
	t.start(c)
	return c, nil
}

// keepaliveLoop sends RFC 5626 §4.4.1 CRLF-CRLF pings on every connection
// at the configured interval (pongs are absorbed by the readers).
func (t *transport) keepaliveLoop(ctx context.Context) {
	if t.keepalive <= 0 {
		return
	}
	tk := time.NewTicker(t.keepalive)
	defer tk.Stop()
	ping := []byte("\r\n\r\n")
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		for _, c := range t.snapshot() {
			if err := c.write(ping); err != nil {
				t.log.Debug().Err(err).Str("remote", c.remote).Msg("keepalive failed")
			}
		}
	}
}

func (t *transport) snapshot() []*conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*conn, 0, len(t.conns))
	for _, c := range t.conns {
		out = append(out, c)
	}
	return out
}

// closeAll closes every connection (shutdown).
func (t *transport) closeAll() {
	for _, c := range t.snapshot() {
		c.close()
	}
}

// count returns the number of live connections.
func (t *transport) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// dscpControl marks an outbound signalling socket before it connects (CS3
// by default, RFC 4594), with the one DSCP primitive of media.
func dscpControl(dscp int) func(network, address string, c syscall.RawConn) error {
	return media.DSCPControl(dscp)
}
