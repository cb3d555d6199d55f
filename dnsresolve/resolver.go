package dnsresolve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultPort        uint16 = 5061 // RFC 3261 §26.2.2 / RFC 3263 §4.2: default port for sips (TLS)
	DefaultTimeout            = 2 * time.Second
	DefaultAttempts           = 2
	DefaultMinTTL             = 5 * time.Second
	DefaultMaxTTL             = time.Hour
	DefaultNegativeTTL        = 30 * time.Second

	defaultResolvConf = "/etc/resolv.conf"
	ednsUDPSize       = 4096 // RFC 6891 §6.2.5 recommended starting value
	maxCNAMEChain     = 8
	srvPrefix         = "_sips._tcp." // RFC 3263 §4.2: SRV service for TLS
)

// Config configures a Resolver. Zero values select the defaults noted on
// each field.
type Config struct {
	// Servers lists DNS servers as "ip:port" (a bare IP means port 53).
	// Empty means the nameservers of /etc/resolv.conf.
	Servers []string
	// Timeout bounds one query attempt against one server. Default 2s.
	Timeout time.Duration
	// Attempts is the number of passes over Servers before giving up.
	// Default 2.
	Attempts int
	// MinTTL and MaxTTL clamp the TTL of cached answers. Defaults 5s and
	// 1h.
	MinTTL time.Duration
	MaxTTL time.Duration
	// NegativeTTL is the longest time an NXDOMAIN or NODATA answer is
	// cached (RFC 2308); a shorter SOA-derived TTL in the response wins,
	// but not below MinTTL. Default 30s.
	NegativeTTL time.Duration
	// IPv6 enables AAAA lookups (after A, per target) and IPv6 literal
	// hosts. Default false.
	IPv6 bool
}

// FromConfig returns the Config of the dns: section of an edge-sbc
// configuration. `edge-sbc run` and `edge-sbc check` both build their
// Resolver (and so their Client) from it.
func FromConfig(d config.DNS) Config {
	return Config{
		Servers:     d.Servers,
		Timeout:     d.Timeout,
		Attempts:    d.Attempts,
		MinTTL:      d.MinTTL,
		MaxTTL:      d.MaxTTL,
		NegativeTTL: d.NegativeTTL,
	}
}

// Option customises a Resolver or a Client beyond Config.
type Option func(*options)

type options struct {
	log        zerolog.Logger
	now        func() time.Time
	cacheSize  int
	resolvConf string
	intn       func(n int) int
}

// WithLogger makes the Resolver (and its Client) log queries and
// resolutions at debug level. The default is no logging.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) { o.log = l }
}

// WithClock replaces time.Now for cache expiry, e.g. with a fake clock in
// tests. now must be safe for concurrent use. Query timeouts always use the
// real clock.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithCacheSize bounds the number of cached (name, type) entries; the
// default is 10000. n must be positive.
func WithCacheSize(n int) Option {
	return func(o *options) { o.cacheSize = n }
}

// WithResolvConf sets the resolv.conf file read when Config.Servers is
// empty. The default is /etc/resolv.conf.
func WithResolvConf(path string) Option {
	return func(o *options) { o.resolvConf = path }
}

func newOptions(opts []Option) options {
	o := options{
		log:        zerolog.Nop(),
		now:        time.Now,
		cacheSize:  defaultCacheSize,
		resolvConf: defaultResolvConf,
		intn:       rand.IntN,
	}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o
}

// Target is one address to try, in the order returned by Resolve.
type Target struct {
	// Host is the SRV target name, or the URI host when no SRV record was
	// used, without trailing dot. It is the name to present in TLS SNI
	// and to check the peer certificate against (RFC 5922 §4).
	Host string
	// Addr is the IP address and port to connect to over TLS.
	Addr netip.AddrPort
	// Priority and Weight come from the SRV record (zero if !FromSRV).
	Priority uint16
	Weight   uint16
	// FromSRV reports whether the target came from a _sips._tcp SRV
	// record.
	FromSRV bool
}

