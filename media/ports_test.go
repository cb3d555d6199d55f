package media

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestPortPoolPairsAndExhaustion(t *testing.T) {
	now := time.Unix(0, 0)
	p := newPortPool(1001, 1010, time.Second, func() time.Time { return now })
	if p.total() != 4 { // 1002,1004,1006,1008 (1010 has no odd partner)
		t.Fatalf("total %d, want 4", p.total())
	}
	seen := map[int]bool{}
	for range 4 {
		b, ok := p.get()
		if !ok || b%2 != 0 || seen[b] || b < 1002 || b+1 > 1010 {
			t.Fatalf("get = %d %v", b, ok)
		}
		seen[b] = true
	}
	if _, ok := p.get(); ok {
		t.Fatal("get succeeded on an empty pool")
	}
	p.release(1004)
	if inUse, free, q := p.counts(); inUse != 3 || free != 0 || q != 1 {
		t.Fatalf("counts %d %d %d", inUse, free, q)
	}
	if _, ok := p.get(); ok {
		t.Fatal("quarantined pair handed out")
	}
	now = now.Add(time.Second)
	if b, ok := p.get(); !ok || b != 1004 {
		t.Fatalf("after quarantine get = %d %v", b, ok)
	}
}

// TestPortPoolRandomOrder: pairs are not handed out in order, so the
// ports of the next call cannot be guessed from those of the last one.
func TestPortPoolRandomOrder(t *testing.T) {
	draw := func() []int {
		p := newPortPool(40000, 41999, 0, time.Now) // 1000 pairs
		var got []int
		for range 20 {
			b, ok := p.get()
			if !ok || b%2 != 0 || b < 40000 || b > 41998 {
				t.Fatalf("get = %d %v", b, ok)
			}
			got = append(got, b)
		}
		return got
	}
	first, second := draw(), draw()
	ascending := 0
	for i := 1; i < len(first); i++ {
		if first[i] == first[i-1]+2 {
			ascending++
		}
	}
	// In order, all 19 steps would be +2; at random each is with
	// probability 1/1000.
	if ascending > 3 {
		t.Fatalf("pairs handed out in order: %v", first)
	}
	if fmt.Sprint(first) == fmt.Sprint(second) {
		t.Fatalf("two pools handed out the same sequence %v: not random", first)
	}
}

func TestOpenPairSkipsPortInUse(t *testing.T) {
	e := testEngine(t, func(c *Config) { c.PortMin, c.PortMax = 12600, 12609 })
	// Another process holds the first RTP port and the second RTCP port.
	for _, port := range []int{12600, 12603} {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			t.Skipf("cannot occupy port %d: %v", port, err)
		}
		defer c.Close()
	}
	// Pairs come at random: open all three usable pairs (no quarantine in
	// testEngine, so an unusable pair returns at once and must still not
	// be handed out twice by one openPair).
	got := map[int]bool{}
	for range 3 {
		base, ps, err := e.openPair(true)
		if err != nil {
			t.Fatal(err)
		}
		defer ps.rtp.Close()
		defer ps.rtcp.Close()
		if base == 12600 || base == 12602 || got[base] {
			t.Fatalf("base %d: 12600 and 12602 are unusable, got %v before", base, got)
		}
		got[base] = true
	}
	if e.PortsInUse() != 6 {
		t.Fatalf("in use %d, want 6", e.PortsInUse())
	}
	if _, _, err := e.openPair(true); !errorsIs(err, ErrPortsExhausted) {
		t.Fatalf("fourth pair: err = %v, want ErrPortsExhausted", err)
	}
	if e.PortsInUse() != 6 || e.PortsFree() != 4 {
		t.Fatalf("after a failed openPair: in use %d free %d, want 6 and 4 (the unusable pairs)", e.PortsInUse(), e.PortsFree())
	}
	for b := range got {
		e.pool.release(b)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.PortMin != 36000 || c.PortMax != 59999 || c.DSCPAudio != 46 || c.DSCPVideo != 34 ||
		c.DSCPApplication != 24 || c.Timeout != 60*time.Second || c.Quarantine != 2*time.Second ||
		c.StrictSource || c.BindAddr.String() != "0.0.0.0" {
		t.Fatalf("defaults %+v", c)
	}
	for _, bad := range []Config{{PortMin: 100}, {PortMin: 50000, PortMax: 40000}, {DSCPAudio: 64}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestPortTakenClassifiesBindErrors(t *testing.T) {
	l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = net.ListenUDP("udp4", l.LocalAddr().(*net.UDPAddr))
	if err == nil || !portTaken(err) {
		t.Fatalf("a port held by another socket: portTaken(%v) = false", err)
	}
	if portTaken(fmt.Errorf("listen: %w", syscall.EMFILE)) {
		t.Fatal("EMFILE counted as a taken port: the whole pool would be quarantined")
	}
}

func TestUngetSkipsQuarantine(t *testing.T) {
	now := time.Unix(0, 0)
	p := newPortPool(40000, 40003, time.Minute, func() time.Time { return now })
	b, ok := p.get()
	if !ok {
		t.Fatal("empty pool")
	}
	p.unget(b)
	if inUse, free, q := p.counts(); inUse != 0 || free != 2 || q != 0 {
		t.Fatalf("after unget: inUse %d free %d quarantined %d", inUse, free, q)
	}
}
