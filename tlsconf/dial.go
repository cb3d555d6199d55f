package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"syscall"
	"time"
)

// DialOptions describe one outbound SIP-over-TLS connection.
type DialOptions struct {
	// Addr is the target's "ip:port".
	Addr string
	// SNI is the target's host name (dnsresolve.Target.Host). An IP
	// literal is never sent as SNI (see NewClientConfig).
	SNI string
	// Identity is the name the peer's certificate must carry
	// (MatchIdentity); empty means SNI.
	Identity string
	// Store holds our certificate (offered when the server asks) and the
	// roots the server's chain must verify to. Required.
	Store *Store
	// MinVersion is the TLS floor, as for NewClientConfig.
	MinVersion uint16
	// Timeout bounds the TCP connect and the handshake together; zero
	// leaves the bound to ctx.
	Timeout time.Duration
	// Control, when set, runs on the socket before it connects, e.g.
	// media.DSCPControl to mark signalling packets.
	Control func(network, address string, c syscall.RawConn) error
}

// ConnectError is returned by Dial when the TCP connection could not be
// made; no TLS was attempted. Its text is that of the dial error.
type ConnectError struct {
	Addr string
	Err  error
}

func (e *ConnectError) Error() string { return e.Err.Error() }
func (e *ConnectError) Unwrap() error { return e.Err }

// HandshakeError is returned by Dial when the TCP connection was made but
// the TLS handshake failed or the server's certificate was refused.
// Classify gives its reason (expired, unknown_ca, wrong_name, ...); its
// text is that of the handshake error.
type HandshakeError struct {
	Addr string
	// Peer is the chain the server presented, leaf first; nil when the
	// handshake ended before the server's certificate was seen.
	Peer []*x509.Certificate
	Err  error
}

func (e *HandshakeError) Error() string { return e.Err.Error() }
func (e *HandshakeError) Unwrap() error { return e.Err }

// Dial opens the outbound TLS connection the B2BUA makes toward a trunk
// target, and that `edge-sbc check` makes to test it: a TCP connect to
// o.Addr (with o.Control), then a client handshake with NewClientConfig(
// o.Store, o.SNI, o.Identity, o.MinVersion), i.e. the server's chain is
// verified to the Store's roots and its leaf must carry o.Identity (else
// o.SNI). It returns the TLS connection and the TCP connection under it
// (close raw to drop the connection without waiting for a close_notify).
// On failure nothing stays open and the error is a *ConnectError or a
// *HandshakeError.
func Dial(ctx context.Context, o DialOptions) (conn *tls.Conn, raw net.Conn, err error) {
	if o.Store == nil {
		return nil, nil, errors.New("tlsconf: Dial: no Store")
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	d := net.Dialer{Control: o.Control}
	raw, err = d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, nil, &ConnectError{Addr: o.Addr, Err: err}
	}
	cfg := NewClientConfig(o.Store, o.SNI, o.Identity, o.MinVersion)
	// VerifyConnection runs inside HandshakeContext, on this goroutine.
	var peer []*x509.Certificate
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		peer = cs.PeerCertificates
		return verify(cs)
	}
	raw = DirectIO(raw)
	conn = tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, nil, &HandshakeError{Addr: o.Addr, Peer: peer, Err: err}
	}
	return conn, raw, nil
}
