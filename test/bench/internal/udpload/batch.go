//go:build linux

// Package udpload generates and measures UDP media load on loopback for the
// edge-sbc benchmarks: sender goroutines, one receiver goroutine per
// receiving socket, and a bare recvmmsg/sendmmsg forwarder used as the
// baseline of the relay.
package udpload

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BatchSize and BufSize are those of the media relay (media/relay.go).
const (
	BatchSize = 8
	BufSize   = 2048
	slotSize  = BufSize + 64
	saLen     = 28
)

// mmsghdr mirrors struct mmsghdr; Go pads it like C on Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// batch is the recvmmsg/sendmmsg state of one goroutine.
type batch struct {
	rc    syscall.RawConn
	out   syscall.RawConn
	bufs  []byte
	names [BatchSize][saLen]byte
	riov  [BatchSize]unix.Iovec
	rhs   [BatchSize]mmsghdr
	siov  [BatchSize]unix.Iovec
	shs   [BatchSize]mmsghdr
	nsend int
	off   int
	n     int
	errno syscall.Errno
	recvF func(uintptr) bool
	sendF func(uintptr) bool
}

// newBatch prepares batched I/O receiving on own and sending through out
// (either may be nil).
func newBatch(own, out *net.UDPConn) (*batch, error) {
	b := &batch{bufs: make([]byte, BatchSize*slotSize)}
	var err error
	if own != nil {
		if b.rc, err = own.SyscallConn(); err != nil {
			return nil, err
		}
	}
	if out != nil {
		if b.out, err = out.SyscallConn(); err != nil {
			return nil, err
		}
	}
	for i := range BatchSize {
		b.riov[i].Base = &b.bufs[i*slotSize]
		b.riov[i].SetLen(BufSize)
		b.rhs[i].hdr.Iov = &b.riov[i]
		b.rhs[i].hdr.SetIovlen(1)
		b.rhs[i].hdr.Name = &b.names[i][0]
		b.shs[i].hdr.Iov = &b.siov[i]
		b.shs[i].hdr.SetIovlen(1)
	}
	b.recvF = b.doRecv
	b.sendF = b.doSend
	return b, nil
}

func (b *batch) buf(i int) []byte {
	return b.bufs[i*slotSize : i*slotSize+int(b.rhs[i].len) : (i+1)*slotSize]
}

// slot returns the whole buffer of slot i (for senders).
func (b *batch) slot(i int) []byte { return b.bufs[i*slotSize : (i+1)*slotSize] }

func (b *batch) recv() (int, error) {
	for i := range b.rhs {
		b.rhs[i].hdr.Namelen = saLen
		b.rhs[i].hdr.Flags = 0
		b.rhs[i].len = 0
	}
	b.n, b.errno = 0, 0
	if err := b.rc.Read(b.recvF); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, b.errno
	}
	return b.n, nil
}

func (b *batch) doRecv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.rhs[0])), BatchSize, 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		b.n, b.errno = int(n), e
		return true
	}
}

// queue schedules n bytes of slot i for sending to the raw address sa
// (nil: the socket is connected).
func (b *batch) queue(i, n int, sa *[saLen]byte, salen uint32) {
	j := b.nsend
	b.siov[j].Base = &b.bufs[i*slotSize]
	b.siov[j].SetLen(n)
	if sa != nil {
		b.shs[j].hdr.Name = &sa[0]
		b.shs[j].hdr.Namelen = salen
	} else {
		b.shs[j].hdr.Name = nil
		b.shs[j].hdr.Namelen = 0
	}
	b.nsend++
}

// flush sends the queued datagrams; it returns how many were refused.
func (b *batch) flush() (failed int) {
	for b.off = 0; b.off < b.nsend; {
		b.n, b.errno = 0, 0
		if err := b.out.Write(b.sendF); err != nil {
			failed += b.nsend - b.off
			break
		}
		if b.errno != 0 {
			failed++
			b.off++
			continue
		}
		b.off += b.n
	}
	b.nsend = 0
	return failed
}

func (b *batch) doSend(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.shs[b.off])), uintptr(b.nsend-b.off), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		b.n, b.errno = int(n), e
		if e == 0 && n == 0 {
			b.errno = unix.EIO
		}
		return true
	}
}

// rawAddr is the sockaddr_in of an IPv4 UDP address.
func rawAddr(a *net.UDPAddr) (sa [saLen]byte, salen uint32) {
	sa[0], sa[1] = byte(unix.AF_INET), 0 // little endian sa_family
	if nativeBigEndian {
		sa[0], sa[1] = 0, byte(unix.AF_INET)
	}
	sa[2], sa[3] = byte(a.Port>>8), byte(a.Port)
	copy(sa[4:8], a.IP.To4())
	return sa, 16
}

var nativeBigEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 0
}()

// CPUTime returns user+system CPU seconds of this process (getrusage
// RUSAGE_SELF).
func CPUTime() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
