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
	DefaultLogLevel            = "info"
	DefaultLogFormat           = "json"
	DefaultDrainTimeout        = 30 * time.Second
	DefaultCDRSyncInterval     = time.Second
	DefaultSRTP                = "passthrough"
	DefaultMaxConnectionsPerIP = 64
	DefaultHandshakesPerIP     = 20
	DefaultIdleTimeout         = 300 * time.Second
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

func (c *Config) applyDefaults() {
	c.Node.FQDN = strings.ToLower(strings.TrimSuffix(c.Node.FQDN, "."))
	if len(c.Node.Domains) == 0 && c.Node.FQDN != "" {
		c.Node.Domains = []string{c.Node.FQDN}
	}
	for i, d := range c.Node.Domains {
		c.Node.Domains[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	if c.TLS.MinVersion == "" {
		c.TLS.MinVersion = DefaultMinVersion
	}
	if c.TLS.HandshakeTimeout == 0 {
		c.TLS.HandshakeTimeout = DefaultHandshakeTimeout
	}
	for i := range c.Listen {
		if c.Listen[i].ClientAuth == "" {
			c.Listen[i].ClientAuth = DefaultClientAuth
		}
	}
	for i := range c.Trunks {
		c.Trunks[i].Identity = strings.ToLower(c.Trunks[i].Identity)
		if c.Trunks[i].SRTP == "" {
			c.Trunks[i].SRTP = DefaultSRTP
		}
	}
	if c.DNS.Timeout == 0 {
		c.DNS.Timeout = DefaultDNSTimeout
	}
	if c.DNS.Attempts == 0 {
		c.DNS.Attempts = DefaultDNSAttempts
	}
	if c.DNS.MinTTL == 0 {
		c.DNS.MinTTL = DefaultDNSMinTTL
	}
	if c.DNS.MaxTTL == 0 {
		c.DNS.MaxTTL = DefaultDNSMaxTTL
	}
	if c.DNS.NegativeTTL == 0 {
		c.DNS.NegativeTTL = DefaultDNSNegativeTTL
	}
	if c.DNS.DownTime == 0 {
		c.DNS.DownTime = DefaultDNSDownTime
	}
	if c.SIP.ProvisionalTimeout == 0 {
		c.SIP.ProvisionalTimeout = DefaultProvisionalTimeout
	}
	if c.SIP.AnswerTimeout == 0 {
		c.SIP.AnswerTimeout = DefaultAnswerTimeout
	}
	if c.SIP.KeepaliveInterval == 0 {
		c.SIP.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if c.SIP.SessionExpires == 0 {
		c.SIP.SessionExpires = DefaultSessionExpires
	}
	if c.SIP.HeaderAllowList == nil {
		c.SIP.HeaderAllowList = DefaultHeaderAllowList()
	}
	if c.SIP.MaxMessageSize == 0 {
		c.SIP.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.Media.PortRange == "" {
		c.Media.PortRange = DefaultPortRange
	}
	if c.Media.Bind == "" {
		c.Media.Bind = DefaultMediaBind
	}
	if c.Media.Timeout == 0 {
		c.Media.Timeout = DefaultMediaTimeout
	}
	if c.Media.Learning == "" {
		c.Media.Learning = DefaultMediaLearning
	}
	if c.Media.DSCP.Audio == 0 {
		c.Media.DSCP.Audio = DefaultDSCPAudio
	}
	if c.Media.DSCP.Video == 0 {
		c.Media.DSCP.Video = DefaultDSCPVideo
	}
	if c.Media.DSCP.Signalling == 0 {
		c.Media.DSCP.Signalling = DefaultDSCPSignalling
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if c.Limits.MaxConnectionsPerIP == 0 {
		c.Limits.MaxConnectionsPerIP = DefaultMaxConnectionsPerIP
	}
	if c.Limits.HandshakesPerIP == 0 {
		c.Limits.HandshakesPerIP = DefaultHandshakesPerIP
	}
	if c.Limits.IdleTimeout == 0 {
		c.Limits.IdleTimeout = DefaultIdleTimeout
	}
	if c.CDR.SyncInterval == 0 {
		c.CDR.SyncInterval = DefaultCDRSyncInterval
	}
	if c.Shutdown.DrainTimeout == 0 {
		c.Shutdown.DrainTimeout = DefaultDrainTimeout
	}
	c.applyPolicyDefaults()
}
