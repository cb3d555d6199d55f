package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testKey is a recognisable 32-byte key: no error may print it.
var testKey = []byte("0123456789abcdefSECRETKEYMATERIA")

// keyFile writes content to a file and returns its path.
func keyFile(t *testing.T, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// withCluster appends a cluster section (its body) to the base config.
func withCluster(t *testing.T, body string) string {
	return base(t) + "cluster:\n" + body
}

func clusterBody(keyPath string, extra string) string {
	return "  node_id: n1\n  redis: { addrs: [\"127.0.0.1:6379\"] }\n  state_key_file: " + keyPath + "\n" + extra
}

func TestClusterAbsent(t *testing.T) {
	c, err := Parse([]byte(base(t)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster != nil {
		t.Fatalf("cluster = %v, want nil without a cluster section", c.Cluster)
	}
}

func TestClusterKeys(t *testing.T) {
	ca := keyFile(t, []byte("x"))
	src := withCluster(t, `  node_id: sbc-a.1
  redis:
    addrs: ["10.0.0.7:26379", "10.0.0.8:26379"]
    sentinel_master: edge
    username: sbc
    password: s3cretpw
    db: 2
    tls: { ca: `+ca+`, server_name: redis.example.net }
  state_key_file: `+keyFile(t, testKey)+`
  role: standby
`)
	c, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Cluster
	if cl == nil || cl.NodeID != "sbc-a.1" || cl.Role != ClusterRoleStandby || cl.Redis.SentinelMaster != "edge" ||
		cl.Redis.DB != 2 || cl.Redis.Username != "sbc" || cl.Redis.Password != "s3cretpw" ||
		!slices.Equal(cl.Redis.Addrs, []string{"10.0.0.7:26379", "10.0.0.8:26379"}) ||
		cl.Redis.TLS == nil || cl.Redis.TLS.CA != ca || cl.Redis.TLS.ServerName != "redis.example.net" {
		t.Fatalf("cluster = %+v", cl)
	}
	for _, s := range []string{
		fmt.Sprintf("%v", cl), fmt.Sprintf("%+v", cl), fmt.Sprintf("%#v", cl), fmt.Sprint(*cl),
		fmt.Sprintf("%+v", cl.Redis), fmt.Sprintf("%#v", cl.Redis), fmt.Sprintf("%+v", *c),
	} {
		if strings.Contains(s, "s3cretpw") {
			t.Fatalf("the Redis password is printed: %s", s)
		}
		if strings.Contains(s, "SECRETKEY") {
			t.Fatalf("the state key is printed: %s", s)
		}
	}
}

func TestClusterDefaults(t *testing.T) {
	c, err := Parse([]byte(withCluster(t, clusterBody(keyFile(t, testKey), ""))))
	if err != nil {
		t.Fatal(err)
	}
	want := Cluster{NodeID: "n1", Role: DefaultClusterRole, StateKeyFile: c.Cluster.StateKeyFile,
		Redis: ClusterRedis{Addrs: []string{"127.0.0.1:6379"}}}
	if got := *c.Cluster; got.String() != want.String() || got.Redis.TLS != nil || got.Redis.DB != 0 {
		t.Fatalf("cluster = %+v, want %+v", got, want)
	}
}

func TestReadStateKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content []byte
	}{
		{"raw", testKey},
		{"raw ending in a newline byte", append(bytes.Clone(testKey[:31]), '\n')},
		{"hex", []byte(hex.EncodeToString(testKey))},
		{"hex with newline", []byte(hex.EncodeToString(testKey) + "\n")},
		{"upper hex", []byte(strings.ToUpper(hex.EncodeToString(testKey)) + "\r\n")},
		{"base64", []byte(base64.StdEncoding.EncodeToString(testKey))},
		{"base64 with newline", []byte(base64.StdEncoding.EncodeToString(testKey) + "\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := testKey
			if tc.name == "raw ending in a newline byte" {
				want = tc.content // 32 bytes are taken as they are
			}
			got, err := ReadStateKey(keyFile(t, tc.content))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("key = %x, want %x", got, want)
			}
		})
	}
}

