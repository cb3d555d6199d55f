package dnsresolve

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/edge-sbc/edge-sbc/config"
)

func newTestClient(t *testing.T, servers ...string) *Client {
	t.Helper()
	c, err := NewClient(Config{Servers: servers, Timeout: 500 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClientLookup: Lookup returns the records of the question's type,
// following the CNAME chain; NXDOMAIN and NODATA are no records, no error;
// a truncated UDP answer is asked again over TCP; nothing is cached.
func TestClientLookup(t *testing.T) {
	s := newTestServer(t)
	s.add(t,
		"1.2.0.192.in-addr.arpa. 300 IN PTR sbc.example.com.",
		"nodata.example.com. 300 IN TXT \"x\"",
	)
	s.set("sbc.example.com.", dns.TypeA, &answerSpec{answer: []dns.RR{
		mustRR(t, "sbc.example.com. 300 IN CNAME lb.example.net."),
		mustRR(t, "lb.example.net. 300 IN A 192.0.2.1"),
		mustRR(t, "other.example.net. 300 IN A 192.0.2.99"),
	}})
	s.set("_sips._tcp.example.com.", dns.TypeSRV, &answerSpec{truncateUDP: true, answer: []dns.RR{
		mustRR(t, "_sips._tcp.example.com. 300 IN SRV 10 10 5061 sbc.example.com."),
	}})
	c := newTestClient(t, s.addr)
	ctx := testCtx(t)

	rrs, err := c.Lookup(ctx, "SBC.example.com", dns.TypeA)
	if err != nil || len(rrs) != 1 || rrs[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Errorf("A via CNAME = %v, %v; want 192.0.2.1 only", rrs, err)
	}
	rrs, err = c.Lookup(ctx, "1.2.0.192.in-addr.arpa.", dns.TypePTR)
	if err != nil || len(rrs) != 1 || rrs[0].(*dns.PTR).Ptr != "sbc.example.com." {
		t.Errorf("PTR = %v, %v", rrs, err)
	}
	rrs, err = c.Lookup(ctx, "_sips._tcp.example.com", dns.TypeSRV)
	if err != nil || len(rrs) != 1 {
		t.Errorf("SRV = %v, %v", rrs, err)
	}
	if n := s.tcpCount("_sips._tcp.example.com.", dns.TypeSRV); n != 1 {
		t.Errorf("truncated answer: %d TCP queries, want 1", n)
	}
	for _, name := range []string{"nodata.example.com", "missing.example.com"} {
		if rrs, err := c.Lookup(ctx, name, dns.TypeA); err != nil || len(rrs) != 0 {
			t.Errorf("%s: %v, %v; want no records, no error", name, rrs, err)
		}
	}
	if _, err := c.Lookup(ctx, "sbc.example.com", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	if n := s.count("sbc.example.com.", dns.TypeA); n != 2 {
		t.Errorf("%d queries for the same question, want 2 (the client does not cache)", n)
	}
}

// TestClientErrors: a server failure and a silent server are told apart
// (ErrServFail, ErrTimeout).
func TestClientErrors(t *testing.T) {
	s := newTestServer(t)
	s.setForceRcode(dns.RcodeServerFailure)
	if _, err := newTestClient(t, s.addr).Lookup(testCtx(t), "a.example.com", dns.TypeA); !errors.Is(err, ErrServFail) {
		t.Errorf("SERVFAIL: err = %v, want ErrServFail", err)
	}
	c, err := NewClient(Config{Servers: []string{newSilentServer(t)}, Timeout: 100 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(testCtx(t), "a.example.com", dns.TypeA); !errors.Is(err, ErrTimeout) {
		t.Errorf("silent server: err = %v, want ErrTimeout", err)
	}
}

// TestResolverUsesItsClient: the Resolver's Client is the one it queries
// through, with the servers and timeouts of the Config, and FromConfig maps
// the dns: section of the configuration.
func TestResolverUsesItsClient(t *testing.T) {
	s := newTestServer(t)
	s.add(t, "sip.example.com. 300 IN A 192.0.2.1")
	cfg := FromConfig(config.DNS{Servers: []string{s.addr}, Timeout: time.Second, Attempts: 3,
		MinTTL: time.Second, MaxTTL: time.Minute, NegativeTTL: 2 * time.Second, DownTime: time.Hour})
	want := Config{Servers: []string{s.addr}, Timeout: time.Second, Attempts: 3,
		MinTTL: time.Second, MaxTTL: time.Minute, NegativeTTL: 2 * time.Second}
	if cfg.Timeout != want.Timeout || cfg.Attempts != want.Attempts || cfg.MinTTL != want.MinTTL ||
		cfg.MaxTTL != want.MaxTTL || cfg.NegativeTTL != want.NegativeTTL || len(cfg.Servers) != 1 || cfg.Servers[0] != s.addr {
		t.Errorf("FromConfig = %+v, want %+v", cfg, want)
	}
	r := newTestResolver(t, cfg, nil)
	c := r.Client()
	if got := c.Servers(); len(got) != 1 || got[0] != s.addr || c.timeout != time.Second || c.attempts != 3 {
		t.Errorf("client servers %v timeout %s attempts %d", got, c.timeout, c.attempts)
	}
	if _, err := c.Lookup(testCtx(t), "sip.example.com", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(testCtx(t), "sip.example.com", 5061); err != nil {
		t.Fatal(err)
	}
	if n := s.count("sip.example.com.", dns.TypeA); n != 2 {
		t.Errorf("%d queries at the server, want 2 (one from the client, one from the resolver)", n)
	}
}

func TestNewClientConfig(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 192.0.2.53\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(Config{}, WithResolvConf(rc))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Servers(); len(got) != 1 || got[0] != "192.0.2.53:53" || c.timeout != DefaultTimeout || c.attempts != DefaultAttempts {
		t.Errorf("servers %v timeout %s attempts %d", got, c.timeout, c.attempts)
	}
	for name, cfg := range map[string]Config{
		"neg timeout":  {Servers: []string{"127.0.0.1:53"}, Timeout: -1},
		"neg attempts": {Servers: []string{"127.0.0.1:53"}, Attempts: -1},
		"bad server":   {Servers: []string{"dns.example.com"}},
	} {
		if _, err := NewClient(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := NewClient(Config{}, WithResolvConf(filepath.Join(dir, "missing"))); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("missing resolv.conf: err = %v", err)
	}
}
