package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/ipv4"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// This file is where every SIP-over-TLS connection starts. The SBC accepts
// TCP and dials TCP itself, runs the TLS handshake itself (so it knows the
// peer's verified identity and why a handshake failed), and only then hands
// the established *tls.Conn to sipgo through a handoff listener. sipgo's own
// dialing is never used for new targets: its TLS dial cannot carry a
// per-target identity or SNI, nor report a refusal in time for failover.

// connInfo is what the SBC knows about one established TLS connection.
type connInfo struct {
	remote     string   // remote ip:port, the key sipgo's pool uses too
	identities []string // verified certificate names of the peer, empty if none
	verified   bool     // the peer's chain verified against our roots
	unauth     string   // trunk for peers without a certificate on this listener
	outbound   bool     // we dialed it
	sni        string   // outbound: the host name we dialed
	conn       *trackedConn
}

// trackedConn reports its end once, whichever of Read or Close sees it
// first, and closes a connection idle for longer than idle() unless busy()
// says a call still uses it (no slowloris, no stale connections).
type trackedConn struct {
	net.Conn
	once    sync.Once
	onClose func()
	idle    func() time.Duration
	busy    func() bool
}

func (c *trackedConn) Read(b []byte) (int, error) {
	for {
		var d time.Duration
		if c.idle != nil {
			d = c.idle()
		}
		if d > 0 {
			_ = c.Conn.SetReadDeadline(time.Now().Add(d))
		}
		n, err := c.Conn.Read(b)
		if err != nil {
			var ne net.Error
			if d > 0 && n == 0 && errors.As(err, &ne) && ne.Timeout() && c.busy != nil && c.busy() {
				continue // idle, but a call depends on it: keep it
			}
			c.ended()
		}
		return n, err
	}
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.ended()
	return err
}

func (c *trackedConn) ended() { c.once.Do(c.onClose) }

// handoff is a net.Listener that sipgo serves; its connections are pushed in
// by the SBC after their TLS handshake. Push returns once sipgo has taken
// the connection into its pool (sipgo adds a connection to its pool before
// it calls Accept again).
type handoff struct {
	addr   net.Addr
	ch     chan *handoffItem
	closed chan struct{}
	once   sync.Once

	mu   sync.Mutex // guards last
	last *handoffItem
}

type handoffItem struct {
	conn  net.Conn
	taken chan struct{}
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, ch: make(chan *handoffItem), closed: make(chan struct{})}
}

