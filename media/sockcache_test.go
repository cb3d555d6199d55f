package media

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestSocketsReusedAcrossCalls: a finished call's relay sockets stay open
// through the quarantine and carry a later call; what reached them in
// between (late packets of the first call, a stranger's probes) never
// reaches the later call, and the later call's counters start from zero.
func TestSocketsReusedAcrossCalls(t *testing.T) {
	e := testEngine(t, func(c *Config) {
		c.PortMin, c.PortMax = 12420, 12427 // 4 pairs
		c.Quarantine = 100 * time.Millisecond
	})
	a, b := newPeer(t), newPeer(t)
	s1, portA, portB := call(t, e, a, b, SessionConfig{CallID: "first"})
	a.send(portA, rtpPacket(0, 1, 160, 0xA, 172))
	if got, _ := b.recv(time.Second); len(got) != 172 {
		t.Fatalf("first call: got %d bytes", len(got))
	}
	s1.Close()
	if n := e.pool.cachedSockets(); n != 2 {
		t.Fatalf("after the first call the pool keeps %d sockets, want its 2 (RTCP muxed)", n)
	}
	// Late packets and probes while the ports are in quarantine.
	stale := rtpPacket(0, 2, 320, 0xA, 100)
	for range 5 {
		a.send(portA, stale)
		b.send(portB, stale)
	}
	time.Sleep(150 * time.Millisecond) // the quarantine ends

	a2, b2 := newPeer(t), newPeer(t)
	s2, portA2, portB2 := call(t, e, a2, b2, SessionConfig{CallID: "second"})
	defer s2.Close()
	old := map[int]bool{portA: true, portB: true}
	if !old[portA2] || !old[portB2] {
		t.Fatalf("second call got ports %d/%d, want the open pairs %d/%d again", portA2, portB2, portA, portB)
	}
	if n := e.pool.cachedSockets(); n != 0 {
		t.Fatalf("pool still keeps %d sockets while both are in use", n)
	}
	b2.expectNothing(200 * time.Millisecond)
	a2.expectNothing(50 * time.Millisecond)
	fresh := rtpPacket(0, 500, 8000, 0xC, 172)
	a2.send(portA2, fresh)
	got, from := b2.recv(time.Second)
	if !bytes.Equal(got, fresh) || from != netip.AddrPortFrom(lo, uint16(portB2)) {
		t.Fatalf("second call relayed %d bytes from %v, want the fresh packet from port %d", len(got), from, portB2)
	}
	st := s2.Close()
	if st[0].FromA.Packets != 1 || st[0].FromB.Packets != 0 {
		t.Fatalf("second call counted A %d / B %d packets, want 1 / 0 (the stale ones dropped)", st[0].FromA.Packets, st[0].FromB.Packets)
	}
}

// TestSocketCacheBounded: the pool keeps no more open sockets than
// SocketCache; the rest are closed with their call, and Engine.Close
// closes those it kept (their ports can be bound again).
func TestSocketCacheBounded(t *testing.T) {
	e := testEngine(t, func(c *Config) {
		c.PortMin, c.PortMax = 12430, 12437
		c.SocketCache = 1
	})
	a, b := newPeer(t), newPeer(t)
	s, portA, portB := call(t, e, a, b, SessionConfig{CallID: "bounded"})
	s.Close()
	if n := e.pool.cachedSockets(); n != 1 {
		t.Fatalf("pool keeps %d sockets, want 1 (SocketCache)", n)
	}
	open := 0
	for _, p := range []int{portA, portB} {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice(), Port: p})
		if err != nil {
			open++
			continue
		}
		c.Close()
	}
	if open != 1 {
		t.Fatalf("%d of the call's 2 ports still bound, want the 1 the pool keeps", open)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{portA, portB} {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice(), Port: p})
		if err != nil {
			t.Fatalf("port %d still bound after Engine.Close: %v", p, err)
		}
		c.Close()
	}
}

