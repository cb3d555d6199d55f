package sip

import (
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Admission decides whether a new call may start. Each result maps to its
// own SIP status (livekit/sip style).

type admission int

const (
	admitOK admission = iota
	admitDraining
	admitTooManyCalls
	admitTrunkFull
	admitRateLimited
	admitTrunkRateLimited
	admitLoop
)

func (a admission) String() string {
	return [...]string{"ok", "draining", "max_calls", "trunk_max_calls", "cps", "trunk_cps", "loop"}[a]
}

// refusal maps an admission result to the response sent.
func (a admission) refusal() *refusal {
	switch a {
	case admitLoop:
		return &refusal{482, "Loop Detected", "the request came back to this SBC"}
	case admitDraining:
		return &refusal{503, "Service Unavailable", "draining"}
	case admitTooManyCalls, admitTrunkFull:
		return &refusal{503, "Service Unavailable", "call limit reached"}
	default:
		return &refusal{503, "Service Unavailable", "call rate limit reached"}
	}
}

// bucket is a token bucket: rate tokens per second, burst max(rate, 1).
// Not safe for concurrent use; admitter's mutex guards it.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(rate float64, now time.Time) bool {
	if rate <= 0 {
		return true
	}
	burst := max(rate, 1)
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// admitter holds the rate state of admission; the counts of calls come from
// the B2BUA's call table.
type admitter struct {
	mu     sync.Mutex // guards the buckets
	global bucket
	trunks map[string]*bucket
}

// admit checks limits for a new call from trunk from to trunk to. active
// counts the calls in progress globally and per trunk (either leg).
func (b *B2BUA) admit(req *sip.Request, from, to string) admission {
	cfg := b.conf()
	b.mu.Lock()
	draining := b.draining
	total := len(b.calls)
	perFrom, perTo := b.trunkCalls[from], b.trunkCalls[to]
	b.mu.Unlock()
	switch {
	case draining:
		return admitDraining
	case cfg.Limits.MaxCalls > 0 && total >= cfg.Limits.MaxCalls:
		return admitTooManyCalls
	}
	if t := cfg.Trunk(from); t != nil && t.MaxCalls > 0 && perFrom >= t.MaxCalls {
		return admitTrunkFull
	}
	if t := cfg.Trunk(to); t != nil && t.MaxCalls > 0 && perTo >= t.MaxCalls {
		return admitTrunkFull
	}
	now := time.Now()
	b.adm.mu.Lock()
	defer b.adm.mu.Unlock()
	if !b.adm.global.take(cfg.Limits.CPS, now) {
		return admitRateLimited
	}
	if t := cfg.Trunk(from); t != nil && t.CPS > 0 {
		if b.adm.trunks == nil {
			b.adm.trunks = map[string]*bucket{}
		}
		bk := b.adm.trunks[from]
		if bk == nil {
			bk = &bucket{}
			b.adm.trunks[from] = bk
		}
		if !bk.take(t.CPS, now) {
			return admitTrunkRateLimited
		}
	}
	return admitOK
}

// isLoop reports whether a Via of req was written by this SBC: the request
// left here and came back (RFC 3261 §16.3 item 4, applied to a B2BUA).
func isLoop(req *sip.Request, fqdn string) bool {
	for _, h := range req.GetHeaders("Via") {
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
