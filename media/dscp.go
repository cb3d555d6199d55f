package media

import (
	"fmt"
	"net"
	"syscall"
)

// DSCP marking is done here once for every socket of the SBC: the relay's
// UDP sockets (SetDSCP), accepted SIP connections (SetDSCP) and dialed SIP
// connections (DSCPControl, before they connect). All three set the IPv4
// TOS byte, or the IPv6 traffic class, to dscp<<2 (ECN bits zero) with the
// same setsockopt (dscp_unix.go).

// SetDSCP sets the DiffServ code point (0-63) of packets sent on c: the
// IPv4 TOS byte, or the IPv6 traffic class, is set to dscp<<2 (ECN bits
// zero). It works for UDP and TCP connections; a connection wrapping
// another (such as *tls.Conn, through its NetConn method) is unwrapped.
// Typical values: 46 (EF) for audio, 34 (AF41) for video, 24 (CS3) for SIP
// signalling. It is safe for concurrent use with I/O on c.
func SetDSCP(c net.Conn, dscp int) error {
	if err := checkDSCP(dscp); err != nil {
		return err
	}
	rc, v6, err := rawConn(c)
	if err != nil {
		return err
	}
	return setTOS(rc, v6, dscp<<2)
}

// GetDSCP returns the DiffServ code point set on c (as SetDSCP sets it),
// read back from the socket.
func GetDSCP(c net.Conn) (int, error) {
	rc, v6, err := rawConn(c)
	if err != nil {
		return 0, err
	}
	tos, err := getTOS(rc, v6)
	return tos >> 2, err
}

// DSCPControl returns a net.Dialer (or net.ListenConfig) Control function
// that marks the socket with dscp before it connects, as SetDSCP marks an
// established one; nil when dscp is 0 or negative (best effort, nothing to
// set). A dscp above 63 makes the dial fail.
func DSCPControl(dscp int) func(network, address string, c syscall.RawConn) error {
	if dscp <= 0 {
		return nil
	}
	return func(network, _ string, c syscall.RawConn) error {
		if err := checkDSCP(dscp); err != nil {
			return err
		}
		return setTOS(c, network == "tcp6" || network == "udp6", dscp<<2)
	}
}

func checkDSCP(dscp int) error {
	if dscp < 0 || dscp > 63 {
		return fmt.Errorf("media: invalid DSCP %d", dscp)
	}
	return nil
}

// rawConn returns c's socket (unwrapping *tls.Conn and the like) and
// whether it is an IPv6 socket.
func rawConn(c net.Conn) (syscall.RawConn, bool, error) {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	var ip net.IP
	switch a := c.LocalAddr().(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	default:
		return nil, false, fmt.Errorf("media: DSCP: unsupported connection %T", c)
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false, fmt.Errorf("media: DSCP: %T has no socket", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false, fmt.Errorf("media: DSCP: %w", err)
	}
	return rc, ip.To4() == nil, nil
}