// Resolver resolves sips: URI hosts to TLS targets per RFC 3263 §4. It
// caches answers and collapses concurrent identical queries; the queries
// themselves go through its Client. A Resolver is safe for concurrent use
// by multiple goroutines and owns no goroutines; it needs no closing.
type Resolver struct {
	cfg    Config
	client *Client
	log    zerolog.Logger
	now    func() time.Time
	intn   func(n int) int
	cache  *cache
	flight flight
}

// New validates cfg, applies defaults and returns a Resolver with its own
// Client (NewClient with the same cfg and options). It performs no network
// I/O; when cfg.Servers is empty it reads the resolv.conf file.
func New(cfg Config, opts ...Option) (*Resolver, error) {
	o := newOptions(opts)
	if o.cacheSize <= 0 {
		return nil, fmt.Errorf("%w: cache size %d must be positive", ErrInvalidConfig, o.cacheSize)
	}
	if cfg.MinTTL < 0 || cfg.MaxTTL < 0 || cfg.NegativeTTL < 0 {
		return nil, fmt.Errorf("%w: negative TTL bound", ErrInvalidConfig)
	}
	if cfg.MinTTL == 0 {
		cfg.MinTTL = DefaultMinTTL
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.MinTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("%w: MinTTL %s above MaxTTL %s", ErrInvalidConfig, cfg.MinTTL, cfg.MaxTTL)
	}
	client, err := NewClient(cfg, opts...)
	if err != nil {
		return nil, err
	}
	cfg.Timeout, cfg.Attempts, cfg.Servers = client.timeout, client.attempts, client.servers
	return &Resolver{
		cfg:    cfg,
		client: client,
		log:    o.log,
		now:    o.now,
		intn:   o.intn,
		cache:  newCache(o.cacheSize),
	}, nil
}

// Client returns the wire client the Resolver queries through (uncached).
func (r *Resolver) Client() *Client { return r.client }

// Config returns the effective configuration: defaults applied and Servers
// filled in.
func (r *Resolver) Config() Config {
	c := r.cfg
	c.Servers = r.client.Servers()
	return c
}

// Resolve returns the TLS targets for the host of a sips: URI, in the
// order to try them (RFC 3263 §4). port is the URI's explicit port, or 0
// if the URI has none.
//
//   - An IP literal (IPv6 optionally in brackets) yields that address with
//     port, or 5061.
//   - A domain name with a port yields its A records (then AAAA if
//     Config.IPv6) with that port; no SRV query is made (§4.2).
//   - A domain name without a port is looked up as _sips._tcp.<host> SRV,
//     ordered per RFC 2782, each target expanded to all its addresses; if
//     there is no SRV RRset the host's own addresses are used with 5061.
//
// Every address of every target is returned; the caller tries them in
// order and may reorder with Health.Order. Errors wrap ErrNoTargets,
// ErrNXDomain, ErrServFail, ErrTimeout, ErrServiceUnavailable,
// ErrInvalidHost or the context's error.
func (r *Resolver) Resolve(ctx context.Context, host string, port uint16) ([]Target, error) {
	if ip, ok := tlsconf.ParseIPLiteral(host); ok {
		if ip.Is6() && !r.cfg.IPv6 {
			return nil, fmt.Errorf("%w: IPv6 literal %s with IPv6 disabled", ErrInvalidHost, host)
		}
		if port == 0 {
			port = DefaultPort
		}
		return []Target{{Host: ip.String(), Addr: netip.AddrPortFrom(ip, port)}}, nil
	}

	name, fqdn, ok := canonicalName(host)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrInvalidHost, host)
	}
	var (
		ts  []Target
		err error
	)
	cacheOnly := ctx.Value(cacheOnlyKey{}) != nil
	if port != 0 {
		ts, err = r.appendTargets(ctx, nil, name, fqdn, port, 0, 0, false)
	} else {
		ts, err = r.resolveSRV(ctx, name, fqdn)
	}
	if err != nil {
		if !cacheOnly {
			r.log.Debug().Str("host", host).Uint16("port", port).Err(err).Msg("dnsresolve: resolve failed")
		}
		return nil, err
	}
	if !cacheOnly {
		r.log.Debug().Str("host", host).Uint16("port", port).Int("targets", len(ts)).Msg("dnsresolve: resolved")
	}
	return ts, nil
}

