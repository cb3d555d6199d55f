package dnsresolve

import (
	"net/netip"
	"time"
)

// MarkDownFor records that addr failed and keeps it down for d (at least
// the Health's own down period), e.g. the Retry-After of a 503 (RFC 3261
// §21.5.4).
func (h *Health) MarkDownFor(addr netip.AddrPort, d time.Duration, cause string) {
	if d < h.downFor {
		d = h.downFor
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down[addr] = downState{until: now.Add(d), cause: cause}
}
