package sip

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/dnsresolve"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// This file watches the trunks' targets with OPTIONS pings (trunks[].health,
// like Kamailio's dispatcher or Expressway's zone monitoring): every
// resolved target (address:port) of a monitored trunk is pinged over TLS
// each interval, on the connection the calls use; a target that misses
// down_after pings in a row (no answer in time, or 503) is down until
// up_after pings in a row are answered, and new calls skip it before any
// INVITE is sent. A 503 with Retry-After keeps it down that long.

// targetState is what the monitor knows of one target.
type targetState struct {
	trunk, addr, host string
	known             bool // a ping has been judged
	up                bool
	fails, oks        int
	rtt               time.Duration
	downUntil         time.Time // a 503 Retry-After
	last              time.Time
	inFlight          bool
}

// TargetHealth is the monitor's view of one target (for check and tests).
type TargetHealth struct {
	Trunk  string        `json:"trunk"`
	Target string        `json:"target"`
	Host   string        `json:"host"`
	Known  bool          `json:"known"`
	Up     bool          `json:"up"`
	RTT    time.Duration `json:"rtt_ns"`
	Last   time.Time     `json:"last"`
}

// monitor pings the targets of monitored trunks. It is owned by the B2BUA
// (started by Start, stopped by Close).
type monitor struct {
	b *B2BUA

	mu      sync.Mutex // guards targets and orders their metric series with them
	targets map[string]*targetState
}

func targetKey(trunk, addr string) string { return trunk + "|" + addr }