func (h *handoff) Accept() (net.Conn, error) {
	h.mu.Lock()
	if h.last != nil {
		close(h.last.taken)
		h.last = nil
	}
	h.mu.Unlock()
	select {
	case it := <-h.ch:
		h.mu.Lock()
		h.last = it
		h.mu.Unlock()
		return it.conn, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }

func (h *handoff) push(ctx context.Context, c net.Conn) error {
	it := &handoffItem{conn: c, taken: make(chan struct{})}
	select {
	case h.ch <- it:
	case <-h.closed:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-it.taken:
		return nil
	case <-h.closed:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// transport owns the SBC's TLS connections.
type transport struct {
	log       zerolog.Logger
	store     *tlsconf.Store
	minTLS    uint16
	hsTimeout time.Duration
	dscp      int
	keepalive time.Duration
	identify  func(identities []string, unauthTrunk string, verified bool) string
	onEnd     func(remote string)
	metrics   *Metrics
	limits    func() config.Limits // current limits (reloadable)
	busy      func(remote string) bool

	hmu       sync.Mutex // guards perIP, hsBucket, refusedAt
	perIP     map[netip.Addr]int
	hsBucket  map[netip.Addr]*bucket
	refusedAt map[netip.Addr]time.Time

	out *handoff // outbound connections are served by sipgo from here

	mu    sync.Mutex // guards conns and dials
	conns map[string]*connInfo
	dials map[string]*dialCall

	wg sync.WaitGroup
}

type dialCall struct {
	done chan struct{}
	err  error
}

func (t *transport) init() {
	t.perIP = map[netip.Addr]int{}
	t.hsBucket = map[netip.Addr]*bucket{}
	t.refusedAt = map[netip.Addr]time.Time{}
	t.conns = map[string]*connInfo{}
	t.dials = map[string]*dialCall{}
	t.out = newHandoff(&net.TCPAddr{IP: net.IPv4zero})
}

// listener is one configured TLS listener.
type listener struct {
	t           *transport
	ln          net.Listener
	mode        tlsconf.ClientAuth
	unauthTrunk string
	hand        *handoff
}

// serve accepts TCP connections until the listener closes; each handshake
// runs in its own goroutine bounded by the handshake timeout.
func (l *listener) serve(ctx context.Context) {
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.t.log.Error().Err(err).Str("listener", l.ln.Addr().String()).Msg("accept failed")
			}
			return
		}
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
	released := false
	release := func() {
		if !released {
			released = true
			t.releaseConn(ip)
		}
	}
	setDSCP(raw, t.dscp)
	conf := tlsconf.NewServerConfig(t.store, l.mode, t.minTLS)
	tc := tls.Server(raw, conf)
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
	var ids []string
	verified := len(cs.VerifiedChains) > 0
	if !verified && len(cs.PeerCertificates) > 0 {
		// client_auth optional: the handshake accepted whatever was sent.
		if err := tlsconf.VerifyClient(t.store, cs.PeerCertificates); err == nil {
			verified = true
		} else {
			reason, why := tlsconf.Classify(err)
			t.log.Info().Str("remote", remote).Str("reason", string(reason)).Str("why", why).
				Msg("client certificate not verified: peer treated as unauthenticated")
		}
	}
	if verified && len(cs.PeerCertificates) > 0 {
		ids = tlsconf.Identities(cs.PeerCertificates[0])
	}
	info := &connInfo{remote: remote, identities: ids, verified: verified, unauth: l.unauthTrunk}
	t.track(info, tc, release)
	t.log.Debug().Str("remote", remote).Strs("identities", ids).Str("trunk", t.identify(ids, l.unauthTrunk, verified)).
		Str("tls", tls.VersionName(cs.Version)).Msg("inbound TLS connection")
	if err := l.hand.push(ctx, info.conn); err != nil {
		_ = info.conn.Close()
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (t *transport) idleTimeout() time.Duration {
	if t.limits == nil {
		return 0
	}
	return t.limits().IdleTimeout
}

// admitConn applies the per-source-address caps to a new connection; it
// returns why it is refused, or "" and counts the connection.
func (t *transport) admitConn(ip netip.Addr) string {
	if t.limits == nil {
		return ""
	}
	lim := t.limits()
	now := time.Now()
	t.hmu.Lock()
	defer t.hmu.Unlock()
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
	if t.metrics != nil {
		t.metrics.TLSHandshakes.WithLabelValues("inbound", "refused", "limit").Inc()
	}
	now := time.Now()
	t.hmu.Lock()
	last, seen := t.refusedAt[ip]
	if !seen || now.Sub(last) > time.Minute {
		t.refusedAt[ip] = now
		if len(t.refusedAt) > 10000 {
			clear(t.refusedAt)
		}
		t.hmu.Unlock()
		t.log.Warn().Str("source", ip.String()).Str("why", why).Msg("connection refused (logged once a minute per address)")
		return
	}
	t.hmu.Unlock()
}

// track wraps an established connection so its end, idleness and use are
// seen, and registers it under info.remote. release, if not nil, runs when
// the connection ends (inbound: its per-address slot).
func (t *transport) track(info *connInfo, tc net.Conn, release func()) {
	info.conn = &trackedConn{Conn: tc, idle: t.idleTimeout,
		onClose: func() {
			if release != nil {
				release()
			}
			t.ended(info)
		},
		busy: func() bool { return t.busy != nil && t.busy(info.remote) }}
	t.mu.Lock()
	t.conns[info.remote] = info
	t.mu.Unlock()
}

// ended forgets a connection and tells the B2BUA.
func (t *transport) ended(info *connInfo) {
	t.mu.Lock()
	if cur, ok := t.conns[info.remote]; ok && cur == info {
		delete(t.conns, info.remote)
	}
	t.mu.Unlock()
	t.log.Debug().Str("remote", info.remote).Msg("TLS connection ended")
	if t.onEnd != nil {
		t.onEnd(info.remote)
	}
}

// lookup returns what is known about the connection from remote.
func (t *transport) lookup(remote string) (*connInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.conns[remote]
	return c, ok
}

// alive reports whether a connection to remote is established.
func (t *transport) alive(remote string) bool {
	_, ok := t.lookup(remote)
	return ok
}

// dial returns an established, verified TLS connection to addr (ip:port),
// reusing one that exists. sni is the host name of the target (never an IP
// literal as SNI) and identity the name its certificate must carry.
func (t *transport) dial(ctx context.Context, addr, sni, identity string) error {
	for {
		t.mu.Lock()
		if c, ok := t.conns[addr]; ok {
			t.mu.Unlock()
			// Ours, or one the peer opened from this address (RFC
			// 5923-style reuse): either way only if it proved the identity.
			if c.trunkIdentityOK(identity) {
				return nil
			}
			return fmt.Errorf("%w: a connection to %s exists with another identity", ErrIdentity, addr)
		}
		if d, ok := t.dials[addr]; ok {
			t.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if d.err != nil {
				return d.err
			}
			continue
		}
		d := &dialCall{done: make(chan struct{})}
		t.dials[addr] = d
		t.mu.Unlock()
		d.err = t.dialNew(ctx, addr, sni, identity)
		t.mu.Lock()
		delete(t.dials, addr)
		t.mu.Unlock()
		close(d.done)
		return d.err
	}
}

func (c *connInfo) trunkIdentityOK(identity string) bool {
	if identity == "" {
		return true
	}
	for _, id := range c.identities {
		if id == identity {
			return true
		}
	}
	return false
}

func (t *transport) dialNew(ctx context.Context, addr, sni, identity string) error {
	hctx, cancel := context.WithTimeout(ctx, t.hsTimeout)
	defer cancel()
	d := net.Dialer{Control: dscpControl(t.dscp)}
	raw, err := d.DialContext(hctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, err)
	}
	conf := tlsconf.NewClientConfig(t.store, sni, identity, t.minTLS)
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = raw.Close()
		reason, why := tlsconf.Classify(err)
		t.metrics.TLSHandshakes.WithLabelValues("outbound", "refused", string(reason)).Inc()
		t.log.Warn().Str("remote", addr).Str("sni", sni).Str("identity", identity).
			Str("reason", string(reason)).Str("why", why).Msg("outbound TLS refused")
		return fmt.Errorf("%w: %s: %s (%s)", ErrTLS, addr, why, reason)
	}
	t.metrics.TLSHandshakes.WithLabelValues("outbound", "ok", "").Inc()
	cs := tc.ConnectionState()
	var ids []string
	if len(cs.PeerCertificates) > 0 {
		ids = tlsconf.Identities(cs.PeerCertificates[0])
	}
	if identity != "" {
		ids = appendUnique(ids, identity)
	}
	info := &connInfo{remote: addr, identities: ids, verified: true, outbound: true, sni: sni}
	t.track(info, tc, nil)
	t.log.Debug().Str("remote", addr).Str("sni", sni).Strs("identities", ids).
		Str("tls", tls.VersionName(cs.Version)).Msg("outbound TLS connection")
	if err := t.out.push(ctx, info.conn); err != nil {
		_ = info.conn.Close()
		return fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, err)
	}
	return nil
}

