package readiness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/media"
)

var (
	checkListen = check{
		id:          "local.listen",
		requirement: "the SIPS listener address can be bound (Webex calls in on TCP 5061, 5062 with mutual TLS)",
		level:       LevelMust,
	}
	checkMediaPorts = check{
		id:          "local.media_ports",
		requirement: "the media port range (UDP, RTP on even ports, RTCP on the next) can be bound",
		level:       LevelMust,
	}
	checkDSCP = check{
		id:          "local.dscp",
		requirement: "DSCP can be set on media sockets (audio EF 46, video AF41 34, BFCP CS3 24 like signalling)",
		level:       LevelShould,
	}
	checkLearning = check{
		id:          "local.media_learning",
		requirement: "the relay takes media only from the parties of a call (media.learning heuristic or strict), so a stranger cannot take a stream over",
		level:       LevelShould,
	}
)

// checkLocal checks what this host must allow: binding every listener
// address and the media port range, and marking media packets with DSCP.
// The listener check runs first: it records whether edge-sbc itself is
// running, which explains ports that are in use.
func checkLocal(ctx context.Context, e *env) []Result {
	var out []Result
	for _, l := range e.cfg.Listen {
		out = append(out, checkListenAddr(ctx, e, l))
	}
	out = append(out, checkMediaRange(e))
	out = append(out, checkDSCPMarking(e.cfg))
	out = append(out, checkMediaLearning(e.cfg))
	return out
}

func checkListenAddr(ctx context.Context, e *env, l config.Listen) Result {
	c := checkListen.on(l.Addr)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", l.Addr)
	if err == nil {
		bound := ln.Addr().String()
		_ = ln.Close()
		return c.ok("bound and released %s (client_auth %s)", bound, l.ClientAuth)
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		if heldBySBC(ctx, e, l.Addr) {
			e.sbcRunning = true
			return c.warn("in use — is edge-sbc already running? (the process on %s presents our certificate)", l.Addr)
		}
		return c.miss("in use by another process: %v", err)
	case errors.Is(err, syscall.EACCES):
		return c.miss("permission denied: ports below 1024 need CAP_NET_BIND_SERVICE (systemd AmbientCapabilities=CAP_NET_BIND_SERVICE): %v", err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return c.miss("the address is not configured on this host: %v", err)
	default:
		return c.miss("%v", err)
	}
}

// heldBySBC reports whether the TLS server on addr presents our own leaf
// certificate, i.e. whether edge-sbc itself holds the address. A wildcard
// address is probed on the loopback address of its family.
func heldBySBC(ctx context.Context, e *env, addr string) bool {
	if e.store == nil {
		return false
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false
	}
	ip := ap.Addr()
	if ip.IsUnspecified() {
		ip = netip.IPv6Loopback()
		if ap.Addr().Is4() {
			ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, ap.Port()).String())
	if err != nil {
		return false
	}
	defer conn.Close()
	var peer []byte
	tc := tls.Client(conn, &tls.Config{
		// Nothing is sent over this connection: only the leaf the server
		// presents is compared, byte for byte, with ours.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				peer = raw[0]
			}
			return nil
		},
	})
	_ = tc.HandshakeContext(ctx) // a required client certificate may fail it after we saw the leaf
	_ = tc.Close()
	ours := e.store.Certificate().Certificate
	return len(peer) > 0 && len(ours) > 0 && bytes.Equal(peer, ours[0])
}

