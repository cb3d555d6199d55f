package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole edge-sbc configuration. Load fills defaults with
// applyDefaults and then checks it with Validate; a Config that Load returned
// is ready to use.
//
// A default is applied only when the key is absent (or null) in the file:
// an explicit 0 is kept. Each numeric field says what 0 means; where it
// means nothing, validation refuses it and names the key. Which settings a
// reload (SIGHUP) applies and which need a restart: see StartOnlyChanges.
type Config struct {
	Node     Node     `yaml:"node"`
	TLS      TLS      `yaml:"tls"`
	Listen   []Listen `yaml:"listen"`
	Trunks   []Trunk  `yaml:"trunks"`
	Routes   []Route  `yaml:"routes"`
	DNS      DNS      `yaml:"dns"`
	SIP      SIP      `yaml:"sip"`
	Media    Media    `yaml:"media"`
	Log      Log      `yaml:"log"`
	Shutdown Shutdown `yaml:"shutdown"`
	Metrics  Metrics  `yaml:"metrics"`
	CDR      CDR      `yaml:"cdr"`
	Limits   Limits   `yaml:"limits"`
	Trace    Trace    `yaml:"trace"` // see trace.go
	Cluster  *Cluster `yaml:"cluster"`
}

// Limits protect the SBC and the networks behind it.
type Limits struct {
	// MaxCalls is the most concurrent calls; more get 503. Default 0
	// (bounded only by media ports); 0 = no limit.
	MaxCalls int `yaml:"max_calls"`
	// CPS is the most new calls per second (all trunks); more get 503.
	// Default 0 (unlimited); 0 = no limit.
	CPS float64 `yaml:"cps"`
	// MaxConnectionsPerIP caps concurrent TLS connections from one source
	// address. Default 64; an explicit 0 = no cap.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// HandshakesPerIP caps new TLS handshakes per second from one source
	// address (burst the same). Default 20; an explicit 0 = no cap.
	HandshakesPerIP float64 `yaml:"handshakes_per_ip"`
	// IdleTimeout closes a connection that carried nothing (not even a
	// keepalive) for this long, unless a call uses it. Default 300s; an
	// explicit 0 = idle connections are never closed.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// WriteTimeout bounds every write on a SIP connection: a peer that does
	// not read for this long is disconnected and its calls end. Default 5s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// TrunkWriteTimeout replaces WriteTimeout on the connections of
	// configured trunks (a connection the SBC dialed, or one whose verified
	// certificate names a trunk): a partner busy for a few seconds must not
	// lose every call on its connection. Default 30s; an explicit 0 = no
	// timeout.
	TrunkWriteTimeout time.Duration `yaml:"trunk_write_timeout"`
	// MaxConnections caps concurrent TLS connections in all (inbound and
	// outbound). Default 4096.
	MaxConnections int `yaml:"max_connections"`
	// HandshakesPerSecond caps new inbound TLS handshakes per second in
	// all (burst the same). Default 200.
	HandshakesPerSecond float64 `yaml:"handshakes_per_second"`
	// MaxPendingPerConnection caps the requests of one connection of a
	// peer without a verified certificate that await a final response:
	// beyond it new INVITEs get 503 and other requests are not read until
	// one completes. Trunks identified by their certificate are not capped.
	// Default 256.
	MaxPendingPerConnection int `yaml:"max_pending_per_connection"`
	// SetupQueueTimeout bounds how long a new call may wait while the SBC
	// is behind: when more call events wait for the CPU than it can run
	// at once, new calls (already answered 100 Trying) wait until the
	// calls in progress have been served (their answers, ACKs and BYEs
	// first), so an overload costs post-dial delay rather than failed
	// calls; a call that waited longer gets 503 with Retry-After. 0 starts
	// every call at once whatever the load. Default 10s.
	SetupQueueTimeout time.Duration `yaml:"setup_queue_timeout"`
	// TrustedSources are CIDRs (e.g. a partner's proxy or NAT) exempt from
	// the per-address caps, like the resolved targets of every trunk.
	// Default: none.
	TrustedSources []string `yaml:"trusted_sources"`
	// UnauthenticatedMaxCalls caps concurrent calls from peers without a
	// certificate (all unauthenticated trunks together). Default 50.
	UnauthenticatedMaxCalls int `yaml:"unauthenticated_max_calls"`
	// UnauthenticatedCPS caps new calls per second from peers without a
	// certificate. Default 5.
	UnauthenticatedCPS float64 `yaml:"unauthenticated_cps"`
	// MaxMediaStreams caps the m-lines of one SDP; more get 488 before any
	// media port is taken. Default 8.
	MaxMediaStreams int `yaml:"max_media_streams"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is ip:port for /metrics, /healthz and /readyz.
	// Default: empty (off). Keep it on a private or loopback address.
	Listen string `yaml:"listen"`
	// Pprof also serves Go's /debug/pprof on the metrics listener.
	// Default false.
	Pprof bool `yaml:"pprof"`
}

// CDR configures the call detail record file.
type CDR struct {
	// File receives one JSON line per ended call, appended and fsynced in
	// batches. Default: empty (CDRs only in the log).
	File string `yaml:"file"`
	// SyncInterval is the longest time a written record waits for fsync.
	// Default 1s; 0 is refused.
	SyncInterval time.Duration `yaml:"sync_interval"`
}

// Node describes this SBC as peers see it.
type Node struct {
	// FQDN is the host put in Via, Contact and Record-Route; it must be a
	// name our certificate carries. Required.
	FQDN string `yaml:"fqdn"`
	// PublicIPv4 is advertised in SDP when the SBC sits behind NAT.
	// Default: empty (the media bind address is advertised).
	PublicIPv4 string `yaml:"public_ipv4"`
	// Domains are the SIP domains this SBC answers for. Requests from a trunk
	// that accepts unauthenticated peers are only routed when their
	// Request-URI host is one of these (or FQDN). Default: [fqdn].
	Domains []string `yaml:"domains"`
}

// TLS names our certificate and the roots we trust for peers.
type TLS struct {
	// Cert is a PEM file with our leaf followed by its intermediates; the
	// whole chain is sent. Required.
	Cert string `yaml:"cert"`
	// Key is the PEM private key of Cert. Required.
	Key string `yaml:"key"`
	// CA is a PEM bundle of roots trusted for peers in both directions.
	// Required.
	CA string `yaml:"ca"`
	// MinVersion is the lowest TLS version accepted: "1.2" or "1.3".
	// Default "1.2".
	MinVersion string `yaml:"min_version"`
	// HandshakeTimeout bounds a TLS handshake. Default 10s; 0 is refused.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// KeylogFile receives the NSS key log of every TLS connection (see trace.go). Default: empty (off).
	KeylogFile string `yaml:"keylog_file"`
}

// Listen is one SIP-over-TLS listener.
type Listen struct {
	// Addr is ip:port. Required.
	Addr string `yaml:"addr"`
	// ClientAuth is none, optional or required. Default "optional".
	ClientAuth string `yaml:"client_auth"`
	// UnauthenticatedTrunk names the trunk a peer that shows no certificate
	// is mapped to on this listener. Such a trunk only reaches our own
	// domains (node.domains). Default: empty (peers without a certificate
	// get 403).
	UnauthenticatedTrunk string `yaml:"unauthenticated_trunk"`
}

// Trunk is a peer the SBC exchanges calls with.
type Trunk struct {
	// Name identifies the trunk in routes, logs and CDRs. Required, unique.
	Name string `yaml:"name"`
	// URI is where calls to this trunk go, resolved per RFC 3263, e.g.
	// "sips:example.webex.com" or "sips:10.0.0.5:5061". Empty for a trunk
	// that only calls in.
	URI string `yaml:"uri"`
	// Identity is the SIP identity the peer's certificate must carry, both
	// when it connects to us and when we connect to it, checked by
	// tlsconf.MatchIdentity: a DNS SAN equal to it or covering it with one
	// leftmost wildcard label (*.example.com), a sip:/sips: URI SAN whose
	// host is it, or the CN of a certificate without DNS/URI SANs;
	// case-insensitive. Default: the host of URI.
	Identity string `yaml:"identity"`
	// AllowPlainRTP lets this trunk offer RTP/AVP without SRTP when media
	// passes through. Default false.
	AllowPlainRTP bool `yaml:"allow_plain_rtp"`
	// SRTP is how media toward this trunk is protected: passthrough (the
	// peers' own SDES keys cross the SBC), terminate (the SBC holds its own
	// keys on this leg and re-encrypts) or rtp (this trunk speaks plain RTP;
	// the SBC encrypts toward the other leg). Default "passthrough".
	SRTP string `yaml:"srtp"`
	// MediaAddress is the address advertised in SDP toward this trunk.
	// Default: node.public_ipv4, else media.bind.
	MediaAddress string `yaml:"media_address"`
	// MaxCalls caps concurrent calls from or to this trunk. Default 0
	// (no trunk limit).
	MaxCalls int `yaml:"max_calls"`
	// CPS caps new calls per second from this trunk. Default 0 (unlimited).
	CPS float64 `yaml:"cps"`
	// Trusted lets identity headers (P-Asserted-Identity,
	// P-Preferred-Identity, Remote-Party-ID, Diversion, History-Info) from
	// this trunk cross to the other leg (RFC 3325 trust domain). Default
	// true for trunks identified by certificate; always false for calls
	// from unauthenticated peers.
	Trusted *bool `yaml:"trusted"`
	// Redirect is what a 3xx from this trunk does: follow (the SBC places
	// the call to the sips: Contacts itself, through routing and
	// admission, at most 3 times), relay (the caller gets the 3xx with a
	// sanitized Contact) or refuse (the caller gets 480). Default follow.
	Redirect string `yaml:"redirect"`
	// Trace sends this trunk's SIP messages to the trace collector
	// (trace.hep). Default true.
	Trace *bool `yaml:"trace"`
	// Transforms rewrite calls leaving the SBC toward this trunk, after
	// the route's own. Default: none.
	Transforms []Transform `yaml:"transforms"`
	// Headers add, set or remove headers on calls toward this trunk.
	// Default: none.
	Headers []HeaderOp `yaml:"headers"`
	// Health pings the trunk's targets with OPTIONS. Default off.
	Health Health `yaml:"health"`
	// Refer is what a REFER (transfer) from this trunk does: local (the
	// SBC places the transfer itself) or refuse (405/403). Default local.
	Refer string `yaml:"refer"`
	// AcceptSIPScheme accepts sip: URIs over TLS from this trunk (a Cisco
	// UCM trunk sends them); calls toward it use sip: too. Other trunks
	// stay sips:-only. Requires identity. Default false.
	AcceptSIPScheme bool `yaml:"accept_sip_scheme"`
}

// Route sends calls from one trunk to another. Routes are tried in order;
// the first whose match fits wins.
type Route struct {
	// From is the trunk calls arrive on. Required.
	From string `yaml:"from"`
	// To is the trunk calls are sent to. Required.
	To string `yaml:"to"`
	// RURIDomain, when set, must equal the Request-URI host. Default: any.
	RURIDomain string `yaml:"ruri_domain"`
	// RURIUserPrefix, when set, must prefix the Request-URI user. Default: any.
	RURIUserPrefix string `yaml:"ruri_user_prefix"`
	// Transforms rewrite calls taking this route, before the destination
	// trunk's. Default: none.
	Transforms []Transform `yaml:"transforms"`
	// Headers add, set or remove headers on calls taking this route.
	// Default: none.
	Headers []HeaderOp `yaml:"headers"`
}

// DNS configures RFC 3263 resolution of trunk URIs.
type DNS struct {
	// Servers is a list of ip:port. Default: the system's /etc/resolv.conf.
	Servers []string `yaml:"servers"`
	// Timeout per query. Default 2s; 0 is refused.
	Timeout time.Duration `yaml:"timeout"`
	// Attempts over the server list. Default 2; 0 is refused.
	Attempts int `yaml:"attempts"`
	// MinTTL and MaxTTL clamp cached answers. Default 5s and 1h; 0 is
	// refused.
	MinTTL time.Duration `yaml:"min_ttl"`
	MaxTTL time.Duration `yaml:"max_ttl"`
	// NegativeTTL caches NXDOMAIN/NODATA. Default 30s; 0 is refused.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// DownTime is how long a target that failed is tried last. Default 30s;
	// 0 is refused.
	DownTime time.Duration `yaml:"down_time"`
}

// SIP holds signalling timers and policy.
type SIP struct {
	// ProvisionalTimeout: a target that sends no response at all to an
	// INVITE within this time is abandoned for the next one (the last
	// target is waited for, until the INVITE times out after 32 s).
	// Default 2s; 0 is refused.
	ProvisionalTimeout time.Duration `yaml:"provisional_timeout"`
	// AnswerTimeout: a call not answered within this time ends with 408.
	// Default 180s; 0 is refused.
	AnswerTimeout time.Duration `yaml:"answer_timeout"`
	// KeepaliveInterval sends a CRLF-CRLF ping on idle TLS connections
	// (RFC 5626 §4.4.1). Default 30s; an explicit 0 = no keepalive pings.
	KeepaliveInterval time.Duration `yaml:"keepalive_interval"`
	// SessionExpires is the RFC 4028 interval the SBC asks for when the
	// caller did not. Default 1800s; minimum 90s (0 is refused).
	SessionExpires time.Duration `yaml:"session_expires"`
	// HeaderAllowList names the headers copied from one leg to the other
	// besides those the B2BUA builds itself. Default: P-Asserted-Identity,
	// P-Preferred-Identity, Privacy, Diversion, History-Info, Allow, Supported,
	// Require, Accept, User-Agent, Server, Session-Expires, Min-SE, Reason,
	// Subject, Organization, Priority, Alert-Info, Call-Info, Content-Disposition.
	HeaderAllowList []string `yaml:"header_allow_list"`
	// MaxMessageSize drops SIP messages larger than this many bytes.
	// Default 65535; minimum 1024 (0 is refused).
	MaxMessageSize int `yaml:"max_message_size"`
	// BodyAllowList names the content types of multipart/mixed body parts
	// that may cross besides SDP (which is always anchored), e.g.
	// application/pidf+xml. Default: none.
	BodyAllowList []string `yaml:"body_allow_list"`
}

// Media configures the SRTP/RTP relay.
type Media struct {
	// PortRange is "min-max" of UDP ports for relayed media.
	// Default "36000-59999".
	PortRange string `yaml:"port_range"`
	// Bind is the address media sockets bind to; "::" binds dual-stack
	// sockets (IPv4 and IPv6 peers). Default "0.0.0.0".
	Bind string `yaml:"bind"`
	// Timeout ends a call when no media arrives for this long (not on hold).
	// Default 60s; an explicit 0 = no dead-media timeout.
	Timeout time.Duration `yaml:"timeout"`
	// StrictSource accepts media only from the address signalled in SDP,
	// like learning: strict. Default false (learning decides).
	StrictSource bool `yaml:"strict_source"`
	// Learning is how the relay learns where each side sends media from:
	// heuristic (learn the first sources after each SDP, preferring the
	// signalled address, then lock; another source takes over only as a
	// proven NAT rebind), strict (only the signalled address, as
	// strict_source) or off (follow any new source at once: anyone who
	// guesses a relay port can take a stream over). Default "heuristic".
	Learning string `yaml:"learning"`
	// DSCP values per kind of traffic (RFC 4594).
	DSCP DSCP `yaml:"dscp"`
	// SocketCache is how many relay sockets stay open after their call,
	// through the quarantine, to be reused by later calls: opening, binding
	// and marking new sockets is the largest cost of a call's setup. Kept
	// sockets and those of calls stay within half of the file descriptor
	// limit, and kept ones are closed first when descriptors run out.
	// Default 16384; an explicit 0 = every call opens new sockets.
	SocketCache int `yaml:"socket_cache"`
	// Fastpath moves latched pass-through streams into the kernel (eBPF)
	// when the kernel and the privileges allow it: auto or off. Default "auto".
	Fastpath string `yaml:"fastpath"` // see fastpath.go
}

// DSCP holds DiffServ code points, 0-63; an explicit 0 = best effort
// (CS0, the TOS byte left 0).
type DSCP struct {
	// Audio default 46 (EF).
	Audio int `yaml:"audio"`
	// Video default 34 (AF41): main and content video (a=content:slides).
	Video int `yaml:"video"`
	// Signalling default 24 (CS3): SIP over TLS, and the media relay's
	// application streams (BFCP floor control is call control).
	Signalling int `yaml:"signalling"`
}

// Log configures zerolog output.
type Log struct {
	// Level is trace, debug, info, warn or error. Default "info".
	Level string `yaml:"level"`
	// Format is json or console. Default "json".
	Format string `yaml:"format"`
}

// Shutdown configures the graceful drain on SIGTERM.
type Shutdown struct {
	// DrainTimeout lets calls in progress run this long before they are
	// ended with BYE. Default 30s; an explicit 0 = end them at once. It
	// must be below SystemdStopTimeout - StopMargin (80s): systemd kills
	// the process TimeoutStopSec (90s) after SIGTERM. A second SIGTERM or
	// SIGINT ends the drain at once.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// Handoff: on SIGTERM or SIGINT, while another node of the cluster is
	// alive, hand the answered calls over to it instead of draining: write
	// their state, then stop without BYE and without their CDRs (the node
	// that takes them over ends them). Calls not answered yet are ended as
	// in a drain. Without another live node (or Redis) the normal drain
	// runs. Needs a cluster section. Default false.
	Handoff bool `yaml:"handoff"`
}

// Load reads, decodes strictly (unknown keys are errors), fills defaults and
// validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML bytes strictly, fills defaults and validates. A
// default is applied only to a key the document does not set (absent or
// null): an explicit 0 is kept, and refused by Validate where 0 means
// nothing.
func Parse(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrEmpty
		}
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	set, err := setKeys(b)
	if err != nil {
		return nil, err
	}
	c.applyDefaults(set)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Trunk returns the trunk named name, or nil.
func (c *Config) Trunk(name string) *Trunk {
	for i := range c.Trunks {
		if c.Trunks[i].Name == name {
			return &c.Trunks[i]
		}
	}
	return nil
}

// TrunkIdentities returns each trunk's identity, index for index with
// Trunks ("" for a trunk without one), for tlsconf.MatchTrunk: the trunk of
// an inbound peer is c.Trunks[i] for the i it returns.
func (c *Config) TrunkIdentities() []string {
	ids := make([]string, len(c.Trunks))
	for i := range c.Trunks {
		ids[i] = c.Trunks[i].Identity
	}
	return ids
}