// keepaliveLoop sends RFC 5626 §4.4.1 CRLF-CRLF pings on every connection
// at the configured interval (sipgo answers pings and ignores pongs).
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
		t.mu.Lock()
		conns := make([]*trackedConn, 0, len(t.conns))
		for _, c := range t.conns {
			conns = append(conns, c.conn)
		}
		t.mu.Unlock()
		for _, c := range conns {
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(ping); err != nil {
				t.log.Debug().Err(err).Str("remote", c.RemoteAddr().String()).Msg("keepalive failed")
				_ = c.Close()
			}
			_ = c.SetWriteDeadline(time.Time{})
		}
	}
}

// closeAll closes every connection (shutdown).
func (t *transport) closeAll() {
	t.mu.Lock()
	conns := make([]*trackedConn, 0, len(t.conns))
	for _, c := range t.conns {
		conns = append(conns, c.conn)
	}
	t.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
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

// setDSCP marks a signalling socket (CS3 by default, RFC 4594).
func setDSCP(c net.Conn, dscp int) {
	if dscp <= 0 {
		return
	}
	_ = ipv4.NewConn(c).SetTOS(dscp << 2)
}

func dscpControl(dscp int) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if dscp <= 0 {
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TOS, dscp<<2)
		})
		if err != nil {
			return err
		}
		return serr
	}
}
