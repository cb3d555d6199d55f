package fastpath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// route is where the kernel sends a datagram to an address.
type route struct {
	ifindex int
	src     netip.Addr // preferred source address
	local   bool       // the destination is an address of this host
}

// lookupRoute asks the kernel (RTM_GETROUTE, as `ip route get` does) how it
// would send an IPv4 datagram to dst.
func lookupRoute(dst netip.Addr) (route, error) {
	if !dst.Is4() {
		return route{}, fmt.Errorf("fastpath: route to %v: not IPv4", dst)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return route{}, fmt.Errorf("fastpath: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return route{}, fmt.Errorf("fastpath: netlink bind: %w", err)
	}
	// nlmsghdr (16) + rtmsg (12) + RTA_DST (4 + 4).
	const reqLen = unix.SizeofNlMsghdr + unix.SizeofRtMsg + unix.SizeofRtAttr + 4
	var req [reqLen]byte
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], reqLen)
	ne.PutUint16(req[4:], unix.RTM_GETROUTE)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // sequence
	rt := req[unix.SizeofNlMsghdr:]
	rt[0] = unix.AF_INET // family
	rt[1] = 32           // dst_len
	attr := rt[unix.SizeofRtMsg:]
	ne.PutUint16(attr[0:], unix.SizeofRtAttr+4)
	ne.PutUint16(attr[2:], unix.RTA_DST)
	a4 := dst.As4()
	copy(attr[4:], a4[:])
	if err := unix.Sendto(fd, req[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return route{}, fmt.Errorf("fastpath: route to %v: %w", dst, err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return route{}, fmt.Errorf("fastpath: route to %v: %w", dst, err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return route{}, fmt.Errorf("fastpath: route to %v: %w", dst, err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if errno := int32(ne.Uint32(m.Data)); errno != 0 {
					return route{}, fmt.Errorf("fastpath: route to %v: %w", dst, syscall.Errno(-errno))
				}
			}
		case unix.RTM_NEWROUTE:
			if len(m.Data) < unix.SizeofRtMsg {
				continue
			}
			r := route{local: m.Data[7] == unix.RTN_LOCAL} // rtm_type
			attrs, err := syscall.ParseNetlinkRouteAttr(&m)
			if err != nil {
				return route{}, fmt.Errorf("fastpath: route to %v: %w", dst, err)
			}
			for _, a := range attrs {
				switch a.Attr.Type {
				case unix.RTA_OIF:
					if len(a.Value) >= 4 {
						r.ifindex = int(ne.Uint32(a.Value))
					}
				case unix.RTA_PREFSRC:
					if ip, ok := netip.AddrFromSlice(a.Value); ok {
						r.src = ip.Unmap()
					}
				}
			}
			if r.ifindex == 0 {
				return route{}, fmt.Errorf("fastpath: route to %v: no output interface", dst)
			}
			if r.local && !r.src.IsValid() {
				r.src = dst
			}
			return r, nil
		}
	}
	return route{}, fmt.Errorf("fastpath: route to %v: no answer", dst)
}
