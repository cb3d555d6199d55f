package media

import (
	"encoding/binary"
	"net/netip"
)

// sockaddrLen is the size of the largest raw socket address we handle
// (struct sockaddr_in6).
const sockaddrLen = 28

// Address families, as in Linux struct sockaddr (AF_INET, AF_INET6).
// Only the batch I/O on Linux uses the raw form.
const (
	afInet  = 2
	afInet6 = 10
)

// endpoint is an immutable remote transport address plus its raw socket
// address form, prepared once so that sending does not allocate. Endpoints
// are published through atomic.Pointer and never modified after that.
type endpoint struct {
	ap    netip.AddrPort
	sa    [sockaddrLen]byte
	salen uint32
}

// newEndpoint prepares ap for a socket of the given family (IPv6 sockets
// get IPv4 destinations as v4-mapped addresses).
func newEndpoint(ap netip.AddrPort, v6sock bool) *endpoint {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	e := &endpoint{ap: ap}
	if !v6sock && ap.Addr().Is4() {
		binary.NativeEndian.PutUint16(e.sa[0:2], afInet)
		binary.BigEndian.PutUint16(e.sa[2:4], ap.Port())
		a4 := ap.Addr().As4()
		copy(e.sa[4:8], a4[:])
		e.salen = 16
		return e
	}
	binary.NativeEndian.PutUint16(e.sa[0:2], afInet6)
	binary.BigEndian.PutUint16(e.sa[2:4], ap.Port())
	a16 := ap.Addr().As16()
	copy(e.sa[8:24], a16[:])
	e.salen = sockaddrLen
	return e
}

// parseSockaddr decodes a raw sockaddr_in or sockaddr_in6 without
// allocating. v4-mapped IPv6 addresses are unmapped.
func parseSockaddr(b *[sockaddrLen]byte) netip.AddrPort {
	port := binary.BigEndian.Uint16(b[2:4])
	switch binary.NativeEndian.Uint16(b[0:2]) {
	case afInet:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case afInet6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), port)
	}
	return netip.AddrPort{}
}
