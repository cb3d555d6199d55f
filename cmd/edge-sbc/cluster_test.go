package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/edge-sbc/edge-sbc/sip/siptest"
)

// gauge is the value of a gauge without labels in reg (-1: absent).
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// TestServeCluster: with a cluster section the SBC joins the cluster at
// start (its heartbeat is in Redis), exports edge_sbc_cluster_redis_up 1,
// then 0 once Redis is gone (the SBC goes on), and closes the cluster with
// the rest, leaving no goroutine; without the section the gauge is not
// there.
func TestServeCluster(t *testing.T) {
	r := siptest.StartRedis(t)
	key := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("cluster: {node_id: n1, state_key_file: %q, redis: {addrs: [%q]}}", key, r.Addr())
	path := startConfigWith(t, freeTCP(t), freeTCP(t), freeTCP(t), extra)

	base := runtime.NumGoroutine()
	var logs syncBuffer
	s, err := build(path, "", &logs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.start(); err != nil {
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	if g := gauge(t, s.reg, "edge_sbc_cluster_redis_up"); g != 1 {
		t.Fatalf("edge_sbc_cluster_redis_up = %v with Redis up", g)
	}
	raw := redis.NewClient(&redis.Options{Addr: r.Addr(), Protocol: 2, DisableIdentity: true})
	defer raw.Close()
	if n, err := raw.Exists(context.Background(), "edge-sbc:node:n1:alive").Result(); err != nil || n != 1 {
		t.Fatalf("the node's heartbeat is not in Redis: %v %v", n, err)
	}
	raw.Close()
	r.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for gauge(t, s.reg, "edge_sbc_cluster_redis_up") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("edge_sbc_cluster_redis_up still 1 10 s after Redis was killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.b2b.Alive(); err != nil {
		t.Fatalf("Redis gone, and the SBC is not alive: %v", err)
	}
	s.close()
	settled(t, base, "after close")
	if strings.Contains(logs.String(), "close failed") {
		t.Errorf("log:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), strings.Repeat("ab", 32)) {
		t.Error("the state key reached the log")
	}

	plain := startConfig(t, freeTCP(t), freeTCP(t), freeTCP(t))
	s, err = build(plain, "", &logs)
	if err != nil {
		t.Fatal(err)
	}
	if g := gauge(t, s.reg, "edge_sbc_cluster_redis_up"); g != -1 {
		t.Fatalf("edge_sbc_cluster_redis_up = %v without a cluster section", g)
	}
}