func TestClusterRefused(t *testing.T) {
	key := keyFile(t, testKey)
	ok := func(extra string) string { return withCluster(t, clusterBody(key, extra)) }
	repl := func(from, to string) string {
		s := ok("")
		if !strings.Contains(s, from) {
			t.Fatalf("test bug: %q not in %q", from, s)
		}
		return strings.Replace(s, from, to, 1)
	}
	dir := t.TempDir()
	leak := []byte("SECRETKEYMATERIAL-31-bytes-long") // one short
	for _, tc := range []struct {
		name, src, key, reason string
	}{
		{"no node id", repl("  node_id: n1\n", ""), "cluster.node_id", "required"},
		{"bad node id", repl("node_id: n1", "node_id: \"n 1\""), "cluster.node_id", "letters, digits"},
		{"long node id", repl("node_id: n1", "node_id: "+strings.Repeat("a", 65)), "cluster.node_id", "1 to 64"},
		{"no addrs", repl(`redis: { addrs: ["127.0.0.1:6379"] }`, "redis: {}"), "cluster.redis.addrs", "required"},
		{"addr without port", repl("127.0.0.1:6379", "127.0.0.1"), "cluster.redis.addrs[0]", "not host:port"},
		{"addr port 0", repl("127.0.0.1:6379", "127.0.0.1:0"), "cluster.redis.addrs[0]", "bad port"},
		{"addr without host", repl("127.0.0.1:6379", ":6379"), "cluster.redis.addrs[0]", "no host"},
		{"several addrs without sentinel", repl(`"127.0.0.1:6379"`, `"127.0.0.1:6379", "127.0.0.2:6379"`), "cluster.redis.addrs", "sentinel_master"},
		{"username without password", repl(`addrs: ["127.0.0.1:6379"]`, `addrs: ["127.0.0.1:6379"], username: sbc`), "cluster.redis.username", "needs cluster.redis.password"},
		{"negative db", repl(`addrs: ["127.0.0.1:6379"]`, `addrs: ["127.0.0.1:6379"], db: -1`), "cluster.redis.db", "0 or more"},
		{"tls ca missing", repl(`addrs: ["127.0.0.1:6379"]`, `addrs: ["127.0.0.1:6379"], tls: { ca: `+filepath.Join(dir, "nope.pem")+` }`), "cluster.redis.tls.ca", "cannot read"},
		{"tls cert without key", repl(`addrs: ["127.0.0.1:6379"]`, `addrs: ["127.0.0.1:6379"], tls: { cert: `+key+` }`), "cluster.redis.tls.cert", "go together"},
		{"tls server name", repl(`addrs: ["127.0.0.1:6379"]`, `addrs: ["127.0.0.1:6379"], tls: { server_name: "a b" }`), "cluster.redis.tls.server_name", "not a host name"},
		{"no key file", repl("  state_key_file: "+key+"\n", ""), "cluster.state_key_file", "required"},
		{"key file missing", repl(key, filepath.Join(dir, "nope.key")), "cluster.state_key_file", "cannot read"},
		{"key file is a directory", repl(key, dir), "cluster.state_key_file", "is a directory"},
		{"key too short", repl(key, keyFile(t, leak)), "cluster.state_key_file", "has 31 bytes"},
		{"key too long", repl(key, keyFile(t, append(bytes.Clone(testKey), 'x'))), "cluster.state_key_file", "32 raw bytes, 64 hex digits or 44 characters of standard base64"},
		{"key bad hex", repl(key, keyFile(t, []byte(strings.Repeat("zz", 32)))), "cluster.state_key_file", "not hex digits"},
		{"key bad base64", repl(key, keyFile(t, []byte(strings.Repeat("!", 44)))), "cluster.state_key_file", "not the base64"},
		{"key empty", repl(key, keyFile(t, nil)), "cluster.state_key_file", "has 0 bytes"},
		{"role", ok("  role: primary\n"), "cluster.role", "active or standby"},
		{"unknown key", ok("  colour: blue\n"), "", "field colour not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.key != "" {
				var ke *KeyError
				if !errors.As(err, &ke) || ke.Key != tc.key || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want an ErrInvalid KeyError on %s", err, tc.key)
				}
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err %q lacks %q", err, tc.reason)
			}
			if strings.Contains(err.Error(), "SECRETKEY") {
				t.Fatalf("the key file's content is in the error: %v", err)
			}
		})
	}
}

