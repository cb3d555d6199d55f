package hep

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/test/syncbuf"
)

func msg(i int) Packet {
	p := samplePacket()
	p.Payload = fmt.Appendf(nil, "MESSAGE %d", i)
	p.Password = "ignored: the exporter's own is used"
	return p
}

func newExporter(t *testing.T, cfg ExporterConfig) (*Exporter, *syncbuf.Buffer) {
	t.Helper()
	lb := &syncbuf.Buffer{}
	cfg.Log = zerolog.New(lb)
	e, err := NewExporter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, lb
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExporterUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	e, _ := newExporter(t, ExporterConfig{Addr: pc.LocalAddr().String(), Transport: "udp", NodeID: 42, Password: "secret"})
	const n = 50
	for i := range n {
		e.Send(msg(i))
	}
	buf := make([]byte, 70000)
	for i := range n {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		p, used, err := Decode(buf[:m])
		if err != nil || used != m {
			t.Fatalf("packet %d: %v (%d of %d bytes)", i, err, used, m)
		}
		if p.NodeID != 42 || p.Password != "secret" || string(p.Payload) != fmt.Sprintf("MESSAGE %d", i) {
			t.Fatalf("packet %d: %+v", i, p)
		}
	}
	// The counter is bumped after the write: the last packet may arrive
	// before it is.
	deadline := time.Now().Add(2 * time.Second)
	for e.Stats().Sent != n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := e.Stats(); st.Sent != n || st.Dropped() != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// tcpCollector accepts HEP over TCP and decodes the stream.
type tcpCollector struct {
	ln   net.Listener
	mu   sync.Mutex
	got  []Packet
	conn []net.Conn
	wg   sync.WaitGroup
}

func startTCPCollector(t *testing.T, addr string) *tcpCollector {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &tcpCollector{ln: ln}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conn = append(c.conn, conn)
			c.mu.Unlock()
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.read(t, conn)
			}()
		}
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *tcpCollector) read(t *testing.T, conn net.Conn) {
	var pending []byte
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		pending = append(pending, buf[:n]...)
		for {
			p, used, derr := Decode(pending)
			if derr != nil {
				if derr != ErrShort {
					t.Errorf("collector: %v", derr)
					return
				}
				break
			}
			pending = pending[used:]
			c.mu.Lock()
			c.got = append(c.got, p)
			c.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (c *tcpCollector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func (c *tcpCollector) stop() {
	_ = c.ln.Close()
	c.mu.Lock()
	for _, conn := range c.conn {
		_ = conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// TestExporterTCPReconnects: packets are framed on one stream; when the
// collector goes away the exporter logs it once, reconnects with backoff
// when it is back, and what was queued meanwhile arrives.
func TestExporterTCPReconnects(t *testing.T) {
	col := startTCPCollector(t, "127.0.0.1:0")
	addr := col.ln.Addr().String()
	e, logs := newExporter(t, ExporterConfig{Addr: addr, Transport: "tcp", MinBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond})
	for i := range 20 {
		e.Send(msg(i))
	}
	waitFor(t, "20 packets on the first connection", func() bool { return col.count() == 20 })
	col.stop()
	// Writes into the closed connection fail (maybe after one that the
	// kernel still accepted); the exporter then redials a closed port.
	for i := 20; i < 40; i++ {
		e.Send(msg(i))
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, "the outage logged", func() bool { return strings.Contains(logs.String(), "HEP collector unreachable") })
	time.Sleep(300 * time.Millisecond) // several failed connection attempts
	if n := strings.Count(logs.String(), "HEP collector unreachable"); n != 1 {
		t.Fatalf("outage logged %d times, want once a minute at most:\n%s", n, logs)
	}
	for i := 40; i < 60; i++ {
		e.Send(msg(i)) // queued while down
	}
	col2 := startTCPCollector(t, addr)
	// The queue drains in order: once the newest packet is in, so is
	// everything queued before it.
	lastGot := func() string {
		col2.mu.Lock()
		defer col2.mu.Unlock()
		if len(col2.got) == 0 {
			return ""
		}
		return string(col2.got[len(col2.got)-1].Payload)
	}
	waitFor(t, "the queued packets after the reconnect", func() bool { return lastGot() == "MESSAGE 59" })
	if n := col2.count(); n < 20 {
		t.Fatalf("%d packets after the reconnect, want the 20 queued while down at least", n)
	}
	waitFor(t, "recovery logged", func() bool { return strings.Contains(logs.String(), "HEP collector reached again") })
	st := e.Stats()
	if st.Sent+st.Dropped() != 60 {
		t.Fatalf("stats %+v do not account for 60 packets", st)
	}
	if strings.Contains(logs.String(), "ignored") {
		t.Fatal("a password reached the log")
	}
}

// TestExporterNeverBlocks: with a collector that accepts but never reads,
// and one that does not exist, Send returns at once and drops are
// counted; Close returns promptly.
func TestExporterNeverBlocks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never read
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()

	for name, addr := range map[string]string{"stalled collector": ln.Addr().String(), "no collector": deadAddr} {
		t.Run(name, func(t *testing.T) {
			e, _ := newExporter(t, ExporterConfig{Addr: addr, Transport: "tcp", QueueLen: 64, WriteTimeout: 50 * time.Millisecond, MinBackoff: 10 * time.Millisecond})
			big := msg(0)
			big.Payload = bytes.Repeat([]byte("x"), 16<<10)
			start := time.Now()
			for range 5000 {
				e.Send(big)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("5000 Sends took %s", d)
			}
			st := e.Stats()
			if st.QueueFull == 0 {
				t.Fatalf("no queue-full drops: %+v", st)
			}
			start = time.Now()
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("Close took %s", d)
			}
			e.Send(big) // after Close: a no-op
			if st := e.Stats(); st.Sent+st.Dropped() != 5000 {
				t.Fatalf("stats %+v do not account for 5000 packets", st)
			}
		})
	}
}

func TestExporterLimits(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := dead.Addr().String()
	_ = dead.Close()
	// Nothing listens: the queue is not drained, so its byte bound decides.
	e, _ := newExporter(t, ExporterConfig{Addr: addr, Transport: "tcp", QueueBytes: 1000})
	p := msg(0)
	p.Payload = make([]byte, MaxPacket)
	e.Send(p)
	p.Payload = make([]byte, 600)
	e.Send(p)
	e.Send(p) // 2 x ~700 bytes > QueueBytes
	if st := e.Stats(); st.TooLarge != 1 || st.QueueFull != 1 {
		t.Fatalf("stats %+v", st)
	}
	_ = e.Close()
	if st := e.Stats(); st.SendError != 1 {
		t.Fatalf("the packet still queued at Close is not counted: %+v", st)
	}

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	u, _ := newExporter(t, ExporterConfig{Addr: pc.LocalAddr().String(), Transport: "udp"})
	p.Payload = make([]byte, maxDatagram-100) // fits HEP, not a datagram
	u.Send(p)
	if st := u.Stats(); st.TooLarge != 1 {
		t.Fatalf("udp stats %+v", st)
	}
	if _, err := NewExporter(ExporterConfig{Addr: "127.0.0.1:9060", Transport: "sctp"}); err == nil {
		t.Fatal("transport sctp accepted")
	}
	if _, err := NewExporter(ExporterConfig{Addr: "nowhere", Transport: "udp"}); err == nil {
		t.Fatal("address without port accepted")
	}
}

var _ io.Writer = (*syncbuf.Buffer)(nil)
