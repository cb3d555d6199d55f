package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"

	"github.com/edge-sbc/edge-sbc/sip/cluster/redistest"
	"github.com/edge-sbc/edge-sbc/test/syncbuf"
)

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testPKI writes a CA and a server certificate for 127.0.0.1 and
// redis.test.
func testPKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"redis.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kDER, _ := x509.MarshalECPrivateKey(srvKey)
	ca = writeFile(t, dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	cert = writeFile(t, dir, "redis.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}))
	key = writeFile(t, dir, "redis.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kDER}))
	return ca, cert, key
}

// TestFromConfigTLS: the options FromConfig builds reach a Redis over TLS
// with the configured CA and server name, and only with them.
func TestFromConfigTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := testPKI(t, dir)
	r := redistest.Start(t, redistest.Options{TLS: true, Extra: []string{"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no"}})
	keyFile := writeFile(t, dir, "cluster.key", []byte(hex.EncodeToString(testKey)+"\n"))
	cfg := &config.Cluster{NodeID: "n1", StateKeyFile: keyFile, Role: "active",
		Redis: config.ClusterRedis{Addrs: []string{r.Addr()}, TLS: &config.ClusterRedisTLS{CA: ca, ServerName: "redis.test"}}}
	o, err := FromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.Key, testKey) || o.NodeID != "n1" || o.Redis.TLS == nil || o.Redis.TLS.ServerName != "redis.test" {
		t.Fatalf("options %v", o)
	}
	// A TLS handshake under the race detector on a loaded machine can take
	// longer than the default 200 ms.
	o.Timeout = 2 * time.Second
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !c.Up() {
		t.Fatal("not up over TLS")
	}
	if ok, _, err := c.Admitter().Admit(context.Background(), AdmitRequest{CallID: "x"}); !ok || err != nil {
		t.Fatalf("admit over TLS: %v %v", ok, err)
	}

	// Without the CA (system roots), the server is not trusted.
	cfg.Redis.TLS = &config.ClusterRedisTLS{ServerName: "redis.test"}
	o, err = FromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	log := &syncbuf.Buffer{}
	o.Log = zerolog.New(log)
	o.Timeout = 2 * time.Second
	c2, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.Start(context.Background())
	if c2.Up() || !strings.Contains(log.String(), "certificate") {
		t.Fatalf("up without trusting the server's CA; log:\n%s", log)
	}
}

func TestFromConfigErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "k", testKey)
	notPEM := writeFile(t, dir, "x.pem", []byte("x"))
	for i, cfg := range []*config.Cluster{
		nil,
		{NodeID: "n1", StateKeyFile: filepath.Join(dir, "nope"), Redis: config.ClusterRedis{Addrs: []string{"127.0.0.1:1"}}},
		{NodeID: "n1", StateKeyFile: good, Redis: config.ClusterRedis{Addrs: []string{"127.0.0.1:1"}, TLS: &config.ClusterRedisTLS{CA: notPEM}}},
		{NodeID: "n1", StateKeyFile: good, Redis: config.ClusterRedis{Addrs: []string{"127.0.0.1:1"}, TLS: &config.ClusterRedisTLS{Cert: notPEM, Key: notPEM}}},
	} {
		if _, err := FromConfig(cfg, zerolog.Nop()); err == nil {
			t.Errorf("case %d accepted", i)
		}
	}
	for i, o := range []Options{
		{NodeID: "", Key: testKey, Redis: RedisOptions{Addrs: []string{"x:1"}}},
		{NodeID: "a:b", Key: testKey, Redis: RedisOptions{Addrs: []string{"x:1"}}},
		{NodeID: "n1", Key: testKey[:16], Redis: RedisOptions{Addrs: []string{"x:1"}}},
		{NodeID: "n1", Key: testKey},
		{NodeID: "n1", Key: testKey, Redis: RedisOptions{Addrs: []string{"x:1", "y:1"}}},
		{NodeID: "n1", Key: testKey, Redis: RedisOptions{Addrs: []string{"x:1"}}, HeartbeatInterval: time.Second, HeartbeatTTL: time.Second},
	} {
		if c, err := Open(o); err == nil {
			c.Close()
			t.Errorf("options %d accepted: %v", i, o)
		} else if strings.Contains(err.Error(), string(testKey)) {
			t.Errorf("the key is in the error: %v", err)
		}
	}
	if s := fmt.Sprint(Options{Key: testKey, Redis: RedisOptions{Password: "hunter2"}}); strings.Contains(s, "hunter2") || strings.Contains(s, string(testKey)) {
		t.Fatalf("Options print a secret: %s", s)
	}
}

// TestSentinel: with sentinel_master, the addresses are Sentinels that
// name the server.
func TestSentinel(t *testing.T) {
	r := startRedis(t)
	s := redistest.StartSentinel(t, r)
	n := node(t, r, "n1", nil, func(o *Options) {
		o.Redis.Addrs = []string{s.Addr()}
		o.Redis.SentinelMaster = "m"
	})
	eventually(t, 5*time.Second, "up through the Sentinel", n.Up)
	if ok, _, err := n.Admitter().Admit(context.Background(), AdmitRequest{CallID: "x"}); !ok || err != nil {
		t.Fatalf("admit through the Sentinel: %v %v", ok, err)
	}
	if !raw(t, r, "").HExists(context.Background(), "edge-sbc:node:n1:calls", "x").Val() {
		t.Fatal("the call is not in the server the Sentinel names")
	}
}

func TestRedisLog(t *testing.T) {
	var b syncbuf.Buffer
	RedisLog{Log: zerolog.New(&b)}.Printf(context.Background(), "dial %s: %v", "127.0.0.1:1", "refused")
	if !strings.Contains(b.String(), `"level":"debug","component":"go-redis","message":"dial 127.0.0.1:1: refused"`) {
		t.Fatalf("logged %s", b.String())
	}
}
