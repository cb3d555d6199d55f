package media

import (
	"fmt"
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// SetDSCP sets the DiffServ code point (0-63) of packets sent on c: the
// IPv4 TOS byte, or the IPv6 traffic class, is set to dscp<<2 (ECN bits
// zero). It works for UDP and TCP connections; a connection wrapping
// another (such as *tls.Conn, through its NetConn method) is unwrapped.
// Typical values: 46 (EF) for audio, 34 (AF41) for video, 24 (CS3) for SIP
// signalling. It is safe for concurrent use with I/O on c.
func SetDSCP(c net.Conn, dscp int) error {
	if dscp < 0 || dscp > 63 {
		return fmt.Errorf("media: invalid DSCP %d", dscp)
	}
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
		return fmt.Errorf("media: SetDSCP: unsupported connection %T", c)
	}
	tos := dscp << 2
	if ip.To4() != nil {
		if err := ipv4.NewConn(c).SetTOS(tos); err != nil {
			return fmt.Errorf("media: set IP_TOS: %w", err)
		}
		return nil
	}
	if err := ipv6.NewConn(c).SetTrafficClass(tos); err != nil {
		return fmt.Errorf("media: set IPV6_TCLASS: %w", err)
	}
	// A dual-stack socket may also carry IPv4; best effort.
	_ = ipv4.NewConn(c).SetTOS(tos)
	return nil
}