// TestClusterStartOnly: the section and each of its keys are start-only.
func TestClusterStartOnly(t *testing.T) {
	key := keyFile(t, testKey)
	key2 := keyFile(t, testKey)
	ca := keyFile(t, []byte("x"))
	b := base(t)
	src := b + "cluster:\n" + clusterBody(key, "  role: active\n")
	old, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	none, err := Parse([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := StartOnlyChanges(none, old); !slices.Equal(got, []string{"cluster"}) {
		t.Fatalf("section added: %v", got)
	}
	if got := StartOnlyChanges(old, none); !slices.Equal(got, []string{"cluster"}) {
		t.Fatalf("section removed: %v", got)
	}
	withTLS := strings.Replace(src, `addrs: ["127.0.0.1:6379"]`, `addrs: ["127.0.0.1:6379"], tls: {}`, 1)
	oldTLS, err := Parse([]byte(withTLS))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		from     *Config
		src      string
		old, new string
		want     []string
	}{
		{old, src, "node_id: n1", "node_id: n2", []string{"cluster.node_id"}},
		{old, src, `"127.0.0.1:6379"`, `"127.0.0.1:6380"`, []string{"cluster.redis.addrs"}},
		{old, src, `addrs: ["127.0.0.1:6379"]`, `addrs: ["127.0.0.1:6379"], username: u, password: p`, []string{"cluster.redis.username", "cluster.redis.password"}},
		{old, src, `addrs: ["127.0.0.1:6379"]`, `addrs: ["127.0.0.1:6379"], sentinel_master: m`, []string{"cluster.redis.sentinel_master"}},
		{old, src, `addrs: ["127.0.0.1:6379"]`, `addrs: ["127.0.0.1:6379"], db: 3`, []string{"cluster.redis.db"}},
		{old, src, `addrs: ["127.0.0.1:6379"]`, `addrs: ["127.0.0.1:6379"], tls: {}`, []string{"cluster.redis.tls"}},
		{oldTLS, withTLS, `tls: {}`, `tls: { ca: ` + ca + `, cert: ` + ca + `, key: ` + ca + `, server_name: r.example }`,
			[]string{"cluster.redis.tls.ca", "cluster.redis.tls.cert", "cluster.redis.tls.key", "cluster.redis.tls.server_name"}},
		{old, src, key, key2, []string{"cluster.state_key_file"}},
		{old, src, "role: active", "role: standby", []string{"cluster.role"}},
		{old, src, "role: active", "role: ~", nil}, // the default made implicit
	} {
		next, err := Parse([]byte(strings.Replace(tc.src, tc.old, tc.new, 1)))
		if err != nil {
			t.Fatalf("%s: %v", tc.new, err)
		}
		if got := StartOnlyChanges(tc.from, next); !slices.Equal(got, tc.want) {
			t.Errorf("%s -> %s: StartOnlyChanges = %v, want %v", tc.old, tc.new, got, tc.want)
		}
	}
}

// TestShutdownHandoff: shutdown.handoff defaults to false, is read with a
// cluster section, and is refused without one (there is nobody to hand
// the calls to).
func TestShutdownHandoff(t *testing.T) {
	key := keyFile(t, testKey)
	c, err := Parse([]byte(withCluster(t, clusterBody(key, ""))))
	if err != nil {
		t.Fatal(err)
	}
	if c.Shutdown.Handoff {
		t.Fatal("shutdown.handoff defaults to true, want false")
	}
	c, err = Parse([]byte(withCluster(t, clusterBody(key, "")) + "shutdown: { handoff: true }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Shutdown.Handoff {
		t.Fatal("shutdown.handoff: true not read")
	}
	_, err = Parse([]byte(base(t) + "shutdown: { handoff: true }\n"))
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "shutdown.handoff" || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "cluster section") {
		t.Fatalf("handoff without a cluster section: error %v, want shutdown.handoff refused naming the cluster section", err)
	}
}
