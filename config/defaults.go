package config

import (
	"strings"
	"time"
)

// Defaults in one place; each is also named in the field's comment.
const (
	DefaultMinVersion          = "1.2"
	DefaultHandshakeTimeout    = 10 * time.Second
	DefaultClientAuth          = "optional"
	DefaultDNSTimeout          = 2 * time.Second
	DefaultDNSAttempts         = 2
	DefaultDNSMinTTL           = 5 * time.Second
	DefaultDNSMaxTTL           = time.Hour
	DefaultDNSNegativeTTL      = 30 * time.Second
	DefaultDNSDownTime         = 30 * time.Second
	DefaultProvisionalTimeout  = 2 * time.Second
	DefaultAnswerTimeout       = 180 * time.Second
	DefaultKeepaliveInterval   = 30 * time.Second
	DefaultSessionExpires      = 1800 * time.Second
	MinSessionExpires          = 90 * time.Second
	DefaultMaxMessageSize      = 65535
	DefaultPortRange           = "36000-59999"
	DefaultMediaBind           = "0.0.0.0"
	DefaultMediaTimeout        = 60 * time.Second
	DefaultMediaLearning       = "heuristic"
	DefaultDSCPAudio           = 46
	DefaultDSCPVideo           = 34
	DefaultDSCPSignalling      = 24
	DefaultSocketCache         = 16384
	DefaultLogLevel            = "info"
	DefaultLogFormat           = "json"
	DefaultDrainTimeout        = 30 * time.Second
	DefaultCDRSyncInterval     = time.Second
	DefaultSRTP                = "passthrough"
	DefaultMaxConnectionsPerIP = 64
	DefaultHandshakesPerIP     = 20
	DefaultIdleTimeout         = 300 * time.Second

	// SystemdStopTimeout is TimeoutStopSec of config/systemd/edge-sbc.service:
	// systemd kills the process (SIGKILL) that long after SIGTERM. Keep the
	// two equal (a test checks it).
	SystemdStopTimeout = 90 * time.Second
	// StopMargin is the time kept after the drain for ending the remaining
	// calls with BYE (each answered or given up within 5s) and writing
	// their CDRs: shutdown.drain_timeout must be below
	// SystemdStopTimeout - StopMargin.
	StopMargin = 10 * time.Second
)

// DefaultHeaderAllowList is carried across legs unless sip.header_allow_list
// says otherwise.
func DefaultHeaderAllowList() []string {
	return []string{
		"P-Asserted-Identity", "P-Preferred-Identity", "Privacy", "Diversion",
		"History-Info", "User-Agent", "Server", "Session-Expires", "Min-SE",
		"Reason", "Subject", "Organization", "Priority", "Alert-Info",
		"Call-Info", "Content-Disposition",
	}
}

// applyDefaults fills every setting that set does not contain with its
// default. A key given explicitly keeps its value, 0 included: where 0 has a
// meaning it is documented on the field (sip.keepalive_interval and
// media.timeout 0 = off, media.dscp.* 0 = best effort, limits 0 = no cap,
// shutdown.drain_timeout 0 = no drain), and where it has none Validate
// refuses it naming the key. Strings keep the older rule: empty means
// default.
func (c *Config) applyDefaults(set keySet) {
	dur := func(key string, p *time.Duration, d time.Duration) {
		if !set[key] {
			*p = d
		}
	}
	num := func(key string, p *int, d int) {
		if !set[key] {
			*p = d
		}
	}
	rate := func(key string, p *float64, d float64) {
		if !set[key] {
			*p = d
		}
	}
	str := func(p *string, d string) {
		if *p == "" {
			*p = d
		}
	}
	c.Node.FQDN = strings.ToLower(strings.TrimSuffix(c.Node.FQDN, "."))
	if len(c.Node.Domains) == 0 && c.Node.FQDN != "" {
		c.Node.Domains = []string{c.Node.FQDN}
	}
	for i, d := range c.Node.Domains {
		c.Node.Domains[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	str(&c.TLS.MinVersion, DefaultMinVersion)
	dur("tls.handshake_timeout", &c.TLS.HandshakeTimeout, DefaultHandshakeTimeout)
	for i := range c.Listen {
		str(&c.Listen[i].ClientAuth, DefaultClientAuth)
	}
	for i := range c.Trunks {
		c.Trunks[i].Identity = strings.ToLower(c.Trunks[i].Identity)
		str(&c.Trunks[i].SRTP, DefaultSRTP)
	}
	dur("dns.timeout", &c.DNS.Timeout, DefaultDNSTimeout)
	num("dns.attempts", &c.DNS.Attempts, DefaultDNSAttempts)
	dur("dns.min_ttl", &c.DNS.MinTTL, DefaultDNSMinTTL)
	dur("dns.max_ttl", &c.DNS.MaxTTL, DefaultDNSMaxTTL)
	dur("dns.negative_ttl", &c.DNS.NegativeTTL, DefaultDNSNegativeTTL)
	dur("dns.down_time", &c.DNS.DownTime, DefaultDNSDownTime)
	dur("sip.provisional_timeout", &c.SIP.ProvisionalTimeout, DefaultProvisionalTimeout)
	dur("sip.answer_timeout", &c.SIP.AnswerTimeout, DefaultAnswerTimeout)
	dur("sip.keepalive_interval", &c.SIP.KeepaliveInterval, DefaultKeepaliveInterval)
	dur("sip.session_expires", &c.SIP.SessionExpires, DefaultSessionExpires)
	if c.SIP.HeaderAllowList == nil {
		c.SIP.HeaderAllowList = DefaultHeaderAllowList()
	}
	num("sip.max_message_size", &c.SIP.MaxMessageSize, DefaultMaxMessageSize)
	str(&c.Media.PortRange, DefaultPortRange)
	str(&c.Media.Bind, DefaultMediaBind)
	dur("media.timeout", &c.Media.Timeout, DefaultMediaTimeout)
	str(&c.Media.Learning, DefaultMediaLearning)
	num("media.dscp.audio", &c.Media.DSCP.Audio, DefaultDSCPAudio)
	num("media.dscp.video", &c.Media.DSCP.Video, DefaultDSCPVideo)
	num("media.dscp.signalling", &c.Media.DSCP.Signalling, DefaultDSCPSignalling)
	num("media.socket_cache", &c.Media.SocketCache, DefaultSocketCache)
	str(&c.Log.Level, DefaultLogLevel)
	str(&c.Log.Format, DefaultLogFormat)
	num("limits.max_connections_per_ip", &c.Limits.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	rate("limits.handshakes_per_ip", &c.Limits.HandshakesPerIP, DefaultHandshakesPerIP)
	dur("limits.idle_timeout", &c.Limits.IdleTimeout, DefaultIdleTimeout)
	dur("cdr.sync_interval", &c.CDR.SyncInterval, DefaultCDRSyncInterval)
	dur("shutdown.drain_timeout", &c.Shutdown.DrainTimeout, DefaultDrainTimeout)
	c.applyPolicyDefaults(set)
	c.applyOperatorDefaults(set)
	c.applyTraceDefaults(set)
	c.applyFastpathDefaults()
	c.applyClusterDefaults(set)
}
