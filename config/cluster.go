package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
)

// Running two nodes as one service (package sip/cluster): cluster-wide
// limits and replicated call state, both in one Redis. Every cluster key is
// start-only. Without a cluster section nothing of this applies.

// Cluster joins this node to the other edge-sbc nodes of one service that
// share a Redis: limits, trunks[].max_calls and trunks[].cps count the calls
// of every live node, and each answered call's state is written (encrypted)
// so that another node can carry the call on when this one is lost.
// Default: absent (a single node, everything local).
type Cluster struct {
	// NodeID names this node among the nodes of the service: 1 to 64
	// letters, digits, '.', '_' or '-', different on every node. Required.
	NodeID string `yaml:"node_id"`
	// Redis is where the nodes meet. Required.
	Redis ClusterRedis `yaml:"redis"`
	// StateKeyFile holds the 32-byte AES-256 key that call state is
	// encrypted with before it goes to Redis, the same file on every node:
	// 32 raw bytes (head -c 32 /dev/urandom), 64 hex digits (openssl rand
	// -hex 32) or 44 characters of standard base64 (openssl rand -base64
	// 32); a trailing newline is allowed after the text forms. Keep it
	// mode 0600. Its content is never logged. Required.
	StateKeyFile string `yaml:"state_key_file"`
	// Role is active (this node takes calls; the service address is
	// normally here) or standby (this node keeps a warm copy of the other
	// node's calls and takes them over with the service address).
	// Default "active".
	Role string `yaml:"role"`
}

// ClusterRedis is how the nodes reach Redis.
type ClusterRedis struct {
	// Addrs are host:port: the Redis server, or with SentinelMaster the
	// Sentinels that name it. More than one needs SentinelMaster (Redis
	// Cluster is not supported). Required.
	Addrs []string `yaml:"addrs"`
	// Username is the ACL user (Redis 6+). Default: empty (the default user).
	Username string `yaml:"username"`
	// Password authenticates to Redis (not to the Sentinels). Default:
	// empty (none). Never logged.
	Password string `yaml:"password"`
	// TLS, when present (tls: {} for the system roots), connects over TLS.
	// Default: absent (plain TCP: keep Redis on a private network).
	TLS *ClusterRedisTLS `yaml:"tls"`
	// SentinelMaster is the master name the Sentinels at Addrs are asked
	// for. Default: empty (Addrs is the server itself).
	SentinelMaster string `yaml:"sentinel_master"`
	// DB is the database number. Default 0.
	DB int `yaml:"db"`
}

// ClusterRedisTLS configures TLS toward Redis.
type ClusterRedisTLS struct {
	// CA is a PEM bundle of the roots Redis's certificate is checked
	// against. Default: empty (the system roots).
	CA string `yaml:"ca"`
	// Cert and Key are a PEM client certificate and its key, for a Redis
	// with tls-auth-clients. Default: empty (none); both or neither.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ServerName is the name Redis's certificate must carry. Default: the
	// host of each address.
	ServerName string `yaml:"server_name"`
}

// Cluster roles and the default.
const (
	ClusterRoleActive  = "active"
	ClusterRoleStandby = "standby"
	DefaultClusterRole = ClusterRoleActive
	// StateKeySize is the length of the key in cluster.state_key_file.
	StateKeySize = 32
)

// applyClusterDefaults fills the cluster keys that are absent.
func (c *Config) applyClusterDefaults(keySet) {
	if c.Cluster != nil && c.Cluster.Role == "" {
		c.Cluster.Role = DefaultClusterRole
	}
}

// validateCluster checks the cluster section, reading the key file.
func (c *Config) validateCluster() error {
	cl := c.Cluster
	if cl == nil {
		return nil
	}
	if cl.NodeID == "" {
		return bad("cluster.node_id", "required: a name for this node, different on every node of the service")
	}
	if !isNodeID(cl.NodeID) {
		return bad("cluster.node_id", "%q: 1 to 64 letters, digits, '.', '_' or '-'", cl.NodeID)
	}
	r := cl.Redis
	if len(r.Addrs) == 0 {
		return bad("cluster.redis.addrs", "required: the Redis server's host:port (or the Sentinels')")
	}
	for i, a := range r.Addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return bad(fmt.Sprintf("cluster.redis.addrs[%d]", i), "%q is not host:port: %v", a, err)
		}
		if host == "" {
			return bad(fmt.Sprintf("cluster.redis.addrs[%d]", i), "%q: no host", a)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return bad(fmt.Sprintf("cluster.redis.addrs[%d]", i), "%q: bad port", a)
		}
	}
	if len(r.Addrs) > 1 && r.SentinelMaster == "" {
		return bad("cluster.redis.addrs", "%d addresses: several are Sentinels and need cluster.redis.sentinel_master (Redis Cluster is not supported)", len(r.Addrs))
	}
	if r.Username != "" && r.Password == "" {
		return bad("cluster.redis.username", "needs cluster.redis.password")
	}
	if len(r.Password) > 1024 {
		return bad("cluster.redis.password", "longer than 1024 bytes")
	}
	if strings.ContainsAny(r.Username, " \r\n\x00") {
		return bad("cluster.redis.username", "contains a space or control character")
	}
	if r.DB < 0 {
		return bad("cluster.redis.db", "%d: must be 0 or more", r.DB)
	}
	if t := r.TLS; t != nil {
		for _, f := range []struct{ key, path string }{
			{"cluster.redis.tls.ca", t.CA}, {"cluster.redis.tls.cert", t.Cert}, {"cluster.redis.tls.key", t.Key},
		} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				return bad(f.key, "cannot read %s: %v", f.path, err)
			}
		}
		if (t.Cert == "") != (t.Key == "") {
			return bad("cluster.redis.tls.cert", "cert and key go together")
		}
		if t.ServerName != "" && !isHostname(t.ServerName) {
			return bad("cluster.redis.tls.server_name", "%q is not a host name", t.ServerName)
		}
	}
	if cl.StateKeyFile == "" {
		return bad("cluster.state_key_file", "required: a file with the 32-byte key call state is encrypted with, the same on every node")
	}
	if _, err := ReadStateKey(cl.StateKeyFile); err != nil {
		return bad("cluster.state_key_file", "%v", err)
	}
	switch cl.Role {
	case ClusterRoleActive, ClusterRoleStandby:
	default:
		return bad("cluster.role", "%q: must be active or standby", cl.Role)
	}
	return nil
}

