package dnsresolve

import (
	"net/netip"
	"sync"
	"time"
)

// DefaultDownFor is how long NewHealth keeps an address down when given a
// non-positive duration.
const DefaultDownFor = 30 * time.Second

// healthPruneAt is the map size above which MarkDown drops expired entries.
const healthPruneAt = 1024

// Health tracks target addresses that recently failed (TLS connect error,
// handshake failure, transaction timeout, 503 ...), keyed by address and
// port, not by domain: one SRV target going down does not affect the
// others, nor the same host reached on another port. This is the
// blacklisting RFC 3263 §4.3 leaves to the client between attempts.
//
// An address is down from MarkDown until downFor has elapsed or MarkUp is
// called. Health is safe for concurrent use; the zero value is not usable,
// use NewHealth.
type Health struct {
	mu      sync.Mutex
	downFor time.Duration
	now     func() time.Time
	down    map[netip.AddrPort]downState
}

type downState struct {
	until time.Time
	cause string
}

// NewHealth returns a Health that keeps an address down for downFor after
// MarkDown (DefaultDownFor if downFor <= 0). now supplies the time; nil
// means time.Now.
func NewHealth(downFor time.Duration, now func() time.Time) *Health {
	if downFor <= 0 {
		downFor = DefaultDownFor
	}
	if now == nil {
		now = time.Now
	}
	return &Health{downFor: downFor, now: now, down: make(map[netip.AddrPort]downState)}
}

// MarkDown records that addr failed, for cause, starting now. Marking an
// address that is already down extends its down period.
func (h *Health) MarkDown(addr netip.AddrPort, cause string) {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.down) >= healthPruneAt {
		for a, s := range h.down {
			if !now.Before(s.until) {
				delete(h.down, a)
			}
		}
	}
	h.down[addr] = downState{until: now.Add(h.downFor), cause: cause}
}

// MarkUp clears any down state of addr, e.g. after a successful
// connection.
func (h *Health) MarkUp(addr netip.AddrPort) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.down, addr)
}

// IsDown reports whether addr is currently marked down.
func (h *Health) IsDown(addr netip.AddrPort) bool {
	_, down := h.Cause(addr)
	return down
}

// Cause returns the cause given to MarkDown and true if addr is currently
// down, or "" and false.
func (h *Health) Cause(addr netip.AddrPort) (string, bool) {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.causeLocked(addr, now)
}

func (h *Health) causeLocked(addr netip.AddrPort, now time.Time) (string, bool) {
	s, ok := h.down[addr]
	if !ok {
		return "", false
	}
	if !now.Before(s.until) {
		delete(h.down, addr)
		return "", false
	}
	return s.cause, true
}

// Order returns a new slice with the targets of ts that are up first and
// the ones that are down last. The order is stable: targets keep their
// relative order within each group, so the RFC 2782 order computed by
// Resolve is preserved. ts is not modified.
func (h *Health) Order(ts []Target) []Target {
	out := make([]Target, 0, len(ts))
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.down) == 0 {
		return append(out, ts...)
	}
	var downIdx []int
	for i, t := range ts {
		if _, down := h.causeLocked(t.Addr, now); down {
			downIdx = append(downIdx, i)
			continue
		}
		out = append(out, t)
	}
	for _, i := range downIdx {
		out = append(out, ts[i])
	}
	return out
}
