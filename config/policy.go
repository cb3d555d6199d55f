package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Defaults of the hardening and call-policy keys (limits.write_timeout and
// the other caps, trunks[].trusted and redirect).
const (
	DefaultWriteTimeout            = 5 * time.Second
	DefaultTrunkWriteTimeout       = 30 * time.Second
	DefaultMaxConnections          = 4096
	DefaultHandshakesPerSecond     = 200
	DefaultMaxPendingPerConnection = 256
	DefaultSetupQueueTimeout       = 10 * time.Second
	DefaultUnauthenticatedMaxCalls = 50
	DefaultUnauthenticatedCPS      = 5
	DefaultMaxMediaStreams         = 8
	DefaultRedirect                = "follow"
)

// applyPolicyDefaults fills the keys above that are absent; an explicit 0
// keeps its documented meaning (no timeout, no cap).
func (c *Config) applyPolicyDefaults(set keySet) {
	l := &c.Limits
	if !set["limits.write_timeout"] {
		l.WriteTimeout = DefaultWriteTimeout
	}
	if !set["limits.trunk_write_timeout"] {
		l.TrunkWriteTimeout = DefaultTrunkWriteTimeout
	}
	if !set["limits.max_connections"] {
		l.MaxConnections = DefaultMaxConnections
	}
	if !set["limits.handshakes_per_second"] {
		l.HandshakesPerSecond = DefaultHandshakesPerSecond
	}
	if !set["limits.max_pending_per_connection"] {
		l.MaxPendingPerConnection = DefaultMaxPendingPerConnection
	}
	if !set["limits.setup_queue_timeout"] {
		l.SetupQueueTimeout = DefaultSetupQueueTimeout
	}
	if !set["limits.unauthenticated_max_calls"] {
		l.UnauthenticatedMaxCalls = DefaultUnauthenticatedMaxCalls
	}
	if !set["limits.unauthenticated_cps"] {
		l.UnauthenticatedCPS = DefaultUnauthenticatedCPS
	}
	if !set["limits.max_media_streams"] {
		l.MaxMediaStreams = DefaultMaxMediaStreams
	}
	for i := range c.Trunks {
		if c.Trunks[i].Redirect == "" {
			c.Trunks[i].Redirect = DefaultRedirect
		}
	}
}

func (c *Config) validatePolicy() error {
	l := c.Limits
	switch {
	case l.WriteTimeout < 0:
		return bad("limits.write_timeout", "must be positive")
	case l.TrunkWriteTimeout < 0:
		return bad("limits.trunk_write_timeout", "must be positive, or 0 for no timeout")
	case l.MaxConnections < 0:
		return bad("limits.max_connections", "must be positive")
	case l.HandshakesPerSecond < 0:
		return bad("limits.handshakes_per_second", "must be positive")
	case l.MaxPendingPerConnection < 0:
		return bad("limits.max_pending_per_connection", "must be positive")
	case l.SetupQueueTimeout < 0:
		return bad("limits.setup_queue_timeout", "must be positive, or 0 to start every call at once")
	case l.UnauthenticatedMaxCalls < 0:
		return bad("limits.unauthenticated_max_calls", "must be positive")
	case l.UnauthenticatedCPS < 0:
		return bad("limits.unauthenticated_cps", "must be positive")
	case l.MaxMediaStreams < 0 || l.MaxMediaStreams > 16:
		return bad("limits.max_media_streams", "%d: must be between 0 (the media layer's cap of 16) and 16", l.MaxMediaStreams)
	}
	for i, s := range l.TrustedSources {
		if _, err := ParsePrefix(s); err != nil {
			return bad(fmt.Sprintf("limits.trusted_sources[%d]", i), "%v", err)
		}
	}
	for i, t := range c.Trunks {
		switch t.Redirect {
		case "follow", "relay", "refuse":
		default:
			return bad(fmt.Sprintf("trunks[%d].redirect", i), "%q: must be follow, relay or refuse", t.Redirect)
		}
	}
	for i, ct := range c.SIP.BodyAllowList {
		if !strings.Contains(ct, "/") || strings.ContainsAny(ct, " ;,\t") {
			return bad(fmt.Sprintf("sip.body_allow_list[%d]", i), "%q is not a content type (type/subtype)", ct)
		}
		if strings.HasPrefix(strings.ToLower(ct), "multipart/") {
			return bad(fmt.Sprintf("sip.body_allow_list[%d]", i), "%q: nested multipart bodies never cross", ct)
		}
	}
	return nil
}

// ParsePrefix parses a CIDR or a single address (a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an address: %w", s, err)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// IsTrusted reports whether identity headers from trunk t may cross
// (trunks[].trusted; default true, false when unauthenticated says the
// call came from a peer without a verified certificate).
func (t *Trunk) IsTrusted(unauthenticated bool) bool {
	if unauthenticated {
		return false
	}
	if t.Trusted != nil {
		return *t.Trusted
	}
	return true
}