// run pings until ctx ends. Each trunk's round starts every interval;
// pings of one round run in parallel (owned helpers, bounded by the
// number of targets).
func (m *monitor) run(ctx context.Context) {
	next := map[string]time.Time{}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		s := m.b.snap()
		for name, t := range s.trunks {
			if t.health.Interval <= 0 || !t.hasURI {
				continue
			}
			if now.Before(next[name]) {
				continue
			}
			next[name] = now.Add(t.health.Interval)
			m.round(ctx, t)
		}
		for name := range next {
			if t := s.trunks[name]; t == nil || t.health.Interval <= 0 {
				delete(next, name)
				m.forgetTrunk(name)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// round resolves a trunk (the resolver's cache follows the DNS TTLs) and
// pings each of its targets.
func (m *monitor) round(ctx context.Context, t *trunkRec) {
	m.b.spawn(func() {
		rctx, cancel := context.WithTimeout(ctx, t.health.Timeout)
		targets, err := m.b.resolver.Resolve(rctx, t.uri.Host, uint16(max(t.uri.Port, 0)))
		cancel()
		if err != nil {
			m.b.log.Warn().Err(err).Str("trunk", t.name).Msg("health: trunk did not resolve")
			return
		}
		live := map[string]bool{}
		for _, tg := range targets {
			m.b.trustTarget(tg.Addr.Addr())
			live[tg.Addr.String()] = true
			st := m.state(t.name, tg)
			m.mu.Lock()
			busy := st.inFlight
			st.inFlight = true
			m.mu.Unlock()
			if busy {
				continue
			}
			m.b.spawn(func() { m.ping(ctx, t, tg, st) })
		}
		m.mu.Lock()
		for k, st := range m.targets {
			if st.trunk == t.name && !live[st.addr] {
				delete(m.targets, k) // no longer in DNS
				m.forgetMetrics(st)
			}
		}
		m.mu.Unlock()
	})
}

func (m *monitor) state(trunk string, tg dnsresolve.Target) *targetState {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := targetKey(trunk, tg.Addr.String())
	st := m.targets[k]
	if st == nil {
		st = &targetState{trunk: trunk, addr: tg.Addr.String(), host: tg.Host}
		m.targets[k] = st
	}
	return st
}

func (m *monitor) forgetTrunk(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, st := range m.targets {
		if st.trunk == name {
			delete(m.targets, k)
			m.forgetMetrics(st)
		}
	}
}

// forgetMetrics removes the series of a target the monitor no longer
// watches, so that /metrics (and `edge-sbc check`, which reads it) does
// not report it.
func (m *monitor) forgetMetrics(st *targetState) {
	m.b.metrics.TargetUp.DeleteLabelValues(st.trunk, st.addr)
	m.b.metrics.TargetPing.DeleteLabelValues(st.trunk, st.addr)
}

// pinger receives the events of one OPTIONS transaction.
type pinger chan event

func (p pinger) post(ev event) {
	select {
	case p <- ev:
	default:
	}
}

// ping sends one OPTIONS to a target and judges the answer: any final
// response is alive, except 503 (down, for its Retry-After) and no answer
// within the timeout.
func (m *monitor) ping(ctx context.Context, t *trunkRec, tg dnsresolve.Target, st *targetState) {
	defer func() {
		m.mu.Lock()
		st.inFlight = false
		m.mu.Unlock()
	}()
	sni := tg.Host
	if _, ok := tlsconf.ParseIPLiteral(sni); ok {
		sni = ""
	}
	pctx, cancel := context.WithTimeout(ctx, t.health.Timeout)
	defer cancel()
	start := time.Now()
	cn, err := m.b.tp.dial(pctx, tg.Addr.String(), sni, t.identity)
	if err != nil {
		m.judge(t, st, false, 0, 0, err.Error())
		return
	}
	req := m.b.options(t, tg)
	ch := make(pinger, 4)
	tx, err := m.b.send(cn, req, ch, nil)
	if err != nil {
		m.judge(t, st, false, 0, 0, err.Error())
		return
	}
	defer m.b.txl.dropClient(tx)
	for {
		select {
		case ev := <-ch:
			if ev.kind != evResponse {
				m.judge(t, st, false, 0, 0, ev.kind.String())
				return
			}
			if ev.res.StatusCode < 200 {
				continue
			}
			rtt := time.Since(start)
			if ev.res.StatusCode == 503 {
				m.judge(t, st, false, retryAfter(ev.res), rtt, "503")
				return
			}
			m.judge(t, st, true, 0, rtt, strconv.Itoa(ev.res.StatusCode))
			return
		case <-pctx.Done():
			if ctx.Err() == nil {
				m.judge(t, st, false, 0, 0, fmt.Sprintf("no answer within %s", t.health.Timeout))
			}
			return
		}
	}
}

// judge applies one ping result to a target's state.
func (m *monitor) judge(t *trunkRec, st *targetState, ok bool, retry time.Duration, rtt time.Duration, why string) {
	m.mu.Lock()
	was, known := st.up, st.known
	st.last = time.Now()
	if ok {
		st.oks++
		st.fails = 0
		st.rtt = rtt
		if !st.known || (!st.up && st.oks >= t.health.UpAfter) {
			st.up, st.known = true, true
		}
	} else {
		st.fails++
		st.oks = 0
		if retry > 0 {
			st.downUntil = time.Now().Add(retry)
			st.up, st.known = false, true
		} else if !st.known || (st.up && st.fails >= t.health.DownAfter) {
			st.up, st.known = false, true
		}
	}
	up := st.up
	// The target's series are set under the lock, and only while the
	// monitor still watches it: forgetMetrics (under the lock too) must
	// not be undone by a ping that was in flight.
	if m.targets[targetKey(st.trunk, st.addr)] == st {
		v := 0.0
		if up {
			v = 1
		}
		m.b.metrics.TargetUp.WithLabelValues(t.name, st.addr).Set(v)
		if ok {
			m.b.metrics.TargetPing.WithLabelValues(t.name, st.addr).Set(rtt.Seconds())
		}
	}
	m.mu.Unlock()
	if ok {
		m.b.metrics.PingSeconds.WithLabelValues(t.name).Observe(rtt.Seconds())
	}
	if !known || was != up {
		ev := m.b.log.Info()
		if !up {
			ev = m.b.log.Warn()
		}
		ev.Str("trunk", t.name).Str("target", st.addr).Str("host", st.host).Bool("up", up).Str("last", why).
			Msg("health: trunk target state")
	}
}

// options builds the OPTIONS ping of a target: a proper sips: From, To
// and Contact on our FQDN (cloud peers ignore OPTIONS without a Contact).
func (b *B2BUA) options(t *trunkRec, tg dnsresolve.Target) *sip.Request {
	fqdn := b.conf().Node.FQDN
	host := tg.Host
	if host == "" {
		host = tg.Addr.Addr().String()
	}
	ruri := sip.Uri{Scheme: "sips", Host: host, Port: int(tg.Addr.Port())}
	req := sip.NewRequest(sip.OPTIONS, ruri)
	req.AppendHeader(b.via(newBranch()))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	fp := sip.NewParams()
	fp.Add("tag", newTag())
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sips", User: "ping", Host: fqdn}, Params: fp})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sips", Host: t.uri.Host}, Params: sip.NewParams()})
	cid := sip.CallIDHeader(newCallID())
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	req.AppendHeader(b.contact())
	req.AppendHeader(sip.NewHeader("Allow", methodsAllowed))
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	req.AppendHeader(sip.NewHeader("Supported", optionTags))
	req.SetBody(nil)
	req.SetTransport("TLS")
	return req
}

// down reports whether the monitor considers a target of trunk down (a
// target never judged, or of an unmonitored trunk, is not down).
func (m *monitor) down(trunk, addr string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.targets[targetKey(trunk, addr)]
	if st == nil || !st.known {
		return false
	}
	return !st.up || time.Now().Before(st.downUntil)
}

// Health returns the monitor's view of every monitored target.
func (b *B2BUA) Health() []TargetHealth {
	m := b.mon
	m.mu.Lock()
	out := make([]TargetHealth, 0, len(m.targets))
	for _, st := range m.targets {
		out = append(out, TargetHealth{Trunk: st.trunk, Target: st.addr, Host: st.host, Known: st.known,
			Up: st.known && st.up && !time.Now().Before(st.downUntil), RTT: st.rtt, Last: st.last})
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Trunk != out[j].Trunk {
			return out[i].Trunk < out[j].Trunk
		}
		return out[i].Target < out[j].Target
	})
	return out
}

// Ready reports whether every trunk with health.ready_requires_targets has
// a live target (for /readyz).
func (b *B2BUA) Ready() error {
	for name, t := range b.snap().trunks {
		if t.health.Interval <= 0 || !t.health.ReadyRequiresTargets {
			continue
		}
		live := false
		for _, h := range b.Health() {
			if h.Trunk == name && h.Up {
				live = true
			}
		}
		if !live {
			return fmt.Errorf("trunk %s has no live target", name)
		}
	}
	return nil
}
