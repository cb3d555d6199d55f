package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/test/syncbuf"
)

const (
	logDown = "Redis unreachable"
	logBack = "Redis reachable again"
)

// TestRedisDown: with Redis killed, Admit says "use local limits" at once
// (bounded by the 200 ms timeout), Up is false and the outage is logged
// once; what the node does meanwhile reaches Redis when it is back (here
// restarted empty), Up is true again and that is logged once.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	log := &syncbuf.Buffer{}
	n := node(t, r, "n1", log, nil)
	a, s := n.Admitter(), n.StateStore()
	ctx := context.Background()
	if !n.Up() || !a.Up() {
		t.Fatal("Up is false after Start")
	}
	if ok, _ := admit(t, a, "before", pbx(10), Limit{}); !ok {
		t.Fatal("refused")
	}
	if err := s.Put(ctx, "kept", []byte("k"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "ended", []byte("e"), time.Minute); err != nil {
		t.Fatal(err)
	}

	r.Kill()
	var slowest time.Duration
	for i := range 20 {
		start := time.Now()
		ok, _, err := a.Admit(ctx, AdmitRequest{CallID: "during", Trunks: pbx(10)})
		d := time.Since(start)
		slowest = max(slowest, d)
		if ok || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("admit %d with Redis down: ok=%v err=%v, want ErrUnavailable", i, ok, err)
		}
		if d > DefaultTimeout+200*time.Millisecond {
			t.Fatalf("admit %d with Redis down took %s", i, d)
		}
	}
	t.Logf("Admit with Redis down: the slowest of 20 took %s", slowest)
	if n.Up() {
		t.Fatal("Up is true with Redis down")
	}
	// Meanwhile: a call admitted by local limits, a call ended, states.
	if err := a.Adopt(ctx, AdmitRequest{CallID: "local", Trunks: pbx(10)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("adopt: %v", err)
	}
	if err := a.Release(ctx, "before"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("release: %v", err)
	}
	if err := s.Put(ctx, "during", []byte("d"), time.Minute); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("put: %v", err)
	}
	if err := s.Delete(ctx, "ended"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("delete: %v", err)
	}
	if _, err := s.Load(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("load: %v", err)
	}
	time.Sleep(2 * time.Second) // several probes fail
	if c := log.Count(logDown); c != 1 {
		t.Fatalf("the outage is logged %d times, want once:\n%s", c, log)
	}

	r.Restart() // empty: it lost everything
	start := time.Now()
	eventually(t, 5*time.Second, "Up after Redis is back", n.Up)
	t.Logf("Up again %s after Redis restarted", time.Since(start).Round(10*time.Millisecond))
	eventually(t, time.Second, "logged back", func() bool { return log.Count(logBack) == 1 })
	if c := log.Count(logDown); c != 1 {
		t.Fatalf("the outage is logged %d times, want once:\n%s", c, log)
	}
	if strings.Contains(log.String(), string(testKey)) {
		t.Fatal("the key is in the log")
	}

	// Redis has this node's records again, as they are now.
	raw := raw(t, r, "")
	if got := raw.HGet(ctx, "edge-sbc:node:n1:count", "t:pbx").Val(); got != "1" {
		t.Fatalf("pbx count %q after the rewrite, want 1 (the call adopted during the outage)", got)
	}
	if raw.HExists(ctx, "edge-sbc:node:n1:calls", "before").Val() || !raw.HExists(ctx, "edge-sbc:node:n1:calls", "local").Val() {
		t.Fatal("the calls hash was not rewritten")
	}
	got, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got["kept"]) != "k" || string(got["during"]) != "d" {
		t.Fatalf("states after the rewrite: %q, want kept and during", got)
	}
	if ok, _ := admit(t, a, "after", pbx(2), Limit{}); !ok {
		t.Fatal("refused after Redis is back")
	}
	if ok, _ := admit(t, a, "after2", pbx(2), Limit{}); ok {
		t.Fatal("the adopted call is not counted after Redis is back")
	}
}