// cacheOnlyKey marks the context of ResolveCached: lookup answers from the
// cache or fails with errNotCached, never asking a server.
type cacheOnlyKey struct{}

// errNotCached is a record ResolveCached needed and the cache lacks.
var errNotCached = errors.New("dnsresolve: not cached")

// ResolveCached is Resolve answered from the cache alone, without any
// query or wait: ok is false when a record the answer needs is not
// cached, or the answer is an error (Resolve then gives it, and logs it).
// The SIP layer uses it to place a call without handing the lookup to
// another goroutine when the destination was resolved moments ago.
func (r *Resolver) ResolveCached(host string, port uint16) (ts []Target, ok bool) {
	ts, err := r.Resolve(context.WithValue(context.Background(), cacheOnlyKey{}, true), host, port)
	return ts, err == nil
}

// resolveSRV implements the no-port branch of RFC 3263 §4.2.
func (r *Resolver) resolveSRV(ctx context.Context, name, fqdn string) ([]Target, error) {
	set, err := r.lookup(ctx, srvPrefix+fqdn, dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	if set.neg != negNone {
		// §4.2: "If no SRV records were found, the client performs an A
		// or AAAA record lookup of the domain name" with the default port.
		return r.appendTargets(ctx, nil, name, fqdn, DefaultPort, 0, 0, false)
	}
	// RFC 2782: a single record with target "." means the service is
	// decidedly not available at this domain.
	if len(set.srv) == 1 && set.srv[0].Target == "." {
		return nil, fmt.Errorf("%w: %s%s", ErrServiceUnavailable, srvPrefix, name)
	}

	ordered := orderSRV(set.srv, r.intn)
	ts := make([]Target, 0, 2*len(ordered))
	var lastErr error
	for _, s := range ordered {
		if s.Target == "." || s.Port == 0 {
			continue
		}
		ts, err = r.appendTargets(ctx, ts, strings.TrimSuffix(s.Target, "."), s.Target, s.Port, s.Priority, s.Weight, true)
		if errors.Is(err, errNotCached) {
			return nil, err // ResolveCached: not a skipped target
		}
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, fmt.Errorf("dnsresolve: resolve %s: %w", name, context.Cause(ctx))
			}
			// §4.3: an unresolvable target is skipped, the next one tried.
			r.log.Debug().Str("target", s.Target).Err(err).Msg("dnsresolve: SRV target skipped")
			lastErr = err
		}
	}
	if len(ts) == 0 {
		if lastErr != nil {
			return nil, fmt.Errorf("%w: no SRV target of %s%s has an address: %w", ErrNoTargets, srvPrefix, name, lastErr)
		}
		return nil, fmt.Errorf("%w: no usable SRV target in %s%s", ErrNoTargets, srvPrefix, name)
	}
	return ts, nil
}

// appendTargets appends one Target per A (then AAAA) record of fqdn to dst,
// skipping addresses already in dst.
func (r *Resolver) appendTargets(ctx context.Context, dst []Target, host, fqdn string, port, prio, weight uint16, fromSRV bool) ([]Target, error) {
	n0 := len(dst)
	tmpl := Target{Host: host, Priority: prio, Weight: weight, FromSRV: fromSRV}

	a, err := r.lookup(ctx, fqdn, dns.TypeA)
	if err != nil {
		return dst, err
	}
	if a.neg == negNXDomain {
		return dst, fmt.Errorf("%w: %s", ErrNXDomain, host)
	}
	dst = appendAddrs(dst, tmpl, a.addrs, port)
	if r.cfg.IPv6 {
		aaaa, err := r.lookup(ctx, fqdn, dns.TypeAAAA)
		switch {
		case err == nil:
			dst = appendAddrs(dst, tmpl, aaaa.addrs, port)
		case errors.Is(err, errNotCached), len(dst) == n0:
			return dst, err
		default:
			r.log.Debug().Str("name", fqdn).Err(err).Msg("dnsresolve: AAAA lookup failed, using A records only")
		}
	}
	if len(dst) == n0 {
		return dst, fmt.Errorf("%w: %s has no address records", ErrNoTargets, host)
	}
	return dst, nil
}

