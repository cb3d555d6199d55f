package sip

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/config"
)

// This file plans a new call: which trunk it came from, where it goes and
// whether it may start (admission), with the media parameters of both
// legs. Planning does no I/O, so it is tested without sockets
// (plan_test.go).

// trunkRec is one trunk's configuration parsed once per config snapshot.
type trunkRec struct {
	name       string
	hasURI     bool
	uri        sip.Uri // the destination (sips:)
	identity   string  // the certificate name the peer must carry
	srtp       string  // passthrough, terminate or rtp
	advertise  netip.Addr
	allowPlain bool
	maxCalls   int
	cps        float64
	trusted    bool // identity headers from it may cross (for certificate-identified peers)
	redirect   string
	unauth     bool     // some listener maps peers without a certificate to it
	rewrites   rewrites // transforms and header operations toward it
	sipScheme  bool     // accept_sip_scheme: sip: URIs over TLS, both ways
	refer      string   // local or refuse
	health     config.Health
}

// policySnapshot is the reloadable part of the configuration, parsed once.
// Calls keep the snapshot current when they started; a reload never
// changes a snapshot in place.
type policySnapshot struct {
	cfg       *config.Config
	trunks    map[string]*trunkRec
	router    Router
	allow     map[string]bool // header allow-list
	bodyAllow map[string]bool // multipart part types that may cross
	trustedIP []netip.Prefix
	routes    []rewrites // per config route, by index
}

func newSnapshot(cfg *config.Config, router Router) (*policySnapshot, error) {
	s := &policySnapshot{
		cfg:       cfg,
		trunks:    map[string]*trunkRec{},
		router:    router,
		allow:     allowSet(cfg.SIP.HeaderAllowList),
		bodyAllow: allowSet(cfg.SIP.BodyAllowList),
	}
	if s.router == nil {
		s.router = NewRouter(cfg)
	}
	unauth := map[string]bool{}
	for _, l := range cfg.Listen {
		if l.UnauthenticatedTrunk != "" {
			unauth[l.UnauthenticatedTrunk] = true
		}
	}
	for i := range cfg.Trunks {
		t := &cfg.Trunks[i]
		r := &trunkRec{
			name: t.Name, identity: t.Identity, srtp: t.SRTP, allowPlain: t.AllowPlainRTP,
			maxCalls: t.MaxCalls, cps: t.CPS, trusted: t.IsTrusted(false), redirect: t.Redirect,
			unauth: unauth[t.Name], advertise: advertise(cfg, t),
			rewrites: compileRewrites(t.Transforms, t.Headers), sipScheme: t.AcceptSIPScheme,
			refer: t.Refer, health: t.Health,
		}
		if r.srtp == "" {
			r.srtp = "passthrough"
		}
		if t.URI != "" {
			u, err := config.ParseTrunkURI(t.URI)
			if err != nil {
				return nil, fmt.Errorf("sip: trunk %s: %w", t.Name, err)
			}
			r.hasURI, r.uri = true, u
		}
		s.trunks[t.Name] = r
	}
	for _, rt := range cfg.Routes {
		s.routes = append(s.routes, compileRewrites(rt.Transforms, rt.Headers))
	}
	for _, p := range cfg.Limits.TrustedSources {
		if pr, err := config.ParsePrefix(p); err == nil {
			s.trustedIP = append(s.trustedIP, pr)
		}
	}
	return s, nil
}

// routeRewrites returns the compiled transforms of route rt (compiled
// once per snapshot).
func (s *policySnapshot) routeRewrites(rt *config.Route) rewrites {
	for i := range s.cfg.Routes {
		if &s.cfg.Routes[i] == rt {
			return s.routes[i]
		}
	}
	return compileRewrites(rt.Transforms, rt.Headers)
}

// advertise is the address put in SDP toward trunk t: its media_address,
// else node.public_ipv4, else media.bind.
func advertise(cfg *config.Config, t *config.Trunk) netip.Addr {
	if t != nil && t.MediaAddress != "" {
		if a, err := netip.ParseAddr(t.MediaAddress); err == nil {
			return a
		}
	}
	if cfg.Node.PublicIPv4 != "" {
		if a, err := netip.ParseAddr(cfg.Node.PublicIPv4); err == nil {
			return a
		}
	}
	a, _ := netip.ParseAddr(cfg.Media.Bind)
	return a
}

