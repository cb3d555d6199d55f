package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestLeave: a node that hands its calls over and leaves stops counting at
// once (no 6 s wait for its heartbeat), the other node's Adopt makes each
// call count once, its states stay in Redis, and its heartbeat writes
// nothing more. LiveNodes sees the other node only while it is alive.
func TestLeave(t *testing.T) {
	r := startRedis(t)
	ctx := context.Background()
	n1 := node(t, r, "n1", nil, func(o *Options) { o.HeartbeatInterval = 50 * time.Millisecond })
	if live, err := n1.LiveNodes(ctx); err != nil || len(live) != 0 {
		t.Fatalf("LiveNodes alone = %v, %v; want none", live, err)
	}
	n2 := node(t, r, "n2", nil, nil)
	if live, err := n1.LiveNodes(ctx); err != nil || !slices.Equal(live, []string{"n2"}) {
		t.Fatalf("LiveNodes = %v, %v; want [n2]", live, err)
	}
	for _, id := range []string{"c0", "c1"} {
		admit(t, n1.Admitter(), id, pbx(2), Limit{})
		if err := n1.StateStore().Put(ctx, id, []byte("state of "+id), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := admit(t, n2.Admitter(), "c2", pbx(2), Limit{}); ok {
		t.Fatal("n1's calls do not count")
	}
	if err := n1.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	raw := raw(t, r, "")
	for _, k := range []string{"edge-sbc:node:n1:alive", "edge-sbc:node:n1:calls", "edge-sbc:node:n1:count"} {
		if raw.Exists(ctx, k).Val() != 0 {
			t.Errorf("%s is still in Redis after Leave", k)
		}
	}
	if raw.SIsMember(ctx, "edge-sbc:nodes", "n1").Val() {
		t.Error("n1 still in the nodes set after Leave")
	}
	states, err := n2.StateStore().Load(ctx)
	if err != nil || len(states) != 2 {
		t.Fatalf("states after Leave: %d, %v; want both left in Redis", len(states), err)
	}
	for _, id := range []string{"c0", "c1"} {
		if err := n2.Admitter().Adopt(ctx, AdmitRequest{CallID: id, Trunks: pbx(2)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := raw.HGet(ctx, "edge-sbc:node:n2:count", "t:pbx").Val(); got != "2" {
		t.Fatalf("calls adopted after Leave count %s on n2, want 2", got)
	}
	if ok, _ := admit(t, n2.Admitter(), "c2", pbx(2), Limit{}); ok {
		t.Fatal("an adopted call does not count (or counts on no node)")
	}
	// Several heartbeat intervals of n1: nothing of it comes back.
	time.Sleep(300 * time.Millisecond)
	if raw.Exists(ctx, "edge-sbc:node:n1:alive").Val() != 0 || raw.SIsMember(ctx, "edge-sbc:nodes", "n1").Val() {
		t.Fatal("n1's heartbeat wrote its records again after Leave")
	}
	if live, err := n2.LiveNodes(ctx); err != nil || len(live) != 0 {
		t.Fatalf("n2's LiveNodes after n1 left = %v, %v; want none", live, err)
	}
	if _, _, err := n1.Admitter().Admit(ctx, AdmitRequest{CallID: "late", Trunks: pbx(2)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Admit after Leave: %v, want ErrClosed", err)
	}
	if err := n1.Leave(ctx); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
}
