//go:build !linux

package media

import (
	"errors"
	"net"
	"net/netip"
)

// batchIO is the portable fallback of the Linux recvmmsg/sendmmsg batch
// I/O: one datagram per system call, still without allocation
// (ReadFromUDPAddrPort / WriteToUDPAddrPort). Owned by one goroutine.
type batchIO struct {
	own, peer *net.UDPConn
	bufs      []byte
	n         int
	trunc     bool
	from      netip.AddrPort
	nsend     int
	dst       *endpoint
}

func newBatchIO(own, peer *net.UDPConn, _ int, _ *slotPool) (*batchIO, error) {
	return &batchIO{own: own, peer: peer, bufs: make([]byte, slotSize)}, nil
}

func (b *batchIO) rebind(own, peer *net.UDPConn, _ int) error {
	b.own, b.peer, b.nsend = own, peer, 0
	return nil
}

func (b *batchIO) unbind() { b.own, b.peer = nil, nil }

func (b *batchIO) recv() (int, error) {
	n, from, err := b.own.ReadFromUDPAddrPort(b.bufs[:bufSize+1])
	if err != nil {
		return 0, err
	}
	b.n, b.from, b.trunc = n, from, n > bufSize
	return 1, nil
}

func (b *batchIO) buf(int) []byte     { return b.bufs[:b.n:slotSize] }
func (b *batchIO) truncated(int) bool { return b.trunc }
func (b *batchIO) src(int) netip.AddrPort {
	return netip.AddrPortFrom(b.from.Addr().Unmap(), b.from.Port())
}
func (b *batchIO) queue(_, n int, dst *endpoint) { b.nsend, b.n, b.dst = 1, n, dst }

func (b *batchIO) flush() int {
	if b.nsend == 0 {
		return 0
	}
	b.nsend = 0
	if _, err := b.peer.WriteToUDPAddrPort(b.bufs[:b.n], b.dst.ap); err != nil {
		return 1
	}
	return 0
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