// inbound describes a new INVITE for planning.
type inbound struct {
	trunk   string // the trunk the caller was identified as
	unauth  bool   // the caller showed no verified certificate
	user    string // Request-URI user
	host    string // Request-URI host
	streams int    // m-lines offered
}

// callPlan is a planned call: holding one is holding its admission slot
// until planner.release.
type callPlan struct {
	from, to *trunkRec
	route    rewrites // the route's transforms and header operations
	unauth   bool
	trusted  bool // identity headers from the caller may cross
	media    SessionParams
	counted  bool // the planner's counters count it (guarded by planner.mu)
	released bool // release ran (guarded by planner.mu)
}

// planner routes and admits new calls. It owns the admission counters
// (calls per trunk, in all, unauthenticated) and rate buckets. Safe for
// concurrent use.
type planner struct {
	mu       sync.Mutex // guards the fields below
	draining bool
	total    int
	unauth   int
	perTrunk map[string]int
	global   bucket
	unauthB  bucket
	buckets  map[string]*bucket
	now      func() time.Time
}

func newPlanner() *planner {
	return &planner{perTrunk: map[string]int{}, buckets: map[string]*bucket{}, now: time.Now}
}

// plan decides a new call. It returns the plan, or the refusal to answer
// with and the admission reason for the metrics ("" for routing
// refusals).
func (p *planner) plan(s *policySnapshot, in inbound) (*callPlan, refusal, string) {
	pl, r, why := p.route(s, in)
	if pl == nil {
		return nil, r, why
	}
	if r, why := p.admit(s, pl); why != "" {
		return nil, r, why
	}
	return pl, refusal{}, ""
}

// route plans a new call without admitting it: the caller's trunk, the
// stream cap, the route and the media parameters. With a cluster the
// admission follows in a helper goroutine (admission.go).
func (p *planner) route(s *policySnapshot, in inbound) (*callPlan, refusal, string) {
	from := s.trunks[in.trunk]
	if from == nil {
		return nil, refuseNotTrunk, ""
	}
	if max := s.cfg.Limits.MaxMediaStreams; max > 0 && in.streams > max {
		return nil, refuseTooManyStreams, "max_media_streams"
	}
	rt, err := s.router.Route(in.trunk, in.user, in.host)
	if err != nil {
		return nil, statusFor(err), ""
	}
	to := s.trunks[rt.To]
	if to == nil || !to.hasURI {
		return nil, statusFor(ErrNoRoute), ""
	}
	pl := &callPlan{from: from, to: to, unauth: in.unauth, trusted: !in.unauth && from.trusted,
		route: s.routeRewrites(rt)}
	pl.media = SessionParams{
		TrunkA: from.name, TrunkB: to.name,
		AllowPlainRTP: from.allowPlain && to.allowPlain,
		AdvertiseA:    from.advertise, AdvertiseB: to.advertise,
		SRTPA: from.srtp, SRTPB: to.srtp,
	}
	return pl, refusal{}, ""
}

// admit checks and takes the limits for plan pl (from trunk from to trunk
// to): draining, limits.max_calls and cps, the unauthenticated caps, each
// trunk's max_calls and the caller trunk's cps. A plan released already
// (the call ended while a cluster admission fell back to this one) is
// refused.
func (p *planner) admit(s *policySnapshot, pl *callPlan) (refusal, string) {
	lim := s.cfg.Limits
	from, to, unauth := pl.from, pl.to, pl.unauth
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case pl.released:
		return refuseEnded, "ended"
	case pl.counted:
		return refusal{}, ""
	case p.draining:
		return refuseDraining, "draining"
	case lim.MaxCalls > 0 && p.total >= lim.MaxCalls:
		return refuseCallLimit, "max_calls"
	case unauth && lim.UnauthenticatedMaxCalls > 0 && p.unauth >= lim.UnauthenticatedMaxCalls:
		return refuseCallLimit, "unauthenticated_max_calls"
	case from.maxCalls > 0 && p.perTrunk[from.name] >= from.maxCalls:
		return refuseCallLimit, "trunk_max_calls"
	case to.maxCalls > 0 && p.perTrunk[to.name] >= to.maxCalls:
		return refuseCallLimit, "trunk_max_calls"
	}
	// Rates last: a refused call must not consume a token.
	if !p.global.peek(lim.CPS, now) {
		return refuseRateLimit, "cps"
	}
	if unauth && !p.unauthB.peek(lim.UnauthenticatedCPS, now) {
		return refuseRateLimit, "unauthenticated_cps"
	}
	if from.cps > 0 && !p.bucketLocked(from.name).peek(from.cps, now) {
		return refuseRateLimit, "trunk_cps"
	}
	p.countLocked(lim, pl, now)
	return refusal{}, ""
}