// checkMediaRange binds the RTP/RTCP pair at the first, middle and last even
// port of media.port_range on media.bind.
func checkMediaRange(e *env) Result {
	c := checkMediaPorts.on(e.cfg.Media.PortRange)
	lo, hi, err := config.ParsePortRange(e.cfg.Media.PortRange)
	if err != nil {
		return c.miss("%v", err)
	}
	bind, err := netip.ParseAddr(e.cfg.Media.Bind)
	if err != nil {
		return c.miss("media.bind %q: %v", e.cfg.Media.Bind, err)
	}
	if err := media.CheckBindAddress(bind); errors.Is(err, media.ErrAddressNotLocal) {
		return c.miss("media.bind %s is not an address of this host (a keepalived address on the other node?): calls get 503 until it is", bind)
	}
	var ok, bad []string
	inUse := false
	for _, p := range samplePorts(lo, hi) {
		if err := bindPair(bind, p); err != nil {
			bad = append(bad, fmt.Sprintf("%d: %v", p, err))
			inUse = inUse || errors.Is(err, syscall.EADDRINUSE)
			continue
		}
		ok = append(ok, fmt.Sprintf("%d/%d", p, p+1))
	}
	switch {
	case len(bad) == 0:
		return c.ok("bound UDP %s on %s (sampled first, middle, last pair)", strings.Join(ok, ", "), bind)
	case inUse && e.sbcRunning:
		return c.warn("in use — is edge-sbc already running (a call in progress)? %s", strings.Join(bad, "; "))
	default:
		return c.miss("cannot bind on %s: %s", bind, strings.Join(bad, "; "))
	}
}

// samplePorts returns the first, middle and last even base port of a pair
// (P, P+1) inside [lo, hi], without duplicates.
func samplePorts(lo, hi int) []int {
	first := lo + lo%2
	last := hi - 1
	last -= last % 2
	if last < first {
		return nil
	}
	mid := first + (last-first)/2
	mid -= mid % 2
	out := []int{first}
	for _, p := range []int{mid, last} {
		if p != out[len(out)-1] {
			out = append(out, p)
		}
	}
	return out
}

// bindPair binds UDP port p and p+1 on ip, then releases both.
func bindPair(ip netip.Addr, p int) error {
	var held []*net.UDPConn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	for _, port := range []int{p, p + 1} {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err != nil {
			return fmt.Errorf("port %d: %w", port, err)
		}
		held = append(held, c)
	}
	return nil
}

// checkDSCPMarking opens a UDP socket on media.bind, sets the code points
// the relay uses (audio, video, and the signalling one the relay gives
// BFCP) with media.SetDSCP, as the relay does, and reads each back.
func checkDSCPMarking(cfg *config.Config) Result {
	c := checkDSCP
	bind, err := netip.ParseAddr(cfg.Media.Bind)
	if err != nil {
		return c.miss("media.bind %q: %v", cfg.Media.Bind, err)
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, 0)))
	if err != nil {
		return c.miss("cannot open a UDP socket on %s: %v", bind, err)
	}
	defer conn.Close()
	var done []string
	for _, k := range []struct {
		name string
		dscp int
	}{{"audio", cfg.Media.DSCP.Audio}, {"video", cfg.Media.DSCP.Video}, {"BFCP", cfg.Media.DSCP.Signalling}} {
		if err := media.SetDSCP(conn, k.dscp); err != nil {
			return c.miss("setting %s DSCP %d failed: %v", k.name, k.dscp, err)
		}
		got, err := media.GetDSCP(conn)
		if err != nil {
			return c.miss("reading back %s DSCP %d failed: %v", k.name, k.dscp, err)
		}
		if got != k.dscp {
			return c.miss("%s DSCP set to %d but the socket reports %d", k.name, k.dscp, got)
		}
		done = append(done, fmt.Sprintf("%s %d", k.name, k.dscp))
	}
	return c.ok("set and read back %s on a UDP socket (whether the network honours DSCP is not tested here)", strings.Join(done, ", "))
}

// checkMediaLearning warns when media.learning is off: the relay then
// follows any new source at once.
func checkMediaLearning(cfg *config.Config) Result {
	c := checkLearning
	mode, err := media.ParseLearningMode(cfg.Media.Learning)
	switch {
	case err != nil:
		return c.miss("media.learning: %v", err)
	case cfg.Media.StrictSource || mode == media.LearningStrict:
		return c.ok("strict: media only from the address:port signalled in SDP")
	case mode == media.LearningOff:
		return c.miss("media.learning: off lets anyone who guesses a relay port take over a stream")
	}
	return c.ok("heuristic: sources learned after each SDP, then locked; NAT rebinds need the stream's SSRC")
}
