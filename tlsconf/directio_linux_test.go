//go:build linux

package tlsconf

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection, the first
// wrapped with DirectIO; both are closed at cleanup.
func tcpPair(t *testing.T) (direct net.Conn, peer *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
	direct = DirectIO(c)
	if _, ok := direct.(*directConn); !ok {
		t.Fatalf("DirectIO returned %T for a *net.TCPConn", direct)
	}
	return direct, s.(*net.TCPConn)
}

// TestDirectIOStream: 8 MiB each way at once, far more than the socket
// buffers hold, so writes wait for the peer (partial writes, EAGAIN) and
// reads wait for data; every byte arrives in order.
func TestDirectIOStream(t *testing.T) {
	d, p := tcpPair(t)
	out, in := make([]byte, 8<<20), make([]byte, 8<<20)
	_, _ = rand.Read(out)
	_, _ = rand.Read(in)
	var wg sync.WaitGroup
	var gotAtPeer, gotDirect []byte
	var errs [4]error
	wg.Go(func() { _, errs[0] = d.Write(out) })
	wg.Go(func() { _, errs[1] = p.Write(in) })
	wg.Go(func() { gotAtPeer, errs[2] = readN(p, len(out)) })
	wg.Go(func() { gotDirect, errs[3] = readN(d, len(in)) })
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	if !bytes.Equal(gotAtPeer, out) || !bytes.Equal(gotDirect, in) {
		t.Fatal("bytes differ")
	}
	// The peer's FIN is io.EOF, as on a net.TCPConn.
	_ = p.CloseWrite()
	if n, err := d.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("after FIN: %d, %v; want 0, io.EOF", n, err)
	}
}

func readN(c net.Conn, n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := io.ReadFull(c, b)
	return b, err
}

// TestDirectIOErrors: deadlines and Close end a waiting Read or Write
// with the errors net's own connections give.
func TestDirectIOErrors(t *testing.T) {
	d, p := tcpPair(t)
	_ = d.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := d.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v", err)
	}
	if el := time.Since(start); el < 40*time.Millisecond || el > time.Second {
		t.Fatalf("deadline after %v", el)
	}
	_ = d.SetReadDeadline(time.Time{})

	// A write the peer does not read waits, then times out with the
	// bytes written so far.
	big := make([]byte, 64<<20) // before the deadline: under -race this takes a while
	_ = d.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := d.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n <= 0 || n >= 64<<20 {
		t.Fatalf("blocked write: %d, %v", n, err)
	}
	_ = d.SetWriteDeadline(time.Time{})

	// Close from another goroutine ends a waiting Read.
	done := make(chan error, 1)
	go func() {
		_, err := d.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = d.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end the Read")
	}
	if _, err := d.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}

	// A reset by the peer is a syscall error, not EOF.
	d2, p2 := tcpPair(t)
	_ = p2.SetLinger(0)
	_ = p2.Close()
	var rerr error
	for range 100 {
		if _, rerr = d2.Write([]byte("after reset")); rerr != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	var se *os.SyscallError
	if !errors.As(rerr, &se) {
		t.Fatalf("write to a reset connection: %v", rerr)
	}
	_ = p
}

// TestDirectIOTLS: a TLS session runs over DirectIO.
func TestDirectIOTLS(t *testing.T) {
	p := newPKI(t)
	srv := p.store(t, "sbc.example.net")
	d, peer := tcpPair(t)
	client := tls.Client(d, NewClientConfig(srv, "sbc.example.net", "", tls.VersionTLS12))
	server := tls.Server(peer, NewServerConfig(srv, ClientAuthNone, tls.VersionTLS12))
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	msg := []byte("OPTIONS sips:sbc.example.net SIP/2.0\r\n\r\n")
	buf := make([]byte, 4096)
	echo := func() {
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		n, err := server.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("server read %q, %v", buf[:n], err)
		}
		if _, err := server.Write(msg); err != nil {
			t.Fatal(err)
		}
		if n, err = client.Read(buf); err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("client read %q, %v", buf[:n], err)
		}
	}
	for range 100 {
		echo()
	}
}

// TestDirectIONoAlloc: a Read or Write allocates nothing.
func TestDirectIONoAlloc(t *testing.T) {
	d, p := tcpPair(t)
	b := make([]byte, 100)
	a := testing.AllocsPerRun(200, func() {
		if _, err := d.Write(b[:10]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(p, b[:10]); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Write(b[:10]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(d, b[:10]); err != nil {
			t.Fatal(err)
		}
	})
	if a > 0 {
		t.Errorf("%.1f allocations per round trip", a)
	}
}
