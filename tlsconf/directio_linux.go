//go:build linux

package tlsconf

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DirectIO returns c with reads and writes that enter the kernel without
// the Go runtime's blocking-system-call bookkeeping; any other connection
// is returned as it is. The TLS sessions of the SIP transport run over it
// (inbound in sip, outbound in Dial).
//
// Why: a TCP socket from package net is non-blocking, so its read and
// write never block in the kernel, yet each goes through
// entersyscall/exitsyscall. When the process has been idle, the runtime's
// monitor thread (sysmon) sleeps, and the first such call after a wake-up
// wakes it with a futex; sysmon then polls every 20 µs until the process
// is idle again. At a few hundred calls per second, where the process
// wakes for nearly every SIP message, that cost 0.1 ms of CPU per call
// (about a seventh of edge-sbc's CPU at 500 calls/s, measured per thread;
// issue 14). The calls here use unix.RawSyscall, which the runtime allows
// for calls that do not block, and otherwise behave as net.TCPConn's:
//
//   - Read and Write wait in the netpoller (syscall.RawConn) when the
//     socket is not ready, and honour the connection's deadlines.
//   - Write writes all of b or returns an error, as net.Conn requires.
//   - Read returns io.EOF at the peer's FIN; errors are *net.OpError
//     wrapping the same values net's own are (os.ErrDeadlineExceeded,
//     net.ErrClosed, an *os.SyscallError).
//   - Nothing is allocated per call: the callbacks are bound once and
//     their state lives in the connection (one read and one write may run
//     at the same time, as on any net.Conn; crypto/tls never issues two
//     reads or two writes at once).
func DirectIO(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	d := &directConn{TCPConn: tc}
	d.rd.f, d.rd.wait = d.rd.read, rc.Read
	d.wr.f, d.wr.wait = d.wr.write, rc.Write
	return d
}

// directConn is a *net.TCPConn whose Read and Write use raw system calls
// (DirectIO). Every other method is the TCPConn's.
type directConn struct {
	*net.TCPConn
	rd directOp // owned by the one Read in progress
	wr directOp // owned by the one Write in progress
}

// directOp is the state of one raw read or write: the buffer, the bytes
// done and the errno, set inside the RawConn callback f; wait is the
// socket's RawConn.Read or RawConn.Write, which calls f until it is done.
type directOp struct {
	b     []byte
	n     int
	errno syscall.Errno
	f     func(fd uintptr) bool
	wait  func(func(fd uintptr) bool) error
}

// run performs the operation on b: the bytes done, the errno of the
// system call and the error of the wait (deadline, closed).
func (o *directOp) run(b []byte) (int, syscall.Errno, error) {
	o.b, o.n, o.errno = b, 0, 0
	err := o.wait(o.f)
	n, errno := o.n, o.errno
	o.b = nil
	return n, errno, err
}

func (o *directOp) read(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&o.b[0])), uintptr(len(o.b)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for readability
		}
		o.n, o.errno = int(n), e
		return true
	}
}

func (o *directOp) write(fd uintptr) bool {
	for o.n < len(o.b) {
		n, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&o.b[o.n])), uintptr(len(o.b)-o.n))
		switch e {
		case 0:
			o.n += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false // socket buffer full: wait for writability
		default:
			o.errno = e
			return true
		}
	}
	return true
}

func (c *directConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, errno, err := c.rd.run(b)
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *directConn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, errno, err := c.wr.run(b)
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

func (c *directConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
