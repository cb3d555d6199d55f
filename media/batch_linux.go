//go:build linux

package media

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr mirrors struct mmsghdr (a msghdr followed by the byte count);
// Go pads it like C on every Linux architecture.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// batchIO is the batched datagram I/O of one reader goroutine: recvmmsg
// into batchSize preallocated buffers, then sendmmsg of the accepted
// packets, from the same buffers, through the peer socket.
//
// golang.org/x/net/ipv4.PacketConn.ReadBatch is not used on the read path:
// it allocates a net.IP and a *net.UDPAddr for every received message, two
// allocations per packet. The raw calls below use message headers, iovecs
// and socket address buffers prepared once, bound method values for
// syscall.RawConn, and decode the source into a netip.AddrPort, so the
// steady state allocates nothing.
//
// recvmmsg and sendmmsg are issued with unix.RawSyscall6: the sockets are
// non-blocking, so the calls never block, and skipping the runtime's
// blocking-call bookkeeping spares the wake-up of its monitor thread that
// the first system call after an idle spell costs (see tlsconf.DirectIO).
//
// A batchIO is owned by one goroutine and is not safe for concurrent use.
type batchIO struct {
	rc    syscall.RawConn // own socket: recvmmsg
	peer  syscall.RawConn // peer socket: sendmmsg
	pool  *slotPool       // where buffers are borrowed from (nil: own buffers)
	cur   *slotBuf        // the buffers of the batch in hand; nil while parked
	slots int             // buffers used per batch, at most batchSize
	names [batchSize][sockaddrLen]byte
	riov  [batchSize]unix.Iovec
	rhs   [batchSize]mmsghdr
	siov  [batchSize]unix.Iovec
	shs   [batchSize]mmsghdr
	nsend int

	// results of the last raw call, set inside the RawConn callbacks
	n     int
	errno syscall.Errno
	off   int

	recvF func(uintptr) bool
	sendF func(uintptr) bool
}

func newBatchIO(own, peer *net.UDPConn, slots int, pool *slotPool) (*batchIO, error) {
	b := &batchIO{pool: pool}
	if pool == nil {
		b.cur = new(slotBuf)
	}
	b.recvF = b.doRecv
	b.sendF = b.doSend
	if err := b.rebind(own, peer, slots); err != nil {
		return nil, err
	}
	return b, nil
}

// rebind points b at the sockets of another reader: a batchIO is reused
// across streams (Engine.newBatchIO), its headers already linked.
func (b *batchIO) rebind(own, peer *net.UDPConn, slots int) error {
	rc, err := own.SyscallConn()
	if err != nil {
		return err
	}
	prc, err := peer.SyscallConn()
	if err != nil {
		return err
	}
	b.rc, b.peer, b.nsend = rc, prc, 0
	b.slots = min(max(slots, 1), batchSize)
	if b.pool == nil {
		b.bind()
	}
	for i := range b.slots {
		b.riov[i].SetLen(bufSize)
		b.rhs[i].hdr.Iov = &b.riov[i]
		b.rhs[i].hdr.SetIovlen(1)
		b.rhs[i].hdr.Name = &b.names[i][0]
		b.shs[i].hdr.Iov = &b.siov[i]
		b.shs[i].hdr.SetIovlen(1)
	}
	return nil
}

// unbind lets go of the sockets and of any borrowed buffers, before b is
// kept for another reader.
func (b *batchIO) unbind() {
	b.giveBack()
	b.rc, b.peer = nil, nil
}

// bind points the receive vectors at the buffers in hand.
func (b *batchIO) bind() {
	for i := range b.slots {
		b.riov[i].Base = &b.cur[i*slotSize]
	}
}

// borrow takes buffers for a receive attempt; giveBack returns them once
// the batch is sent (or nothing arrived). A reader parked in the netpoller
// holds no buffers: idle streams cost no buffer memory.
func (b *batchIO) borrow() {
	if b.cur == nil {
		b.cur = b.pool.get()
		b.bind()
	}
}

func (b *batchIO) giveBack() {
	if b.pool != nil && b.cur != nil {
		for i := range b.slots {
			b.riov[i].Base = nil
		}
		b.pool.put(b.cur)
		b.cur = nil
	}
}

// recv blocks (in the netpoller) until at least one datagram is available
// and returns how many were received.
func (b *batchIO) recv() (int, error) {
	for i := range b.slots {
		b.rhs[i].hdr.Namelen = sockaddrLen
		b.rhs[i].hdr.Flags = 0
		b.rhs[i].len = 0
	}
	b.n, b.errno = 0, 0
	if err := b.rc.Read(b.recvF); err != nil {
		b.giveBack()
		return 0, err
	}
	if b.errno != 0 {
		b.giveBack()
		return 0, b.errno
	}
	return b.n, nil
}

func (b *batchIO) doRecv(fd uintptr) bool {
	b.borrow()
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&b.rhs[0])), uintptr(b.slots), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			b.giveBack()
			return false // wait for readability, without buffers
		}
		b.n, b.errno = int(n), e
		return true
	}
}

// buf returns the i-th received datagram. Its capacity extends to the end
// of its slot: srtpHeadroom bytes at least, for in-place SRTP protection.
func (b *batchIO) buf(i int) []byte {
	return b.cur[i*slotSize : i*slotSize+int(b.rhs[i].len) : (i+1)*slotSize]
}

// truncated reports whether the i-th datagram did not fit its buffer.
func (b *batchIO) truncated(i int) bool {
	return b.rhs[i].hdr.Flags&unix.MSG_TRUNC != 0
}

// src returns the source address of the i-th datagram.
func (b *batchIO) src(i int) netip.AddrPort {
	return parseSockaddr(&b.names[i])
}

// queue schedules the i-th received datagram, n bytes from the start of its
// slot (its length may have changed in place), for sending to dst.
// dst must stay unmodified until flush returns (endpoints are immutable).
func (b *batchIO) queue(i, n int, dst *endpoint) {
	j := b.nsend
	b.siov[j].Base = &b.cur[i*slotSize]
	b.siov[j].SetLen(n)
	b.shs[j].hdr.Name = &dst.sa[0]
	b.shs[j].hdr.Namelen = dst.salen
	b.nsend++
}

// flush sends the queued datagrams through the peer socket and returns
// how many the kernel refused. A closed peer socket refuses all.
func (b *batchIO) flush() (failed int) {
	for b.off = 0; b.off < b.nsend; {
		b.n, b.errno = 0, 0
		if err := b.peer.Write(b.sendF); err != nil {
			failed += b.nsend - b.off
			break
		}
		if b.errno != 0 {
			failed++ // skip the message the kernel refused
			b.off++
			continue
		}
		b.off += b.n
	}
	for j := range b.nsend {
		b.shs[j].hdr.Name = nil // do not keep old endpoints alive
		b.siov[j].Base = nil
	}
	b.nsend = 0
	b.giveBack()
	return failed
}

func (b *batchIO) doSend(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&b.shs[b.off])), uintptr(b.nsend-b.off), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // socket buffer full: wait for writability
		}
		b.n, b.errno = int(n), e
		if e == 0 && n == 0 {
			b.errno = unix.EIO // no progress; never spin
		}
		return true
	}
}

// isClosed reports whether err means the socket was closed.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