// count counts plan pl without checking the limits: a call the cluster
// admitted, so that this node's counters (its fallback limits, the
// metrics) hold every call it carries. The rate buckets give what tokens
// they have.
func (p *planner) count(s *policySnapshot, pl *callPlan) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if pl.released || pl.counted {
		return
	}
	p.countLocked(s.cfg.Limits, pl, now)
}

func (p *planner) countLocked(lim config.Limits, pl *callPlan, now time.Time) {
	from, to := pl.from, pl.to
	if from.cps > 0 {
		p.bucketLocked(from.name).take(from.cps, now)
	}
	p.global.take(lim.CPS, now)
	if pl.unauth {
		p.unauthB.take(lim.UnauthenticatedCPS, now)
		p.unauth++
	}
	p.total++
	p.perTrunk[from.name]++
	if to.name != from.name {
		p.perTrunk[to.name]++
	}
	pl.counted = true
}

func (p *planner) bucketLocked(trunk string) *bucket {
	bk := p.buckets[trunk]
	if bk == nil {
		bk = &bucket{}
		p.buckets[trunk] = bk
	}
	return bk
}

// redirect moves a plan to a new destination trunk (a followed 3xx): the
// old destination's slot is given back and the new one's taken.
func (p *planner) redirect(s *policySnapshot, pl *callPlan, user, host string) (refusal, error) {
	to, rw, r, err := p.redirectRoute(s, pl, user, host)
	if err != nil {
		return r, err
	}
	return p.moveTo(pl, to, rw, true)
}

// redirectRoute routes a followed 3xx's contact from the plan's caller
// trunk.
func (p *planner) redirectRoute(s *policySnapshot, pl *callPlan, user, host string) (*trunkRec, rewrites, refusal, error) {
	rt, err := s.router.Route(pl.from.name, user, host)
	if err != nil {
		return nil, rewrites{}, statusFor(err), err
	}
	to := s.trunks[rt.To]
	if to == nil || !to.hasURI {
		return nil, rewrites{}, statusFor(ErrNoRoute), ErrNoRoute
	}
	return to, s.routeRewrites(rt), refusal{}, nil
}

// moveTo moves plan pl's destination to trunk to with route rw; check
// refuses a new destination trunk that is full (a cluster admitted it
// already when not).
func (p *planner) moveTo(pl *callPlan, to *trunkRec, rw rewrites, check bool) (refusal, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if check && to.name != pl.to.name && to.name != pl.from.name && to.maxCalls > 0 && p.perTrunk[to.name] >= to.maxCalls {
		return refuseCallLimit, fmt.Errorf("trunk %s is full", to.name)
	}
	if pl.counted && !pl.released {
		p.dropTrunkLocked(pl.to.name, pl.from.name)
		if to.name != pl.from.name {
			p.perTrunk[to.name]++
		}
	}
	pl.to = to
	pl.route = rw
	pl.media.TrunkB, pl.media.AdvertiseB, pl.media.SRTPB = to.name, to.advertise, to.srtp
	return refusal{}, nil
}

// transferTarget routes a blind transfer's new call, placed for the
// transferee (from its trunk), and checks the destination trunk has room.
func (p *planner) transferTarget(s *policySnapshot, from string, unauth bool, user, host string) (*trunkRec, rewrites, refusal, error) {
	to, rw, r, err := p.transferRoute(s, from, unauth, user, host)
	if err != nil {
		return nil, rewrites{}, r, err
	}
	if r, err := p.trunkRoom(to); err != nil {
		return nil, rewrites{}, r, err
	}
	return to, rw, refusal{}, nil
}

