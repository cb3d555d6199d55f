package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/edge-sbc/edge-sbc/sip/siptest"
	"github.com/edge-sbc/edge-sbc/test/harness"
)

// clusterNode is one edge-sbc process of a cluster with its own scripted
// callee (trunk inside, max_calls 10).
type clusterNode struct {
	sbc    *harness.SBC
	addr   string // the SIP listener (mutual TLS)
	callee *siptest.Listener
	peer   *siptest.Peer
}

func (n *clusterNode) calleePeer() *siptest.Peer {
	if n.peer == nil {
		n.peer = n.callee.Accept(5 * time.Second)
	}
	return n.peer
}

// startClusterNode runs edge-sbc as node id of a cluster on redis.
func startClusterNode(t *testing.T, pki *siptest.PKI, redis, key, id string) *clusterNode {
	t.Helper()
	n := &clusterNode{callee: siptest.Listen(t, pki, "callee.test")}
	n.addr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	leaf := pki.Leaves["sbc.test"]
	media := harness.FreePort(t) &^ 1
	cfg := fmt.Sprintf(`node: { fqdn: sbc.test, domains: [sbc.test] }
tls: { cert: %q, key: %q, ca: %q }
listen:
  - { addr: %q, client_auth: required }
trunks:
  - { name: outside, identity: caller.test, allow_plain_rtp: true }
  - { name: inside, uri: "sips:%s", identity: callee.test, max_calls: 10, allow_plain_rtp: true }
routes:
  - { from: outside, to: inside }
sip: { provisional_timeout: 10s }
media: { bind: 127.0.0.1, port_range: "%d-%d" }
limits: { max_connections_per_ip: 1000, handshakes_per_ip: 1000 }
log: { level: info, format: json }
cluster: { node_id: %s, state_key_file: %q, redis: { addrs: [%q] } }
`, leaf.Cert, leaf.Key, pki.CA, n.addr, n.callee.Addr(), media, media+99, id, key, redis)
	n.sbc = harness.StartSBC(t, cfg)
	return n
}

// offer sends a new call to n from a new caller connection: admitted, the
// callee answers 180 and the call keeps ringing (and counting); refused,
// the caller's final response is returned.
func (n *clusterNode) offer(t *testing.T, pki *siptest.PKI) (bool, *sip.Response) {
	t.Helper()
	a := siptest.Dial(t, pki, n.addr, "caller.test", true)
	return siptest.OfferRinging(t, a, "sips:bob@sbc.test", n.calleePeer, 5*time.Second)
}

// TestClusterLimitProcesses: two edge-sbc processes and a real
// redis-server, a trunk with max_calls 10: 5 calls on each node, the 11th
// refused on either with 503 "call limit reached"; one node killed with
// SIGKILL, its 5 slots are free within 10 s (the time is logged) and the
// other node admits 5 calls in their place, not 6.
func TestClusterLimitProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	redis := siptest.StartRedis(t)
	pki := siptest.NewPKI(t, "sbc.test", "caller.test", "callee.test")
	key := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n1 := startClusterNode(t, pki, redis.Addr(), key, "n1")
	n2 := startClusterNode(t, pki, redis.Addr(), key, "n2")
	for i := range 10 {
		n := []*clusterNode{n1, n2}[i%2]
		if ok, res := n.offer(t, pki); !ok {
			t.Fatalf("call %d refused with %d before the cluster limit", i+1, res.StatusCode)
		}
	}
	for _, n := range []*clusterNode{n1, n2} {
		ok, res := n.offer(t, pki)
		if ok || res.StatusCode != 503 || !strings.Contains(res.GetHeader("Warning").Value(), "call limit reached") {
			t.Fatalf("the 11th call: admitted %v, %v", ok, res)
		}
	}
	killed := time.Now()
	n1.sbc.Kill()
	for {
		if ok, _ := n2.offer(t, pki); ok {
			break
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatal("the killed node's calls still count after 10 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the killed node's slots were free %s after SIGKILL", time.Since(killed).Round(10*time.Millisecond))
	for i := range 4 {
		if ok, res := n2.offer(t, pki); !ok {
			t.Fatalf("call %d of the 5 freed slots refused: %d", i+2, res.StatusCode)
		}
	}
	if ok, _ := n2.offer(t, pki); ok {
		t.Fatal("a 6th call was admitted in the 5 slots the killed node freed")
	}
	if !strings.Contains(n2.sbc.Logs(), `"admission":"trunk_max_calls"`) {
		t.Error("the cluster refusal was not logged with its reason")
	}
}