// errStateKeySize says what the key file may hold, never what it holds.
var errStateKeySize = errors.New("must hold 32 raw bytes, 64 hex digits or 44 characters of standard base64")

// ReadStateKey reads the 32-byte key of cluster.state_key_file: the file
// holds exactly 32 bytes (raw), or 64 hex digits, or the 44-character
// standard base64 of 32 bytes; surrounding white space (a trailing newline)
// is allowed around the text forms. Errors never include the file's
// content.
func ReadStateKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	} else if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	defer clear(b)
	if len(b) == StateKeySize {
		return bytes.Clone(b), nil
	}
	s := bytes.TrimSpace(b)
	key := make([]byte, StateKeySize)
	switch len(s) {
	case 2 * StateKeySize:
		if n, err := hex.Decode(key, s); err == nil && n == StateKeySize {
			return key, nil
		}
		return nil, fmt.Errorf("%s: 64 characters that are not hex digits: %w", path, errStateKeySize)
	case base64.StdEncoding.EncodedLen(StateKeySize):
		if n, err := base64.StdEncoding.Decode(key, s); err == nil && n == StateKeySize {
			return key, nil
		}
		return nil, fmt.Errorf("%s: 44 characters that are not the base64 of 32 bytes: %w", path, errStateKeySize)
	}
	return nil, fmt.Errorf("%s has %d bytes: %w", path, len(b), errStateKeySize)
}

// isNodeID: 1-64 of [A-Za-z0-9._-].
func isNodeID(s string) bool {
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

// clusterStartOnlyChanges names the cluster keys that differ: all are
// start-only (the Redis client, the heartbeat and the key are set up at
// start). Adding or removing the section is reported as "cluster". The
// key file's content is read at start: replace it and restart.
func clusterStartOnlyChanges(old, next *Config) []string {
	a, b := old.Cluster, next.Cluster
	if a == nil && b == nil {
		return nil
	}
	if a == nil || b == nil {
		return []string{"cluster"}
	}
	var out []string
	diff := func(key string, x, y any) {
		if !reflect.DeepEqual(x, y) {
			out = append(out, key)
		}
	}
	diff("cluster.node_id", a.NodeID, b.NodeID)
	diff("cluster.redis.addrs", a.Redis.Addrs, b.Redis.Addrs)
	diff("cluster.redis.username", a.Redis.Username, b.Redis.Username)
	diff("cluster.redis.password", a.Redis.Password, b.Redis.Password)
	switch ta, tb := a.Redis.TLS, b.Redis.TLS; {
	case ta == nil && tb == nil:
	case ta == nil || tb == nil:
		out = append(out, "cluster.redis.tls")
	default:
		diff("cluster.redis.tls.ca", ta.CA, tb.CA)
		diff("cluster.redis.tls.cert", ta.Cert, tb.Cert)
		diff("cluster.redis.tls.key", ta.Key, tb.Key)
		diff("cluster.redis.tls.server_name", ta.ServerName, tb.ServerName)
	}
	diff("cluster.redis.sentinel_master", a.Redis.SentinelMaster, b.Redis.SentinelMaster)
	diff("cluster.redis.db", a.Redis.DB, b.Redis.DB)
	diff("cluster.state_key_file", a.StateKeyFile, b.StateKeyFile)
	diff("cluster.role", a.Role, b.Role)
	return out
}

// String keeps the password out of anything that prints a cluster value.
func (c Cluster) String() string {
	return fmt.Sprintf("cluster{node_id=%s role=%s redis=%s state_key_file=%s}", c.NodeID, c.Role, c.Redis, c.StateKeyFile)
}

// String keeps the password out of anything that prints a Redis value.
func (r ClusterRedis) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "redis{addrs=%v", r.Addrs)
	if r.SentinelMaster != "" {
		fmt.Fprintf(&b, " sentinel_master=%s", r.SentinelMaster)
	}
	if r.Username != "" {
		fmt.Fprintf(&b, " username=%s", r.Username)
	}
	if r.Password != "" {
		b.WriteString(" password=(set)")
	}
	if r.TLS != nil {
		b.WriteString(" tls")
	}
	fmt.Fprintf(&b, " db=%d}", r.DB)
	return b.String()
}

// GoString is String: %#v does not print the password either.
func (r ClusterRedis) GoString() string { return r.String() }

// GoString is String: %#v does not print the password either.
func (c Cluster) GoString() string { return c.String() }