// appendAddrs appends a copy of tmpl for each address of addrs with port,
// skipping addresses already in dst.
func appendAddrs(dst []Target, tmpl Target, addrs []netip.Addr, port uint16) []Target {
	for _, a := range addrs {
		tmpl.Addr = netip.AddrPortFrom(a, port)
		if !containsAddr(dst, tmpl.Addr) {
			dst = append(dst, tmpl)
		}
	}
	return dst
}

func containsAddr(ts []Target, ap netip.AddrPort) bool {
	for i := range ts {
		if ts[i].Addr == ap {
			return true
		}
	}
	return false
}

// lookup returns the rrset of (fqdn, qtype) from the cache or, collapsing
// concurrent identical queries, from the servers. Negative answers are
// reported in rrset.neg with a nil error; the error is for failures only.
func (r *Resolver) lookup(ctx context.Context, fqdn string, qtype uint16) (rrset, error) {
	k := cacheKey{name: fqdn, qtype: qtype}
	for {
		if set, ok := r.cache.get(k, r.now()); ok {
			return set, nil
		}
		if ctx.Value(cacheOnlyKey{}) != nil {
			return rrset{}, errNotCached
		}
		set, err, shared := r.flight.do(ctx, k, func() (rrset, error) { return r.query(ctx, k) })
		if err != nil && shared && ctx.Err() == nil && isContextErr(err) {
			// The caller that ran the query gave up (its context ended)
			// but ours is still live: query again.
			continue
		}
		return set, err
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// query asks the servers for k and caches the outcome, positive or negative.
func (r *Resolver) query(ctx context.Context, k cacheKey) (rrset, error) {
	// Another caller may have filled the cache between our miss and
	// becoming the flight leader.
	if set, ok := r.cache.get(k, r.now()); ok {
		return set, nil
	}
	start := time.Now()
	resp, server, err := r.client.Exchange(ctx, k.name, k.qtype)
	if err != nil {
		return rrset{}, err
	}
	set, ttl := r.parse(resp, k)
	now := r.now()
	r.cache.put(k, set, now, ttl)
	if k.qtype == dns.TypeSRV && set.neg == negNone {
		r.cacheAdditional(resp, set.srv, now)
	}
	r.log.Debug().
		Str("name", k.name).
		Str("type", dns.TypeToString[k.qtype]).
		Str("server", server).
		Str("rcode", dns.RcodeToString[resp.Rcode]).
		Int("records", len(set.srv)+len(set.addrs)).
		Dur("ttl", ttl).
		Dur("rtt", time.Since(start)).
		Msg("dnsresolve: query")
	return set, nil
}

// parse turns a NOERROR or NXDOMAIN response into an rrset and its cache
// lifetime. CNAME chains in the answer section are followed.
func (r *Resolver) parse(resp *dns.Msg, k cacheKey) (rrset, time.Duration) {
	if resp.Rcode == dns.RcodeNameError {
		return rrset{neg: negNXDomain}, r.negativeTTL(resp)
	}
	// Follow the CNAME chain from the query name (RFC 1034 §3.6.2).
	owner, minTTL, haveTTL := followCNAME(resp, k.name)
	noteTTL := func(t uint32) {
		if !haveTTL || t < minTTL {
			minTTL, haveTTL = t, true
		}
	}
	var set rrset
	for _, rr := range resp.Answer {
		h := rr.Header()
		if h.Rrtype != k.qtype || h.Class != dns.ClassINET || !strings.EqualFold(h.Name, owner) {
			continue
		}
		switch v := rr.(type) {
		case *dns.SRV:
			set.srv = append(set.srv, srvRecord{
				Target:   strings.ToLower(dns.Fqdn(v.Target)),
				Priority: v.Priority,
				Weight:   v.Weight,
				Port:     v.Port,
			})
		case *dns.A:
			if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
				set.addrs = append(set.addrs, a)
			} else {
				continue
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(v.AAAA.To16()); ok {
				set.addrs = append(set.addrs, a)
			} else {
				continue
			}
		default:
			continue
		}
		noteTTL(h.Ttl)
	}
	if len(set.srv) == 0 && len(set.addrs) == 0 {
		// NODATA (RFC 2308 §2.2).
		return rrset{neg: negNoData}, r.negativeTTL(resp)
	}
	return set, r.clampTTL(time.Duration(minTTL) * time.Second)
}

// cacheAdditional caches A (and, with IPv6, AAAA) records of the SRV
// targets found in the additional section (RFC 2782: "a server may
// include ... the address records of the targets"), so that no separate
// query is needed. Only records owned by a target of this SRV RRset are
// taken.
func (r *Resolver) cacheAdditional(resp *dns.Msg, srvs []srvRecord, now time.Time) {
	if len(resp.Extra) == 0 {
		return
	}
	type group struct {
		addrs []netip.Addr
		ttl   uint32
	}
	groups := make(map[cacheKey]*group)
	for _, rr := range resp.Extra {
		h := rr.Header()
		if h.Class != dns.ClassINET {
			continue
		}
		var addr netip.Addr
		var ok bool
		switch v := rr.(type) {
		case *dns.A:
			addr, ok = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			if !r.cfg.IPv6 {
				continue
			}
			addr, ok = netip.AddrFromSlice(v.AAAA.To16())
		}
		if !ok {
			continue
		}
		owner := strings.ToLower(dns.Fqdn(h.Name))
		if !isSRVTarget(srvs, owner) {
			continue
		}
		k := cacheKey{name: owner, qtype: h.Rrtype}
		g := groups[k]
		if g == nil {
			g = &group{ttl: h.Ttl}
			groups[k] = g
		}
		if h.Ttl < g.ttl {
			g.ttl = h.Ttl
		}
		g.addrs = append(g.addrs, addr)
	}
	for k, g := range groups {
		r.cache.put(k, rrset{addrs: g.addrs}, now, r.clampTTL(time.Duration(g.ttl)*time.Second))
	}
}

func isSRVTarget(srvs []srvRecord, name string) bool {
	for _, s := range srvs {
		if s.Target == name {
			return true
		}
	}
	return false
}

func (r *Resolver) clampTTL(d time.Duration) time.Duration {
	return min(max(d, r.cfg.MinTTL), r.cfg.MaxTTL)
}

// negativeTTL is how long to cache NXDOMAIN/NODATA: per RFC 2308 §5 the
// minimum of the SOA record's TTL and MINIMUM field when the server sent
// the SOA, bounded to [MinTTL, NegativeTTL]; NegativeTTL otherwise.
func (r *Resolver) negativeTTL(resp *dns.Msg) time.Duration {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			d := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			return min(max(d, r.cfg.MinTTL), r.cfg.NegativeTTL)
		}
	}
	return r.cfg.NegativeTTL
}

// canonicalName returns host lower-cased without and with the trailing dot,
// and whether it is a syntactically valid domain name.
func canonicalName(host string) (name, fqdn string, ok bool) {
	name = strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "" || strings.ContainsAny(name, " []/:") {
		return "", "", false
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return "", "", false
	}
	return name, name + ".", true
}

// String formats t for logs, e.g. "sip1.example.com 192.0.2.1:5061".
func (t Target) String() string {
	return t.Host + " " + t.Addr.String() + " prio=" + strconv.Itoa(int(t.Priority)) + " weight=" + strconv.Itoa(int(t.Weight))
}