// TestSocketCacheOff: with SocketCache negative every call opens and
// closes its own sockets.
func TestSocketCacheOff(t *testing.T) {
	e := testEngine(t, func(c *Config) {
		c.PortMin, c.PortMax = 12440, 12447
		c.SocketCache = -1
	})
	a, b := newPeer(t), newPeer(t)
	s, portA, _ := call(t, e, a, b, SessionConfig{CallID: "off"})
	s.Close()
	if n := e.pool.cachedSockets(); n != 0 {
		t.Fatalf("pool keeps %d sockets with the cache off", n)
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice(), Port: portA})
	if err != nil {
		t.Fatalf("port %d still bound after its call: %v", portA, err)
	}
	c.Close()
}

// TestWarmSocketsExpire: sockets kept after a call are closed once unused
// for warmIdle, and their pairs are plain free pairs again.
func TestWarmSocketsExpire(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPortPool(12450, 12457, 0, func() time.Time { return now }).withSocketCache(8, 1000)
	b, ok := p.get()
	if !ok {
		t.Fatal("no pair")
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice(), Port: b})
	if err != nil {
		t.Skipf("port %d: %v", b, err)
	}
	defer c.Close()
	if !p.releaseOpen(b, pairSocks{rtp: c}) {
		t.Fatal("the pool refused one socket with room for 8")
	}
	if got := p.expireWarm(now.Add(-warmIdle)); len(got) != 0 {
		t.Fatalf("expired %d pairs kept just now", len(got))
	}
	now = now.Add(warmIdle + time.Second)
	got := p.expireWarm(now.Add(-warmIdle))
	if len(got) != 1 || got[0].rtp != c {
		t.Fatalf("expired %v, want the one pair kept %s ago", got, warmIdle+time.Second)
	}
	if n := p.cachedSockets(); n != 0 {
		t.Fatalf("pool still counts %d sockets", n)
	}
	if _, _, ok := p.getWarm(); ok {
		t.Fatal("an expired pair is still warm")
	}
	if _, free, _ := p.counts(); free != 4 {
		t.Fatalf("free pairs %d, want all 4", free)
	}
}

// TestSocketCacheLeavesDescriptors: kept sockets and the sockets of the
// pairs in use stay within the pool's descriptor room, and shed gives the
// kept ones up (warm first, then quarantined) when descriptors run out.
func TestSocketCacheLeavesDescriptors(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPortPool(12460, 12475, time.Second, func() time.Time { return now }).withSocketCache(100, 6)
	var conns []*net.UDPConn
	open := func(port int) *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice(), Port: port})
		if err != nil {
			t.Skipf("port %d: %v", port, err)
		}
		conns = append(conns, c)
		return c
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var bases []int
	for range 3 {
		b, _ := p.get()
		bases = append(bases, b)
	}
	// 3 pairs in use count 6 descriptors: no room for one more.
	if p.releaseOpen(bases[0], pairSocks{rtp: open(bases[0])}) {
		t.Fatal("kept a socket beyond the descriptor room")
	}
	p.release(bases[0])
	// 2 in use (4) + 1 kept = 5: room.
	if !p.releaseOpen(bases[1], pairSocks{rtp: open(bases[1])}) {
		t.Fatal("refused a socket within the descriptor room")
	}
	now = now.Add(2 * time.Second) // bases[1] is warm now
	if !p.releaseOpen(bases[2], pairSocks{rtp: open(bases[2])}) {
		t.Fatal("refused a socket within the descriptor room")
	}
	if n := p.cachedSockets(); n != 2 {
		t.Fatalf("kept %d sockets, want 2", n)
	}
	got := p.shed(1)
	if len(got) != 1 || got[0].rtp.LocalAddr().(*net.UDPAddr).Port != bases[1] {
		t.Fatalf("shed %v, want the warm pair %d first", got, bases[1])
	}
	got = p.shed(5)
	if len(got) != 1 || got[0].rtp.LocalAddr().(*net.UDPAddr).Port != bases[2] {
		t.Fatalf("shed %v, want the quarantined pair %d", got, bases[2])
	}
	if n := p.cachedSockets(); n != 0 {
		t.Fatalf("still kept: %d", n)
	}
	if _, free, quar := p.counts(); quar != 1 || free != 7 {
		t.Fatalf("free %d quarantined %d, want 7 and 1 (a shed pair keeps its quarantine)", free, quar)
	}
}
