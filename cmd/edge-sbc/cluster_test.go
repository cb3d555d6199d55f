package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/sip"
	"github.com/edge-sbc/edge-sbc/sip/cluster"
	"github.com/edge-sbc/edge-sbc/sip/siptest"
	"github.com/edge-sbc/edge-sbc/test/syncbuf"
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
	var logs syncbuf.Buffer
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

func TestHasAddress(t *testing.T) {
	if ok, err := hasAddress(netip.MustParseAddr("127.0.0.1")); err != nil || !ok {
		t.Fatalf("127.0.0.1: %v %v", ok, err)
	}
	if ok, err := hasAddress(netip.MustParseAddr("192.0.2.77")); err != nil || ok {
		t.Fatalf("192.0.2.77 (TEST-NET-1): %v %v", ok, err)
	}
}

type fakeStates struct {
	states map[string][]byte
	err    error
}

func (f fakeStates) Load(context.Context) (map[string][]byte, error) { return f.states, f.err }

type fakeTaker struct{ got map[string][]byte }

func (f *fakeTaker) Takeover(_ context.Context, states map[string][]byte) sip.TakeoverResult {
	f.got = states
	return sip.TakeoverResult{Taken: len(states)}
}

// TestTakeOverCalls: the states that opened are taken over even when some
// did not (ErrSealed, reported); Redis unavailable takes nothing.
func TestTakeOverCalls(t *testing.T) {
	ctx := context.Background()
	tk := &fakeTaker{}
	sealed := fmt.Errorf("%w: 1 of 2", cluster.ErrSealed)
	res, err := takeOverCalls(ctx, fakeStates{states: map[string][]byte{"c1": []byte("{}")}, err: sealed}, tk)
	if !errors.Is(err, cluster.ErrSealed) || res.Taken != 1 || len(tk.got) != 1 {
		t.Fatalf("with a sealed state: %+v, %v", res, err)
	}
	tk.got = nil
	res, err = takeOverCalls(ctx, fakeStates{err: cluster.ErrUnavailable}, tk)
	if !errors.Is(err, cluster.ErrUnavailable) || res.Taken != 0 || tk.got != nil {
		t.Fatalf("Redis unavailable: %+v, %v", res, err)
	}
}

// TestStartupSignalsTakeover: SIGUSR1s queued during start-up make one
// takeover, after the reload.
func TestStartupSignalsTakeover(t *testing.T) {
	ch := make(chan os.Signal, 4)
	ch <- syscall.SIGUSR1
	ch <- syscall.SIGHUP
	ch <- syscall.SIGUSR1
	var did []string
	stop := handleStartupSignals(ch, func() { did = append(did, "reload") }, func() { did = append(did, "takeover") }, zerolog.Nop())
	if stop != nil || strings.Join(did, ",") != "reload,takeover" {
		t.Fatalf("stop %v, did %v", stop, did)
	}
}

// TestWatchAddress: the service address present at the first look is no
// trigger; each appearance after an absence is one (a failing look counts
// as absent); triggers not yet handled are not doubled; stop ends the
// goroutine.
func TestWatchAddress(t *testing.T) {
	addr := netip.MustParseAddr("192.0.2.10")
	looks := make(chan error) // nil: present; errAbsent: absent; other: a failing look
	errAbsent := errors.New("absent")
	has := func(a netip.Addr) (bool, error) {
		if a != addr {
			t.Errorf("looked for %s", a)
		}
		err := <-looks
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, errAbsent):
			return false, nil
		}
		return false, err
	}
	var appeared <-chan struct{}
	var stop func()
	started := make(chan struct{})
	go func() { appeared, stop = watchAddress(addr, time.Millisecond, has, zerolog.Nop()); close(started) }()
	looks <- nil // present at start
	<-started
	defer func() {
		close(looks) // a look in progress returns (present)
		stop()
	}()
	none := func(what string) {
		t.Helper()
		select {
		case <-appeared:
			t.Fatalf("a trigger %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
	looks <- nil
	looks <- nil
	none("while the address was there from the start")
	looks <- errAbsent
	looks <- nil // appeared
	looks <- nil
	looks <- errors.New("netlink says no") // failing: absent
	looks <- nil                           // appeared again, not handled yet
	looks <- nil
	select {
	case <-appeared:
	case <-time.After(time.Second):
		t.Fatal("no trigger when the address appeared")
	}
	none("doubled: two appearances before one was handled make one")
	looks <- errAbsent
	looks <- nil
	select {
	case <-appeared:
	case <-time.After(time.Second):
		t.Fatal("no trigger when the address appeared again")
	}
}

// TestHandoffFallsBackToDrain: with shutdown.handoff, a node alone in the
// cluster, or one that cannot reach Redis, does not hand over (the
// caller drains), and says why; with another live node it hands over and
// leaves the cluster (its heartbeat is gone from Redis at once).
func TestHandoffFallsBackToDrain(t *testing.T) {
	r := siptest.StartRedis(t)
	key := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	node := func(id string) (*sbc, *syncbuf.Buffer) {
		extra := fmt.Sprintf("cluster: {node_id: %s, state_key_file: %q, redis: {addrs: [%q]}}\nshutdown: {handoff: true}", id, key, r.Addr())
		var logs syncbuf.Buffer
		s, err := build(startConfigWith(t, freeTCP(t), freeTCP(t), freeTCP(t), extra), "", &logs)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.start(); err != nil {
			t.Fatalf("start: %v\n%s", err, logs.String())
		}
		t.Cleanup(s.close)
		return s, &logs
	}
	n1, logs1 := node("n1")
	if n1.handoff(syscall.SIGTERM) {
		t.Fatal("handed over with no other live node")
	}
	if !strings.Contains(logs1.String(), "no other live node") || n1.b2b.Draining() {
		t.Fatalf("no hand-over: not logged, or the drain's job done here\n%s", logs1.String())
	}
	n2, logs2 := node("n2")
	if !n2.handoff(syscall.SIGTERM) {
		t.Fatalf("no hand-over with n1 alive\n%s", logs2.String())
	}
	if !strings.Contains(logs2.String(), `"cluster: handed off"`) || !n2.b2b.Draining() {
		t.Fatalf("hand-over not logged, or new calls still taken\n%s", logs2.String())
	}
	raw := redis.NewClient(&redis.Options{Addr: r.Addr(), Protocol: 2, DisableIdentity: true})
	defer raw.Close()
	if n, err := raw.Exists(context.Background(), "edge-sbc:node:n2:alive").Result(); err != nil || n != 0 {
		t.Fatalf("n2's heartbeat is still in Redis after the hand-over: %v %v", n, err)
	}
	r.Kill()
	if n1.handoff(syscall.SIGTERM) {
		t.Fatal("handed over without Redis")
	}
	if !strings.Contains(logs1.String(), "Redis cannot be used") {
		t.Fatalf("no hand-over without Redis: not logged\n%s", logs1.String())
	}
}
