package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Validate checks the whole tree and returns the first problem as a
// *KeyError naming the key. Defaults must have been applied.
func (c *Config) Validate() error {
	if err := c.validateNode(); err != nil {
		return err
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if err := c.validateTrunks(); err != nil {
		return err
	}
	if err := c.validateListen(); err != nil {
		return err
	}
	if err := c.validateRoutes(); err != nil {
		return err
	}
	if err := c.validateDNS(); err != nil {
		return err
	}
	if err := c.validateSIP(); err != nil {
		return err
	}
	if err := c.validateMedia(); err != nil {
		return err
	}
	if err := c.validateFastpath(); err != nil {
		return err
	}
	if err := c.validatePolicy(); err != nil {
		return err
	}
	if err := c.validateOperator(); err != nil {
		return err
	}
	if err := c.validateTrace(); err != nil {
		return err
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	return c.validateLog()
}

func bad(key, format string, args ...any) error {
	return &KeyError{Key: key, Reason: fmt.Sprintf(format, args...)}
}

// positive refuses a negative duration, and 0 for a setting where 0 has no
// meaning (an explicit 0 is not turned into the default; see applyDefaults).
func positive(key string, d, def time.Duration) error {
	if d < 0 {
		return bad(key, "%s: must be positive", d)
	}
	if d == 0 {
		return bad(key, "0 is not allowed: it would not mean off; omit the key for the default %s", def)
	}
	return nil
}

// notNegative refuses a negative duration; 0 is meaningful for key.
func notNegative(key string, d time.Duration, zero string) error {
	if d < 0 {
		return bad(key, "%s: must be positive, or 0 for %s", d, zero)
	}
	return nil
}

func (c *Config) validateNode() error {
	if c.Node.FQDN == "" {
		return bad("node.fqdn", "required: the host name peers reach this SBC by (it must be in our certificate)")
	}
	if !isHostname(c.Node.FQDN) {
		return bad("node.fqdn", "%q is not a host name", c.Node.FQDN)
	}
	if c.Node.PublicIPv4 != "" {
		a, err := netip.ParseAddr(c.Node.PublicIPv4)
		if err != nil || !a.Is4() {
			return bad("node.public_ipv4", "%q is not an IPv4 address", c.Node.PublicIPv4)
		}
	}
	for i, d := range c.Node.Domains {
		if !isHostname(d) {
			if _, err := netip.ParseAddr(d); err != nil {
				return bad(fmt.Sprintf("node.domains[%d]", i), "%q is not a domain", d)
			}
		}
	}
	return nil
}

func (c *Config) validateTLS() error {
	for _, f := range []struct{ key, path string }{
		{"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}, {"tls.ca", c.TLS.CA},
	} {
		if f.path == "" {
			return bad(f.key, "required")
		}
		if _, err := os.Stat(f.path); err != nil {
			return bad(f.key, "cannot read %s: %v", f.path, err)
		}
	}
	switch c.TLS.MinVersion {
	case "1.2", "1.3":
	default:
		return bad("tls.min_version", "%q: must be \"1.2\" or \"1.3\" (older TLS is refused)", c.TLS.MinVersion)
	}
	return positive("tls.handshake_timeout", c.TLS.HandshakeTimeout, DefaultHandshakeTimeout)
}

func (c *Config) validateListen() error {
	if len(c.Listen) == 0 {
		return bad("listen", "at least one listener is required")
	}
	seen := map[string]bool{}
	for i, l := range c.Listen {
		key := fmt.Sprintf("listen[%d]", i)
		host, port, err := net.SplitHostPort(l.Addr)
		if err != nil {
			return bad(key+".addr", "%q is not ip:port: %v", l.Addr, err)
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return bad(key+".addr", "%q: host must be an IP address", l.Addr)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return bad(key+".addr", "%q: bad port", l.Addr)
		}
		if seen[l.Addr] {
			return bad(key+".addr", "%q listed twice", l.Addr)
		}
		seen[l.Addr] = true
		switch l.ClientAuth {
		case "none", "optional", "required":
		default:
			return bad(key+".client_auth", "%q: must be none, optional or required", l.ClientAuth)
		}
		if l.UnauthenticatedTrunk != "" {
			if l.ClientAuth == "required" {
				return bad(key+".unauthenticated_trunk", "a listener with client_auth: required has no unauthenticated peers")
			}
			if c.Trunk(l.UnauthenticatedTrunk) == nil {
				return bad(key+".unauthenticated_trunk", "no trunk named %q", l.UnauthenticatedTrunk)
			}
		}
	}
	return nil
}

func (c *Config) validateTrunks() error {
	if len(c.Trunks) == 0 {
		return bad("trunks", "at least one trunk is required")
	}
	names := map[string]bool{}
	for i := range c.Trunks {
		t := &c.Trunks[i]
		key := fmt.Sprintf("trunks[%d]", i)
		if t.Name == "" {
			return bad(key+".name", "required")
		}
		if names[t.Name] {
			return bad(key+".name", "%q used twice", t.Name)
		}
		names[t.Name] = true
		if t.URI != "" {
			u, err := ParseTrunkURI(t.URI)
			if err != nil {
				return bad(key+".uri", "%v", err)
			}
			if t.Identity == "" {
				t.Identity = strings.ToLower(u.Host)
			}
		}
		switch t.SRTP {
		case "passthrough", "terminate", "rtp":
		default:
			return bad(key+".srtp", "%q: must be passthrough, terminate or rtp", t.SRTP)
		}
		if t.MediaAddress != "" {
			if _, err := netip.ParseAddr(t.MediaAddress); err != nil {
				return bad(key+".media_address", "%q is not an IP address", t.MediaAddress)
			}
		}
	}
	return nil
}

// ParseTrunkURI parses a trunk destination: a sips: URI with a host and an
// optional port.
func ParseTrunkURI(s string) (sip.Uri, error) {
	var u sip.Uri
	if !strings.HasPrefix(strings.ToLower(s), "sips:") {
		return u, fmt.Errorf("%q: only sips: URIs are allowed (SIP over TLS)", s)
	}
	if err := sip.ParseUri(s, &u); err != nil {
		return u, fmt.Errorf("%q: %w", s, err)
	}
	if u.Host == "" {
		return u, fmt.Errorf("%q: no host", s)
	}
	if _, err := netip.ParseAddr(u.Host); err != nil && !isHostname(u.Host) {
		return u, fmt.Errorf("%q: host is neither an IP address nor a host name", s)
	}
	if u.Port < 0 || u.Port > 65535 {
		return u, fmt.Errorf("%q: bad port", s)
	}
	if tr, ok := u.UriParams.Get("transport"); ok && !strings.EqualFold(tr, "tls") && !strings.EqualFold(tr, "tcp") {
		return u, fmt.Errorf("%q: transport=%s is not TLS", s, tr)
	}
	return u, nil
}

func (c *Config) validateRoutes() error {
	if len(c.Routes) == 0 {
		return bad("routes", "at least one route is required")
	}
	unauth := map[string]bool{}
	for _, l := range c.Listen {
		if l.UnauthenticatedTrunk != "" {
			unauth[l.UnauthenticatedTrunk] = true
		}
	}
	for i, r := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		if c.Trunk(r.From) == nil {
			return bad(key+".from", "no trunk named %q", r.From)
		}
		to := c.Trunk(r.To)
		if to == nil {
			return bad(key+".to", "no trunk named %q", r.To)
		}
		if to.URI == "" {
			return bad(key+".to", "trunk %q has no uri to send calls to", r.To)
		}
		if r.From == r.To {
			return bad(key, "from and to are the same trunk %q (a loop)", r.From)
		}
		if unauth[r.From] && r.RURIDomain != "" && !c.IsOwnDomain(r.RURIDomain) {
			return bad(key+".ruri_domain", "%q is not one of node.domains; calls from unauthenticated trunk %q may only reach our own domains", r.RURIDomain, r.From)
		}
	}
	return nil
}

// IsOwnDomain reports whether host is node.fqdn or one of node.domains.
func (c *Config) IsOwnDomain(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == c.Node.FQDN {
		return true
	}
	for _, d := range c.Node.Domains {
		if host == d {
			return true
		}
	}
	return false
}

func (c *Config) validateDNS() error {
	for i, s := range c.DNS.Servers {
		if _, err := netip.ParseAddrPort(s); err != nil {
			return bad(fmt.Sprintf("dns.servers[%d]", i), "%q is not ip:port", s)
		}
	}
	// The resolver gives none of these a meaning for 0 (it would quietly
	// use its own default), so an explicit 0 is refused.
	for _, d := range []struct {
		key      string
		v, deflt time.Duration
	}{
		{"dns.timeout", c.DNS.Timeout, DefaultDNSTimeout},
		{"dns.min_ttl", c.DNS.MinTTL, DefaultDNSMinTTL},
		{"dns.max_ttl", c.DNS.MaxTTL, DefaultDNSMaxTTL},
		{"dns.negative_ttl", c.DNS.NegativeTTL, DefaultDNSNegativeTTL},
		{"dns.down_time", c.DNS.DownTime, DefaultDNSDownTime},
	} {
		if err := positive(d.key, d.v, d.deflt); err != nil {
			return err
		}
	}
	if c.DNS.Attempts <= 0 {
		return bad("dns.attempts", "%d: must be at least 1; omit the key for the default %d", c.DNS.Attempts, DefaultDNSAttempts)
	}
	if c.DNS.MinTTL > c.DNS.MaxTTL {
		return bad("dns.min_ttl", "is above dns.max_ttl")
	}
	return nil
}

func (c *Config) validateSIP() error {
	if err := positive("sip.provisional_timeout", c.SIP.ProvisionalTimeout, DefaultProvisionalTimeout); err != nil {
		return err
	}
	if err := positive("sip.answer_timeout", c.SIP.AnswerTimeout, DefaultAnswerTimeout); err != nil {
		return err
	}
	if err := notNegative("sip.keepalive_interval", c.SIP.KeepaliveInterval, "no keepalive"); err != nil {
		return err
	}
	if c.SIP.SessionExpires < MinSessionExpires {
		return bad("sip.session_expires", "%s is below the RFC 4028 minimum of 90s", c.SIP.SessionExpires)
	}
	if c.SIP.MaxMessageSize < 1024 {
		return bad("sip.max_message_size", "%d is too small (at least 1024)", c.SIP.MaxMessageSize)
	}
	return nil
}

func (c *Config) validateMedia() error {
	if _, _, err := ParsePortRange(c.Media.PortRange); err != nil {
		return bad("media.port_range", "%v", err)
	}
	bind, err := netip.ParseAddr(c.Media.Bind)
	if err != nil {
		return bad("media.bind", "%q is not an IP address", c.Media.Bind)
	}
	if bind.IsUnspecified() && c.Node.PublicIPv4 == "" {
		// SDP must carry an address peers can send media to.
		for i, t := range c.Trunks {
			if t.MediaAddress == "" {
				return bad(fmt.Sprintf("trunks[%d].media_address", i), "required when media.bind is %s and node.public_ipv4 is not set: the address trunk %q sends media to", c.Media.Bind, t.Name)
			}
		}
	}
	if err := notNegative("media.timeout", c.Media.Timeout, "no dead-media timeout"); err != nil {
		return err
	}
	if c.Media.SocketCache < 0 {
		return bad("media.socket_cache", "%d: must be positive, or 0 to open new sockets for every call", c.Media.SocketCache)
	}
	switch c.Media.Learning {
	case "heuristic", "strict":
	case "off":
		if c.Media.StrictSource {
			return bad("media.learning", "off contradicts media.strict_source: true")
		}
	default:
		return bad("media.learning", "%q: must be heuristic, strict or off", c.Media.Learning)
	}
	for _, d := range []struct {
		key string
		v   int
	}{{"media.dscp.audio", c.Media.DSCP.Audio}, {"media.dscp.video", c.Media.DSCP.Video}, {"media.dscp.signalling", c.Media.DSCP.Signalling}} {
		if d.v < 0 || d.v > 63 {
			return bad(d.key, "%d is not a DSCP value (0-63)", d.v)
		}
	}
	return nil
}

// ParsePortRange parses "min-max".
func ParsePortRange(s string) (int, int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not min-max", s)
	}
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q is not min-max", s)
	}
	if a < 1024 || b > 65535 || a >= b {
		return 0, 0, fmt.Errorf("%q: need 1024 <= min < max <= 65535", s)
	}
	if b-a+1 < 4 {
		return 0, 0, fmt.Errorf("%q: too few ports", s)
	}
	return a, b, nil
}

