package dnsresolve

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestHealthOrder(t *testing.T) {
	clock := newFakeClock()
	h := NewHealth(30*time.Second, clock.Now)
	ts := []Target{
		{Host: "a", Addr: ap("192.0.2.1:5061")},
		{Host: "b", Addr: ap("192.0.2.2:5061")},
		{Host: "c", Addr: ap("192.0.2.3:5061")},
		{Host: "b", Addr: ap("192.0.2.2:5062")}, // same IP, other port: unaffected
	}
	order := func() []netip.AddrPort { return addrsOf(h.Order(ts)) }
	eq := func(got []netip.AddrPort, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("order = %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != ap(want[i]) {
				t.Fatalf("order = %v, want %v", got, want)
			}
		}
	}

	eq(order(), "192.0.2.1:5061", "192.0.2.2:5061", "192.0.2.3:5061", "192.0.2.2:5062")

	h.MarkDown(ap("192.0.2.1:5061"), "tls handshake timeout")
	h.MarkDown(ap("192.0.2.2:5061"), "connection refused")
	if !h.IsDown(ap("192.0.2.1:5061")) || h.IsDown(ap("192.0.2.2:5062")) {
		t.Fatal("IsDown wrong")
	}
	if c, ok := h.Cause(ap("192.0.2.2:5061")); !ok || c != "connection refused" {
		t.Errorf("Cause = %q, %v", c, ok)
	}
	eq(order(), "192.0.2.3:5061", "192.0.2.2:5062", "192.0.2.1:5061", "192.0.2.2:5061")
	if ts[0].Addr != ap("192.0.2.1:5061") {
		t.Fatal("Order modified its input")
	}

	h.MarkUp(ap("192.0.2.2:5061"))
	eq(order(), "192.0.2.2:5061", "192.0.2.3:5061", "192.0.2.2:5062", "192.0.2.1:5061")

	clock.Advance(29 * time.Second)
	if !h.IsDown(ap("192.0.2.1:5061")) {
		t.Fatal("restored before downFor")
	}
	clock.Advance(time.Second)
	if h.IsDown(ap("192.0.2.1:5061")) {
		t.Fatal("still down after downFor")
	}
	eq(order(), "192.0.2.1:5061", "192.0.2.2:5061", "192.0.2.3:5061", "192.0.2.2:5062")
}

func TestHealthConcurrent(t *testing.T) {
	h := NewHealth(0, nil)
	ts := []Target{{Addr: ap("192.0.2.1:5061")}, {Addr: ap("192.0.2.2:5061")}}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 200 {
				a := ts[i%2].Addr
				h.MarkDown(a, "x")
				_ = h.Order(ts)
				_ = h.IsDown(a)
				h.MarkUp(a)
			}
		})
	}
	wg.Wait()
}
