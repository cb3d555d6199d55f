package dnsresolve

import (
	"net/netip"
	"testing"
	"time"
)

func TestCacheBounded(t *testing.T) {
	c := newCache(3)
	now := time.Unix(1000, 0)
	set := rrset{addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
	for _, n := range []string{"a.", "b.", "c.", "d."} {
		c.put(cacheKey{n, 1}, set, now, time.Minute)
	}
	if c.len() != 3 {
		t.Fatalf("len = %d, want 3", c.len())
	}
	if _, ok := c.get(cacheKey{"a.", 1}, now); ok {
		t.Error("oldest entry not evicted")
	}
	for _, n := range []string{"b.", "c.", "d."} {
		if _, ok := c.get(cacheKey{n, 1}, now); !ok {
			t.Errorf("%s evicted", n)
		}
	}
	// Replacing an entry makes it the newest.
	c.put(cacheKey{"b.", 1}, set, now, time.Minute)
	c.put(cacheKey{"e.", 1}, set, now, time.Minute)
	if _, ok := c.get(cacheKey{"b.", 1}, now); !ok {
		t.Error("refreshed entry evicted")
	}
	if _, ok := c.get(cacheKey{"c.", 1}, now); ok {
		t.Error("c. should have been evicted")
	}
	// Expired entries are dropped on read.
	if _, ok := c.get(cacheKey{"d.", 1}, now.Add(time.Minute)); ok {
		t.Error("expired entry returned")
	}
	if c.len() != 2 {
		t.Errorf("len = %d after expiry, want 2", c.len())
	}
}

func TestResolverCacheSizeOption(t *testing.T) {
	s := newTestServer(t)
	s.add(t,
		"a.example.com. 300 IN A 192.0.2.1",
		"b.example.com. 300 IN A 192.0.2.2",
	)
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil, WithCacheSize(1))
	for _, h := range []string{"a.example.com", "b.example.com", "a.example.com"} {
		if _, err := r.Resolve(testCtx(t), h, 5061); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.count("a.example.com.", 1); n != 2 {
		t.Errorf("a.example.com queried %d times, want 2 (evicted by b)", n)
	}
	if r.cache.len() != 1 {
		t.Errorf("cache len = %d, want 1", r.cache.len())
	}
}