func (c *Config) validateLog() error {
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		return bad("log.level", "%q: must be trace, debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		return bad("log.format", "%q: must be json or console", c.Log.Format)
	}
	if err := c.validateShutdown(); err != nil {
		return err
	}
	if c.Metrics.Listen != "" {
		if _, err := netip.ParseAddrPort(c.Metrics.Listen); err != nil {
			return bad("metrics.listen", "%q is not ip:port", c.Metrics.Listen)
		}
	}
	for _, l := range []struct {
		key string
		v   float64
	}{
		{"limits.max_calls", float64(c.Limits.MaxCalls)},
		{"limits.cps", c.Limits.CPS},
		{"limits.max_connections_per_ip", float64(c.Limits.MaxConnectionsPerIP)},
		{"limits.handshakes_per_ip", c.Limits.HandshakesPerIP},
	} {
		if l.v < 0 {
			return bad(l.key, "%v: must be positive, or 0 for no limit", l.v)
		}
	}
	if err := notNegative("limits.idle_timeout", c.Limits.IdleTimeout, "never closing idle connections"); err != nil {
		return err
	}
	for i, t := range c.Trunks {
		if t.MaxCalls < 0 || t.CPS < 0 {
			return bad(fmt.Sprintf("trunks[%d]", i), "max_calls and cps must be positive")
		}
	}
	return positive("cdr.sync_interval", c.CDR.SyncInterval, DefaultCDRSyncInterval)
}

// validateShutdown keeps the drain inside the systemd unit's stop timeout:
// systemd SIGKILLs the process TimeoutStopSec after SIGTERM, and the BYEs
// and final CDRs written after the drain need StopMargin.
func (c *Config) validateShutdown() error {
	d := c.Shutdown.DrainTimeout
	if err := notNegative("shutdown.drain_timeout", d, "ending calls with BYE at once"); err != nil {
		return err
	}
	if limit := SystemdStopTimeout - StopMargin; d >= limit {
		return bad("shutdown.drain_timeout", "%s: must be below %s: systemd kills edge-sbc %s after SIGTERM (TimeoutStopSec in config/systemd/edge-sbc.service) and ending the remaining calls with BYE and writing their CDRs needs %s", d, limit, SystemdStopTimeout, StopMargin)
	}
	if c.Shutdown.Handoff && c.Cluster == nil {
		return bad("shutdown.handoff", "true needs a cluster section: there is no other node to hand the calls to")
	}
	return nil
}

func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i, r := range label {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (r == '-' && i > 0 && i < len(label)-1) || r == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}