// transferRoute routes a blind transfer's new call from trunk from.
func (p *planner) transferRoute(s *policySnapshot, from string, unauth bool, user, host string) (*trunkRec, rewrites, refusal, error) {
	if unauth && !s.cfg.IsOwnDomain(host) {
		return nil, rewrites{}, statusFor(ErrNotOwnDomain), ErrNotOwnDomain
	}
	rt, err := s.router.Route(from, user, host)
	if err != nil {
		return nil, rewrites{}, statusFor(err), err
	}
	to := s.trunks[rt.To]
	if to == nil || !to.hasURI {
		return nil, rewrites{}, statusFor(ErrNoRoute), ErrNoRoute
	}
	return to, s.routeRewrites(rt), refusal{}, nil
}

// trunkRoom refuses a transfer toward a trunk at its max_calls.
func (p *planner) trunkRoom(to *trunkRec) (refusal, error) {
	p.mu.Lock()
	full := to.maxCalls > 0 && p.perTrunk[to.name] >= to.maxCalls
	p.mu.Unlock()
	if full {
		return refuseCallLimit, fmt.Errorf("trunk %s is full", to.name)
	}
	return refusal{}, nil
}

// retrunk moves a plan's leg on side to trunk to (a completed transfer):
// the old trunk's slot is given back, the new one's taken.
func (p *planner) retrunk(pl *callPlan, side Side, to *trunkRec) {
	p.mu.Lock()
	defer p.mu.Unlock()
	counted := pl.counted && !pl.released
	if side == SideA {
		if counted && pl.from.name != pl.to.name {
			p.dropTrunkLocked(pl.from.name, "")
		}
		if counted && to.name != pl.to.name {
			p.perTrunk[to.name]++
		}
		pl.from = to
		return
	}
	if counted && pl.to.name != pl.from.name {
		p.dropTrunkLocked(pl.to.name, "")
	}
	if counted && to.name != pl.from.name {
		p.perTrunk[to.name]++
	}
	pl.to = to
}

// release gives back a plan's admission slot; it runs once per plan.
func (p *planner) release(pl *callPlan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pl.released {
		return
	}
	pl.released = true
	if !pl.counted {
		return
	}
	p.total--
	if pl.unauth {
		p.unauth--
	}
	p.dropTrunkLocked(pl.from.name, "")
	if pl.to.name != pl.from.name {
		p.dropTrunkLocked(pl.to.name, "")
	}
}

func (p *planner) dropTrunkLocked(name, keepIf string) {
	if name == keepIf {
		return
	}
	if p.perTrunk[name]--; p.perTrunk[name] <= 0 {
		delete(p.perTrunk, name)
	}
}

func (p *planner) setDraining(v bool) {
	p.mu.Lock()
	p.draining = v
	p.mu.Unlock()
}

func (p *planner) isDraining() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.draining
}

// counts returns the calls admitted in all and per trunk.
func (p *planner) counts() (int, map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]int, len(p.perTrunk))
	for k, v := range p.perTrunk {
		m[k] = v
	}
	return p.total, m
}

// bucket is a token bucket: rate tokens per second, burst max(rate, 1).
// Not safe for concurrent use: its owner's mutex guards it.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) refill(rate float64, now time.Time) {
	burst := max(rate, 1)
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
}

// peek reports whether a token is available (rate 0: unlimited).
func (b *bucket) peek(rate float64, now time.Time) bool {
	if rate <= 0 {
		return true
	}
	b.refill(rate, now)
	return b.tokens >= 1
}

// take takes a token if one is available.
func (b *bucket) take(rate float64, now time.Time) bool {
	if rate <= 0 {
		return true
	}
	b.refill(rate, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// isLoop reports whether a Via of req was written by this SBC: the request
// left here and came back (RFC 3261 §16.3 item 4, applied to a B2BUA).
func isLoop(req *sip.Request, fqdn string) bool {
	for h := range headersNamed(req, "Via") {
		v, ok := h.(*sip.ViaHeader)
		if !ok || !strings.EqualFold(v.Host, fqdn) {
			continue
		}
		if br, ok := v.Params.Get("branch"); ok && strings.HasPrefix(br, branchPrefix) {
			return true
		}
	}
	return false
}
