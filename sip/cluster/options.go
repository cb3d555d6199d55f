package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
)

// Defaults of Options.
const (
	DefaultPrefix            = "edge-sbc:"
	DefaultTimeout           = 200 * time.Millisecond
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultHeartbeatTTL      = 6 * time.Second
	// DefaultProbeInterval is how often the heartbeat tries Redis again
	// while it is unreachable.
	DefaultProbeInterval = 500 * time.Millisecond
	// DefaultStaleAfter is how long a node's records outlive its last
	// heartbeat (they stop counting after HeartbeatTTL already).
	DefaultStaleAfter = 10 * time.Minute
	// KeySize is the length of the state key.
	KeySize = 32
)

// Options configure a Cluster. FromConfig builds them from the cluster
// section of the configuration.
type Options struct {
	// NodeID names this node: 1-64 of [A-Za-z0-9._-], unique in the
	// service. Required.
	NodeID string
	// Redis is where the nodes meet.
	Redis RedisOptions
	// Key is the 32-byte AES-256 key call state is sealed with, the same on
	// every node. Required. Open does not keep the slice.
	Key []byte
	// Prefix starts every Redis key and the channel, so that several
	// services can share one Redis. Default "edge-sbc:".
	Prefix string
	// Timeout bounds each Redis operation (dial, write, read). Default
	// 200 ms.
	Timeout time.Duration
	// HeartbeatInterval is how often the node's alive key is refreshed;
	// HeartbeatTTL is how long it lives: the calls of a node that stopped
	// stop counting at most HeartbeatTTL after its last heartbeat.
	// Defaults 2 s and 6 s; the TTL must be at least twice the interval.
	HeartbeatInterval time.Duration
	HeartbeatTTL      time.Duration
	// ProbeInterval is how often Redis is tried while unreachable. Default
	// 500 ms.
	ProbeInterval time.Duration
	// StaleAfter is how long a dead node's records stay. Default 10 min.
	StaleAfter time.Duration
	// Log receives the package's few lines: Redis unreachable (once per
	// outage), reachable again, node records rewritten.
	Log zerolog.Logger
}

// RedisOptions say how to reach Redis.
type RedisOptions struct {
	// Addrs is the server's host:port, or with SentinelMaster the
	// Sentinels'.
	Addrs []string
	// Username and Password authenticate to Redis (not to the Sentinels).
	Username, Password string
	// TLS, when not nil, connects over TLS.
	TLS *tls.Config
	// SentinelMaster is the master's name at the Sentinels.
	SentinelMaster string
	// DB is the database number.
	DB int
}

// String keeps the password and the key out of anything that prints
// Options.
func (o Options) String() string {
	return fmt.Sprintf("cluster.Options{node=%s prefix=%q redis=%s key=(%d bytes) timeout=%s heartbeat=%s/%s}",
		o.NodeID, o.Prefix, o.Redis, len(o.Key), o.Timeout, o.HeartbeatInterval, o.HeartbeatTTL)
}

// GoString is String.
func (o Options) GoString() string { return o.String() }

// String keeps the password out of anything that prints RedisOptions.
// It prints what the configuration's Redis section prints (one format).
func (r RedisOptions) String() string {
	c := config.ClusterRedis{Addrs: r.Addrs, SentinelMaster: r.SentinelMaster, Username: r.Username, Password: r.Password, DB: r.DB}
	if r.TLS != nil {
		c.TLS = &config.ClusterRedisTLS{}
	}
	return strings.TrimPrefix(c.String(), "redis")
}

// GoString is String.
func (r RedisOptions) GoString() string { return r.String() }

// FromConfig builds Options from a validated cluster section: it reads the
// state key file and the TLS files. The other Options keep their defaults.
func FromConfig(c *config.Cluster, log zerolog.Logger) (Options, error) {
	if c == nil {
		return Options{}, errors.New("cluster: no cluster section")
	}
	key, err := config.ReadStateKey(c.StateKeyFile)
	if err != nil {
		return Options{}, fmt.Errorf("cluster.state_key_file: %w", err)
	}
	o := Options{
		NodeID: c.NodeID,
		Key:    key,
		Log:    log,
		Redis: RedisOptions{
			Addrs:    append([]string(nil), c.Redis.Addrs...),
			Username: c.Redis.Username, Password: c.Redis.Password,
			SentinelMaster: c.Redis.SentinelMaster, DB: c.Redis.DB,
		},
	}
	if t := c.Redis.TLS; t != nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
		if t.CA != "" {
			pem, err := os.ReadFile(t.CA)
			if err != nil {
				return Options{}, fmt.Errorf("cluster.redis.tls.ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return Options{}, fmt.Errorf("cluster.redis.tls.ca: %s holds no PEM certificate", t.CA)
			}
			tc.RootCAs = pool
		}
		if t.Cert != "" {
			cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
			if err != nil {
				return Options{}, fmt.Errorf("cluster.redis.tls.cert: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		o.Redis.TLS = tc
	}
	return o, nil
}

// withDefaults fills the zero Options and checks the rest.
func (o Options) withDefaults() (Options, error) {
	if !validNodeID(o.NodeID) {
		return o, fmt.Errorf("cluster: node id %q: 1 to 64 letters, digits, '.', '_' or '-'", o.NodeID)
	}
	if len(o.Key) != KeySize {
		return o, fmt.Errorf("cluster: the state key has %d bytes, want %d", len(o.Key), KeySize)
	}
	if len(o.Redis.Addrs) == 0 {
		return o, errors.New("cluster: no Redis address")
	}
	if len(o.Redis.Addrs) > 1 && o.Redis.SentinelMaster == "" {
		return o, errors.New("cluster: several Redis addresses need a Sentinel master name")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	def := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	def(&o.Timeout, DefaultTimeout)
	def(&o.HeartbeatInterval, DefaultHeartbeatInterval)
	def(&o.HeartbeatTTL, DefaultHeartbeatTTL)
	def(&o.ProbeInterval, DefaultProbeInterval)
	def(&o.StaleAfter, DefaultStaleAfter)
	if o.HeartbeatTTL < 2*o.HeartbeatInterval {
		return o, fmt.Errorf("cluster: heartbeat TTL %s is less than twice the interval %s", o.HeartbeatTTL, o.HeartbeatInterval)
	}
	if o.StaleAfter < o.HeartbeatTTL {
		o.StaleAfter = o.HeartbeatTTL
	}
	return o, nil
}

func validNodeID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
