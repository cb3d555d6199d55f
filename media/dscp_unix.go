//go:build unix

package media

import (
	"fmt"
	"syscall"
)

// setTOS sets IP_TOS, or IPV6_TCLASS on an IPv6 socket (and, best effort,
// IP_TOS too: a dual-stack socket may also carry IPv4), to tos.
func setTOS(rc syscall.RawConn, v6 bool, tos int) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if !v6 {
			if err := syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TOS, tos); err != nil {
				serr = fmt.Errorf("media: set IP_TOS: %w", err)
			}
			return
		}
		if err := syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_TCLASS, tos); err != nil {
			serr = fmt.Errorf("media: set IPV6_TCLASS: %w", err)
			return
		}
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TOS, tos)
	})
	if err != nil {
		return fmt.Errorf("media: DSCP: %w", err)
	}
	return serr
}

// getTOS reads IP_TOS, or IPV6_TCLASS on an IPv6 socket.
func getTOS(rc syscall.RawConn, v6 bool) (int, error) {
	level, opt, name := syscall.IPPROTO_IP, syscall.IP_TOS, "IP_TOS"
	if v6 {
		level, opt, name = syscall.IPPROTO_IPV6, syscall.IPV6_TCLASS, "IPV6_TCLASS"
	}
	var (
		tos  int
		serr error
	)
	err := rc.Control(func(fd uintptr) {
		tos, serr = syscall.GetsockoptInt(int(fd), level, opt)
	})
	if err != nil {
		return 0, fmt.Errorf("media: DSCP: %w", err)
	}
	if serr != nil {
		return 0, fmt.Errorf("media: get %s: %w", name, serr)
	}
	return tos, nil
}