// TestStartWithoutRedis: a node starts on local limits when Redis is not
// there, and joins when it comes.
func TestStartWithoutRedis(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	r.Kill()
	log := &syncbuf.Buffer{}
	start := time.Now()
	n := node(t, r, "n1", log, nil)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Start took %s without Redis", d)
	}
	if n.Up() {
		t.Fatal("Up without Redis")
	}
	if _, _, err := n.Admitter().Admit(context.Background(), AdmitRequest{CallID: "x"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("admit: %v", err)
	}
	r.Restart()
	eventually(t, 5*time.Second, "Up once Redis is there", n.Up)
	if log.Count(logDown) != 1 || log.Count(logBack) != 1 {
		t.Fatalf("log:\n%s", log)
	}
}

// TestPassword: a Redis with a password; a wrong one is "unreachable",
// and no password is logged.
func TestPassword(t *testing.T) {
	const pw = "pw-9f8e7d6c5b4a"
	r := startRedis(t, "--requirepass", pw)
	log := &syncbuf.Buffer{}
	good := node(t, r, "n1", log, func(o *Options) { o.Redis.Password = pw })
	if !good.Up() {
		t.Fatalf("Up is false with the right password:\n%s", log)
	}
	bad := node(t, r, "n2", log, func(o *Options) { o.Redis.Password = "wrong-" + pw })
	if bad.Up() {
		t.Fatal("Up with a wrong password")
	}
	if log.Count("WRONGPASS") != 1 || strings.Contains(log.String(), pw) {
		t.Fatalf("log:\n%s", log)
	}
	o := good.o
	o.Redis.Password = pw
	o.Key = testKey
	for _, s := range []string{o.String(), o.GoString(), o.Redis.String()} {
		if strings.Contains(s, pw) || strings.Contains(s, string(testKey)) {
			t.Fatalf("Options print a secret: %s", s)
		}
	}
}

// TestRedisStalls: a Redis that accepts but does not answer (CLIENT
// PAUSE) costs one Admit the 200 ms timeout, then the node is on local
// limits at once until Redis answers again.
func TestRedisStalls(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	log := &syncbuf.Buffer{}
	n := node(t, r, "n1", log, nil)
	a := n.Admitter()
	ctx := context.Background()
	if err := raw(t, r, "").Do(ctx, "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err := a.Admit(ctx, AdmitRequest{CallID: "x", Trunks: pbx(10)})
	d := time.Since(start)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("admit with Redis stalled: %v", err)
	}
	t.Logf("Admit with Redis stalled returned after %s: %v", d.Round(time.Millisecond), err)
	if d < DefaultTimeout/2 || d > DefaultTimeout+300*time.Millisecond {
		t.Fatalf("admit with Redis stalled took %s, want about the %s timeout", d, DefaultTimeout)
	}
	start = time.Now()
	if _, _, err := a.Admit(ctx, AdmitRequest{CallID: "y", Trunks: pbx(10)}); !errors.Is(err, ErrUnavailable) || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("the next admit: %v after %s, want ErrUnavailable at once", err, time.Since(start))
	}
	if n.Up() {
		t.Fatal("Up while Redis stalls")
	}
	eventually(t, 5*time.Second, "Up after the pause", n.Up)
	if ok, _ := admit(t, a, "z", pbx(10), Limit{}); !ok {
		t.Fatal("refused after the pause")
	}
	// The admit that timed out is not counted, whether or not Redis ran it.
	if got := raw(t, r, "").HKeys(ctx, "edge-sbc:node:n1:calls").Val(); len(got) != 1 || got[0] != "z" {
		t.Fatalf("n1's calls in Redis: %v, want [z]", got)
	}
	if log.Count(logDown) != 1 || log.Count(logBack) != 1 {
		t.Fatalf("log:\n%s", log)
	}
}
