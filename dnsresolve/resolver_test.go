package dnsresolve

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// newTestResolver builds a Resolver for servers with short timeouts and the
// given clock (nil: real clock).
func newTestResolver(t testing.TB, cfg Config, clock *fakeClock, opts ...Option) *Resolver {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	if clock != nil {
		opts = append(opts, WithClock(clock.Now))
	}
	r, err := New(cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func addrsOf(ts []Target) []netip.AddrPort {
	out := make([]netip.AddrPort, len(ts))
	for i, tg := range ts {
		out[i] = tg.Addr
	}
	return out
}

func wantAddrs(t *testing.T, ts []Target, want ...string) {
	t.Helper()
	got := addrsOf(ts)
	if len(got) != len(want) {
		t.Fatalf("got %d targets %v, want %v", len(got), got, want)
	}
	for i := range want {
		if got[i] != ap(want[i]) {
			t.Fatalf("target %d = %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
}

func TestResolveIPLiteral(t *testing.T) {
	s := newTestServer(t)
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	ctx := testCtx(t)

	ts, err := r.Resolve(ctx, "192.0.2.10", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.10:5061")
	if ts[0].FromSRV || ts[0].Host != "192.0.2.10" {
		t.Errorf("unexpected target %+v", ts[0])
	}

	ts, err = r.Resolve(ctx, "192.0.2.10", 5070)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.10:5070")

	if _, err := r.Resolve(ctx, "[2001:db8::1]", 0); !errors.Is(err, ErrInvalidHost) {
		t.Errorf("IPv6 literal with IPv6 disabled: err = %v, want ErrInvalidHost", err)
	}
	r6 := newTestResolver(t, Config{Servers: []string{s.addr}, IPv6: true}, nil)
	ts, err = r6.Resolve(ctx, "[2001:db8::1]", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "[2001:db8::1]:5061")

	if n := s.total(); n != 0 {
		t.Errorf("IP literals caused %d DNS queries", n)
	}
}

func TestResolveInvalidHost(t *testing.T) {
	r := newTestResolver(t, Config{Servers: []string{"127.0.0.1:1"}}, nil)
	for _, h := range []string{"", ".", "a..b", "exa mple.com", "[example.com]"} {
		if _, err := r.Resolve(testCtx(t), h, 0); !errors.Is(err, ErrInvalidHost) {
			t.Errorf("Resolve(%q) err = %v, want ErrInvalidHost", h, err)
		}
	}
}

func TestResolveFQDNWithPortQueriesAOnly(t *testing.T) {
	s := newTestServer(t)
	s.add(t,
		"sip.example.com. 300 IN A 192.0.2.1",
		"sip.example.com. 300 IN A 192.0.2.2",
		"_sips._tcp.sip.example.com. 300 IN SRV 10 10 5061 other.example.com.",
	)
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)

	ts, err := r.Resolve(testCtx(t), "SIP.example.com.", 5062)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.1:5062", "192.0.2.2:5062")
	for _, tg := range ts {
		if tg.FromSRV || tg.Host != "sip.example.com" {
			t.Errorf("unexpected target %+v", tg)
		}
	}
	if n := s.count("_sips._tcp.sip.example.com.", dns.TypeSRV); n != 0 {
		t.Errorf("SRV queries = %d, want 0 when the URI has a port", n)
	}
	if n := s.count("sip.example.com.", dns.TypeA); n != 1 {
		t.Errorf("A queries = %d, want 1", n)
	}
	if n := s.count("sip.example.com.", dns.TypeAAAA); n != 0 {
		t.Errorf("AAAA queries = %d with IPv6 disabled", n)
	}
}

func TestResolveSRVPriorityOrder(t *testing.T) {
	s := newTestServer(t)
	s.add(t,
		"_sips._tcp.example.com. 300 IN SRV 30 10 5063 c.example.com.",
		"_sips._tcp.example.com. 300 IN SRV 10 10 5061 a.example.com.",
		"_sips._tcp.example.com. 300 IN SRV 20 10 5062 b.example.com.",
		"a.example.com. 300 IN A 192.0.2.1",
		"a.example.com. 300 IN A 192.0.2.11",
		"b.example.com. 300 IN A 192.0.2.2",
		"c.example.com. 300 IN A 192.0.2.3",
	)
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	ts, err := r.Resolve(testCtx(t), "example.com", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.1:5061", "192.0.2.11:5061", "192.0.2.2:5062", "192.0.2.3:5063")
	wantHosts := []string{"a.example.com", "a.example.com", "b.example.com", "c.example.com"}
	wantPrio := []uint16{10, 10, 20, 30}
	for i, tg := range ts {
		if !tg.FromSRV || tg.Host != wantHosts[i] || tg.Priority != wantPrio[i] || tg.Weight != 10 {
			t.Errorf("target %d = %+v", i, tg)
		}
	}
	if n := s.count("example.com.", dns.TypeA); n != 0 {
		t.Errorf("A query for the domain itself made although SRV exists")
	}
}

func TestResolveSRVWeightDistribution(t *testing.T) {
	// End-to-end check that Resolve applies the RFC 2782 weighting; the
	// precise distribution is checked in srv_test.go.
	s := newTestServer(t)
	s.add(t,
		"_sips._tcp.example.com. 300 IN SRV 10 90 5061 a.example.com.",
		"_sips._tcp.example.com. 300 IN SRV 10 10 5061 b.example.com.",
		"a.example.com. 300 IN A 192.0.2.1",
		"b.example.com. 300 IN A 192.0.2.2",
	)
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	firstA := 0
	const n = 2000
	for range n {
		ts, err := r.Resolve(testCtx(t), "example.com", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 2 {
			t.Fatalf("got %d targets", len(ts))
		}
		if ts[0].Host == "a.example.com" {
			firstA++
		}
	}
	// Expected 91/101 ≈ 0.90.
	if f := float64(firstA) / n; f < 0.85 || f > 0.95 {
		t.Errorf("a.example.com first in %.3f of orderings, want ≈0.90", f)
	}
	if q := s.count("_sips._tcp.example.com.", dns.TypeSRV); q != 1 {
		t.Errorf("SRV queries = %d, want 1 (cached)", q)
	}
}

func TestResolveSRVAdditionalSection(t *testing.T) {
	s := newTestServer(t)
	s.set("_sips._tcp.example.com.", dns.TypeSRV, &answerSpec{
		answer: []dns.RR{
			mustRR(t, "_sips._tcp.example.com. 300 IN SRV 10 10 5061 a.example.com."),
			mustRR(t, "_sips._tcp.example.com. 300 IN SRV 20 10 5061 b.example.com."),
		},
		extra: []dns.RR{
			mustRR(t, "a.example.com. 300 IN A 192.0.2.1"),
			mustRR(t, "unrelated.example.net. 300 IN A 198.51.100.1"),
		},
	})
	s.add(t, "b.example.com. 300 IN A 192.0.2.2")
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	ts, err := r.Resolve(testCtx(t), "example.com", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.1:5061", "192.0.2.2:5061")
	if n := s.count("a.example.com.", dns.TypeA); n != 0 {
		t.Errorf("A query for a.example.com made although the additional section had it")
	}
	if n := s.count("b.example.com.", dns.TypeA); n != 1 {
		t.Errorf("A queries for b.example.com = %d, want 1", n)
	}
	if _, ok := r.cache.get(cacheKey{"unrelated.example.net.", dns.TypeA}, time.Now()); ok {
		t.Error("unrelated additional record was cached")
	}
}

func TestResolveSRVDotTarget(t *testing.T) {
	s := newTestServer(t)
	s.add(t,
		"_sips._tcp.example.com. 300 IN SRV 0 0 0 .",
		"example.com. 300 IN A 192.0.2.1",
	)
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	_, err := r.Resolve(testCtx(t), "example.com", 0)
	if !errors.Is(err, ErrServiceUnavailable) {
		t.Fatalf("err = %v, want ErrServiceUnavailable", err)
	}
	if n := s.count("example.com.", dns.TypeA); n != 0 {
		t.Errorf("fell back to A although SRV said service unavailable")
	}
}

func TestResolveSRVTargetFailures(t *testing.T) {
	s := newTestServer(t)
	s.add(t,
		"_sips._tcp.example.com. 300 IN SRV 10 10 5061 gone.example.com.",
		"_sips._tcp.example.com. 300 IN SRV 20 10 5061 b.example.com.",
		"b.example.com. 300 IN A 192.0.2.2",
		"_sips._tcp.dead.example.com. 300 IN SRV 10 10 5061 gone.example.com.",
	)
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	ts, err := r.Resolve(testCtx(t), "example.com", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.2:5061")

	_, err = r.Resolve(testCtx(t), "dead.example.com", 0)
	if !errors.Is(err, ErrNoTargets) || !errors.Is(err, ErrNXDomain) {
		t.Fatalf("err = %v, want ErrNoTargets wrapping ErrNXDomain", err)
	}
}

func TestResolveNoSRVFallsBackToA(t *testing.T) {
	t.Run("NXDOMAIN", func(t *testing.T) {
		s := newTestServer(t)
		s.add(t, "example.com. 300 IN A 192.0.2.1")
		r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
		ts, err := r.Resolve(testCtx(t), "example.com", 0)
		if err != nil {
			t.Fatal(err)
		}
		wantAddrs(t, ts, "192.0.2.1:5061")
		if ts[0].FromSRV || ts[0].Host != "example.com" {
			t.Errorf("unexpected target %+v", ts[0])
		}
		if n := s.count("_sips._tcp.example.com.", dns.TypeSRV); n != 1 {
			t.Errorf("SRV queries = %d, want 1", n)
		}
	})
	t.Run("NODATA", func(t *testing.T) {
		s := newTestServer(t)
		s.add(t,
			"_sips._tcp.example.com. 300 IN TXT \"no srv here\"",
			"example.com. 300 IN A 192.0.2.1",
		)
		r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
		ts, err := r.Resolve(testCtx(t), "example.com", 0)
		if err != nil {
			t.Fatal(err)
		}
		wantAddrs(t, ts, "192.0.2.1:5061")
	})
}

func TestResolveNXDomain(t *testing.T) {
	s := newTestServer(t)
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	for _, port := range []uint16{0, 5061} {
		_, err := r.Resolve(testCtx(t), "nowhere.example.com", port)
		if !errors.Is(err, ErrNXDomain) {
			t.Errorf("port %d: err = %v, want ErrNXDomain", port, err)
		}
	}
}

func TestResolveNoAddressRecords(t *testing.T) {
	s := newTestServer(t)
	s.add(t, "example.com. 300 IN TXT \"exists\"")
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	_, err := r.Resolve(testCtx(t), "example.com", 5061)
	if !errors.Is(err, ErrNoTargets) || errors.Is(err, ErrNXDomain) {
		t.Fatalf("err = %v, want ErrNoTargets (NODATA)", err)
	}
}

func TestResolveCNAME(t *testing.T) {
	s := newTestServer(t)
	s.set("sip.example.com.", dns.TypeA, &answerSpec{answer: []dns.RR{
		mustRR(t, "sip.example.com. 300 IN CNAME edge.EXAMPLE.net."),
		mustRR(t, "edge.example.net. 300 IN CNAME lb.example.net."),
		mustRR(t, "lb.example.net. 300 IN A 192.0.2.7"),
		mustRR(t, "other.example.net. 300 IN A 192.0.2.99"),
	}})
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	ts, err := r.Resolve(testCtx(t), "sip.example.com", 5061)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.7:5061")
	if ts[0].Host != "sip.example.com" {
		t.Errorf("Host = %q, want the URI host", ts[0].Host)
	}
}

func TestResolveIPv6(t *testing.T) {
	s := newTestServer(t)
	s.add(t,
		"_sips._tcp.example.com. 300 IN SRV 10 10 5061 a.example.com.",
		"_sips._tcp.example.com. 300 IN SRV 20 10 5061 b.example.com.",
		"a.example.com. 300 IN A 192.0.2.1",
		"a.example.com. 300 IN AAAA 2001:db8::1",
		"b.example.com. 300 IN AAAA 2001:db8::2",
	)
	r4 := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	ts, err := r4.Resolve(testCtx(t), "example.com", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.1:5061")
	if n := s.count("a.example.com.", dns.TypeAAAA) + s.count("b.example.com.", dns.TypeAAAA); n != 0 {
		t.Errorf("%d AAAA queries with IPv6 disabled", n)
	}

	r6 := newTestResolver(t, Config{Servers: []string{s.addr}, IPv6: true}, nil)
	ts, err = r6.Resolve(testCtx(t), "example.com", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.1:5061", "[2001:db8::1]:5061", "[2001:db8::2]:5061")
}

func TestResolveServFailFailover(t *testing.T) {
	bad := newTestServer(t)
	bad.setForceRcode(dns.RcodeServerFailure)
	good := newTestServer(t)
	good.add(t, "sip.example.com. 300 IN A 192.0.2.1")

	r := newTestResolver(t, Config{Servers: []string{bad.addr, good.addr}}, nil)
	ts, err := r.Resolve(testCtx(t), "sip.example.com", 5061)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.1:5061")
	if n := bad.count("sip.example.com.", dns.TypeA); n != 1 {
		t.Errorf("first server got %d queries, want 1", n)
	}

	// Every server failing yields ErrServFail, after Attempts passes.
	bad2 := newTestServer(t)
	bad2.setForceRcode(dns.RcodeRefused)
	rAll := newTestResolver(t, Config{Servers: []string{bad.addr, bad2.addr}, Attempts: 3}, nil)
	_, err = rAll.Resolve(testCtx(t), "other.example.com", 5061)
	if !errors.Is(err, ErrServFail) {
		t.Fatalf("err = %v, want ErrServFail", err)
	}
	if n := bad2.count("other.example.com.", dns.TypeA); n != 3 {
		t.Errorf("second server got %d queries, want 3 (Attempts)", n)
	}
	// Failures are not cached.
	_, _ = rAll.Resolve(testCtx(t), "other.example.com", 5061)
	if n := bad2.count("other.example.com.", dns.TypeA); n != 6 {
		t.Errorf("failure was cached: second server got %d queries, want 6", n)
	}
}

func TestResolveTimeout(t *testing.T) {
	silent := newSilentServer(t)
	r := newTestResolver(t, Config{Servers: []string{silent}, Timeout: 50 * time.Millisecond, Attempts: 2}, nil)
	start := time.Now()
	_, err := r.Resolve(testCtx(t), "sip.example.com", 5061)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond || d > 2*time.Second {
		t.Errorf("took %v, want about 2 x 50ms", d)
	}

	// A silent first server is skipped for a live second one.
	good := newTestServer(t)
	good.add(t, "sip.example.com. 300 IN A 192.0.2.1")
	r2 := newTestResolver(t, Config{Servers: []string{silent, good.addr}, Timeout: 50 * time.Millisecond}, nil)
	ts, err := r2.Resolve(testCtx(t), "sip.example.com", 5061)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.1:5061")
}

func TestResolveContextCanceled(t *testing.T) {
	silent := newSilentServer(t)
	r := newTestResolver(t, Config{Servers: []string{silent}, Timeout: 5 * time.Second}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := r.Resolve(ctx, "sip.example.com", 5061)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancellation took %v; the query was not aborted", d)
	}
}

func TestResolveTruncatedFallsBackToTCP(t *testing.T) {
	s := newTestServer(t)
	s.set("_sips._tcp.example.com.", dns.TypeSRV, &answerSpec{
		truncateUDP: true,
		answer: []dns.RR{
			mustRR(t, "_sips._tcp.example.com. 300 IN SRV 10 10 5061 a.example.com."),
		},
		extra: []dns.RR{mustRR(t, "a.example.com. 300 IN A 192.0.2.1")},
	})
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	ts, err := r.Resolve(testCtx(t), "example.com", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantAddrs(t, ts, "192.0.2.1:5061")
	if n := s.count("_sips._tcp.example.com.", dns.TypeSRV); n != 2 {
		t.Errorf("SRV queries = %d, want 2 (UDP then TCP)", n)
	}
	if n := s.tcpCount("_sips._tcp.example.com.", dns.TypeSRV); n != 1 {
		t.Errorf("TCP SRV queries = %d, want 1", n)
	}
}

func TestCacheTTLExpiry(t *testing.T) {
	s := newTestServer(t)
	s.add(t,
		"ttl60.example.com. 60 IN A 192.0.2.1",
		"ttl1.example.com. 1 IN A 192.0.2.2",
		"ttlday.example.com. 86400 IN A 192.0.2.3",
	)
	clock := newFakeClock()
	r := newTestResolver(t, Config{Servers: []string{s.addr}, MinTTL: 5 * time.Second, MaxTTL: time.Hour}, clock)
	resolve := func(host string) {
		t.Helper()
		if _, err := r.Resolve(testCtx(t), host, 5061); err != nil {
			t.Fatal(err)
		}
	}
	check := func(host string, want int) {
		t.Helper()
		if n := s.count(host+".", dns.TypeA); n != want {
			t.Fatalf("%s: %d queries, want %d", host, n, want)
		}
	}

	// Record TTL honoured.
	resolve("ttl60.example.com")
	resolve("ttl60.example.com")
	check("ttl60.example.com", 1)
	clock.Advance(59 * time.Second)
	resolve("ttl60.example.com")
	check("ttl60.example.com", 1)
	clock.Advance(2 * time.Second)
	resolve("ttl60.example.com")
	check("ttl60.example.com", 2)
	resolve("ttl60.example.com")
	check("ttl60.example.com", 2)

	// TTL 1s raised to MinTTL 5s.
	resolve("ttl1.example.com")
	clock.Advance(4 * time.Second)
	resolve("ttl1.example.com")
	check("ttl1.example.com", 1)
	clock.Advance(2 * time.Second)
	resolve("ttl1.example.com")
	check("ttl1.example.com", 2)

	// TTL 1 day lowered to MaxTTL 1h.
	resolve("ttlday.example.com")
	clock.Advance(59 * time.Minute)
	resolve("ttlday.example.com")
	check("ttlday.example.com", 1)
	clock.Advance(2 * time.Minute)
	resolve("ttlday.example.com")
	check("ttlday.example.com", 2)
}

func TestNegativeCaching(t *testing.T) {
	s := newTestServer(t)
	s.add(t, "nodata.example.com. 300 IN TXT \"x\"")
	s.set("soa.example.com.", dns.TypeA, &answerSpec{
		rcode: dns.RcodeNameError,
		ns:    []dns.RR{mustRR(t, "example.com. 3600 IN SOA ns.example.com. host.example.com. 1 7200 900 1209600 10")},
	})
	clock := newFakeClock()
	r := newTestResolver(t, Config{Servers: []string{s.addr}, NegativeTTL: 30 * time.Second}, clock)

	for _, tc := range []struct {
		host string
		ttl  time.Duration
		want error
	}{
		{"nx.example.com", 30 * time.Second, ErrNXDomain},
		{"nodata.example.com", 30 * time.Second, ErrNoTargets},
		{"soa.example.com", 10 * time.Second, ErrNXDomain}, // RFC 2308 §5: SOA MINIMUM 10 < NegativeTTL
	} {
		for range 3 {
			if _, err := r.Resolve(testCtx(t), tc.host, 5061); !errors.Is(err, tc.want) {
				t.Fatalf("%s: err = %v, want %v", tc.host, err, tc.want)
			}
		}
		if n := s.count(tc.host+".", dns.TypeA); n != 1 {
			t.Fatalf("%s: %d queries, want 1 (negative answer cached)", tc.host, n)
		}
		clock.Advance(tc.ttl - time.Second)
		_, _ = r.Resolve(testCtx(t), tc.host, 5061)
		if n := s.count(tc.host+".", dns.TypeA); n != 1 {
			t.Fatalf("%s: %d queries before negative TTL expiry, want 1", tc.host, n)
		}
		clock.Advance(2 * time.Second)
		_, _ = r.Resolve(testCtx(t), tc.host, 5061)
		if n := s.count(tc.host+".", dns.TypeA); n != 2 {
			t.Fatalf("%s: %d queries after negative TTL expiry, want 2", tc.host, n)
		}
	}
}

func TestResolveSingleflight(t *testing.T) {
	s := newTestServer(t)
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	s.set("sip.example.com.", dns.TypeA, &answerSpec{
		gate:   gate,
		answer: []dns.RR{mustRR(t, "sip.example.com. 300 IN A 192.0.2.1")},
	})
	r := newTestResolver(t, Config{Servers: []string{s.addr}, Timeout: 5 * time.Second}, nil)

	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			ts, err := r.Resolve(testCtx(t), "sip.example.com", 5061)
			if err == nil && (len(ts) != 1 || ts[0].Addr != ap("192.0.2.1:5061")) {
				err = errors.New("wrong targets")
			}
			errs <- err
		})
	}
	// Hold the one upstream query until every other caller has joined it.
	k := cacheKey{"sip.example.com.", dns.TypeA}
	deadline := time.Now().Add(5 * time.Second)
	for r.flight.waiters(k) != n-1 || s.count("sip.example.com.", dns.TypeA) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("waiters = %d, queries = %d", r.flight.waiters(k), s.count("sip.example.com.", dns.TypeA))
		}
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if q := s.count("sip.example.com.", dns.TypeA); q != 1 {
		t.Fatalf("%d concurrent Resolve calls made %d upstream queries, want 1", n, q)
	}
}

func TestSingleflightLeaderCanceled(t *testing.T) {
	// A waiter whose context is live must not inherit the leader's
	// cancellation: it queries again.
	s := newTestServer(t)
	s.add(t, "sip.example.com. 300 IN A 192.0.2.1")
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil)
	k := cacheKey{"sip.example.com.", dns.TypeA}

	leaderIn := make(chan struct{})
	leaderOut := make(chan struct{})
	go func() {
		defer close(leaderOut)
		_, _, _ = r.flight.do(context.Background(), k, func() (rrset, error) {
			close(leaderIn)
			deadline := time.Now().Add(2 * time.Second)
			for r.flight.waiters(k) == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			return rrset{}, context.Canceled
		})
	}()
	<-leaderIn
	set, err := r.lookup(testCtx(t), k.name, k.qtype)
	<-leaderOut
	if err != nil || len(set.addrs) != 1 {
		t.Fatalf("lookup = %+v, %v; want the address", set, err)
	}
}

func TestNewConfig(t *testing.T) {
	r, err := New(Config{Servers: []string{"127.0.0.1:5353", "192.0.2.53", "[::1]:53"}})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Config()
	if c.Timeout != DefaultTimeout || c.Attempts != DefaultAttempts || c.MinTTL != DefaultMinTTL ||
		c.MaxTTL != DefaultMaxTTL || c.NegativeTTL != DefaultNegativeTTL || c.IPv6 {
		t.Errorf("defaults not applied: %+v", c)
	}
	want := []string{"127.0.0.1:5353", "192.0.2.53:53", "[::1]:53"}
	for i := range want {
		if c.Servers[i] != want[i] {
			t.Errorf("Servers = %v, want %v", c.Servers, want)
		}
	}

	for name, cfg := range map[string]Config{
		"bad server":    {Servers: []string{"dns.example.com:53"}},
		"port 0":        {Servers: []string{"127.0.0.1:0"}},
		"neg timeout":   {Servers: []string{"127.0.0.1:53"}, Timeout: -1},
		"neg attempts":  {Servers: []string{"127.0.0.1:53"}, Attempts: -1},
		"min above max": {Servers: []string{"127.0.0.1:53"}, MinTTL: time.Hour, MaxTTL: time.Minute},
		"neg ttl":       {Servers: []string{"127.0.0.1:53"}, NegativeTTL: -time.Second},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := New(Config{Servers: []string{"127.0.0.1:53"}}, WithCacheSize(0)); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("cache size 0: err = %v", err)
	}

	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("search example.com\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err = New(Config{}, WithResolvConf(rc))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Config().Servers; len(got) != 2 || got[0] != "192.0.2.53:53" || got[1] != "[2001:db8::53]:53" {
		t.Errorf("servers from resolv.conf = %v", got)
	}
	if _, err := New(Config{}, WithResolvConf(filepath.Join(dir, "missing"))); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("missing resolv.conf: err = %v", err)
	}
}

// BenchmarkResolveWarm measures Resolve with every answer in the cache: an
// SRV RRset of two targets with two addresses each.
func BenchmarkResolveWarm(b *testing.B) {
	s := newTestServer(b)
	s.add(b,
		"_sips._tcp.example.com. 300 IN SRV 10 60 5061 a.example.com.",
		"_sips._tcp.example.com. 300 IN SRV 10 40 5061 b.example.com.",
		"a.example.com. 300 IN A 192.0.2.1",
		"a.example.com. 300 IN A 192.0.2.2",
		"b.example.com. 300 IN A 192.0.2.3",
		"b.example.com. 300 IN A 192.0.2.4",
	)
	r := newTestResolver(b, Config{Servers: []string{s.addr}}, nil)
	ctx := context.Background()
	if ts, err := r.Resolve(ctx, "example.com", 0); err != nil || len(ts) != 4 {
		b.Fatalf("warm-up: %v %v", ts, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Resolve(ctx, "example.com", 0); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := s.total(); n != 3 {
		b.Fatalf("%d upstream queries during a warm benchmark, want 3", n)
	}
}

func TestWithLoggerLogsQueries(t *testing.T) {
	s := newTestServer(t)
	s.add(t, "sip.example.com. 300 IN A 192.0.2.1")
	var buf bytes.Buffer
	r := newTestResolver(t, Config{Servers: []string{s.addr}}, nil, WithLogger(zerolog.New(&buf).Level(zerolog.DebugLevel)))
	if _, err := r.Resolve(testCtx(t), "sip.example.com", 5061); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{`"message":"dnsresolve: query"`, `"name":"sip.example.com."`, `"type":"A"`, `"message":"dnsresolve: resolved"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %s:\n%s", want, out)
		}
	}
}

// TestResolveCached: ResolveCached never queries; it answers once Resolve
// has cached every record of the answer (SRV and each target's A), and
// says no while any one is missing or expired.
func TestResolveCached(t *testing.T) {
	s := newTestServer(t)
	s.add(t,
		"_sips._tcp.example.com. 60 IN SRV 10 10 5061 a.example.com.",
		"_sips._tcp.example.com. 60 IN SRV 20 10 5062 b.example.com.",
		"a.example.com. 60 IN A 192.0.2.1",
		"b.example.com. 30 IN A 192.0.2.2",
	)
	clock := newFakeClock()
	r := newTestResolver(t, Config{Servers: []string{s.addr}, MinTTL: time.Second}, clock)
	queries := func() int {
		return s.count("_sips._tcp.example.com.", dns.TypeSRV) + s.count("a.example.com.", dns.TypeA) + s.count("b.example.com.", dns.TypeA)
	}
	if _, ok := r.ResolveCached("example.com", 0); ok {
		t.Fatal("ResolveCached answered with an empty cache")
	}
	if n := queries(); n != 0 {
		t.Fatalf("ResolveCached sent %d queries", n)
	}
	want, err := r.Resolve(testCtx(t), "example.com", 0)
	if err != nil {
		t.Fatal(err)
	}
	n0 := queries()
	got, ok := r.ResolveCached("example.com", 0)
	if !ok {
		t.Fatal("ResolveCached did not answer after Resolve")
	}
	wantAddrs(t, got, want[0].Addr.String(), want[1].Addr.String())
	if n := queries(); n != n0 {
		t.Fatalf("ResolveCached queried (%d -> %d)", n0, n)
	}
	clock.Advance(31 * time.Second) // b's A expired, the SRV and a's A not
	if ts, ok := r.ResolveCached("example.com", 0); ok {
		t.Fatalf("ResolveCached answered %v with a target's address expired (a partial answer)", ts)
	}
	if ts, ok := r.ResolveCached("192.0.2.9", 5061); !ok || len(ts) != 1 {
		t.Fatalf("an IP literal: %v %v", ts, ok)
	}
}
