package cluster

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"
)

// srtpLike is a call state with something that must not be readable in
// Redis.
func srtpLike(id string) []byte {
	return []byte(`{"call":"` + id + `","a":{"crypto":"AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"}}`)
}

// TestStateRoundTrip: Put, Load on the other node, Delete; what Redis
// holds is sealed: not the plaintext, and it opens with the key only, for
// its own call id only.
func TestStateRoundTrip(t *testing.T) {
	r := startRedis(t)
	n1, n2 := node(t, r, "n1", nil, nil), node(t, r, "n2", nil, nil)
	s1, s2 := n1.StateStore(), n2.StateStore()
	ctx := context.Background()
	want := map[string][]byte{}
	for _, id := range []string{"call-1", "call-2@host", "call:3"} {
		want[id] = srtpLike(id)
		if err := s1.Put(ctx, id, want[id], time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s2.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("n2 loads %q, want %q", got, want)
	}
	// A second Put replaces the state.
	want["call-1"] = []byte("renegotiated")
	if err := s1.Put(ctx, "call-1", want["call-1"], time.Minute); err != nil {
		t.Fatal(err)
	}

	raw := raw(t, r, "")
	v, err := raw.Get(ctx, "edge-sbc:state:call-2@host").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(v, []byte("inline:")) || bytes.Contains(v, []byte("AES_CM")) || bytes.Contains(v, want["call-2@host"][:20]) {
		t.Fatalf("Redis holds the state in clear: %q", v)
	}
	if ttl := raw.PTTL(ctx, "edge-sbc:state:call-2@host").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("state TTL %s, want the minute Put was given", ttl)
	}
	// Two writes of the same state differ (a new nonce each time).
	if err := s1.Put(ctx, "call-2@host", want["call-2@host"], time.Minute); err != nil {
		t.Fatal(err)
	}
	if v2, _ := raw.Get(ctx, "edge-sbc:state:call-2@host").Bytes(); bytes.Equal(v, v2) {
		t.Fatal("the same state sealed twice gives the same bytes")
	}

	// Another key opens nothing.
	other := bytes.Repeat([]byte{0x17}, KeySize)
	n3 := node(t, r, "n3", nil, func(o *Options) { o.Key = other })
	got, err = n3.StateStore().Load(ctx)
	if !errors.Is(err, ErrSealed) || len(got) != 0 || !strings.Contains(err.Error(), "3 of 3") {
		t.Fatalf("with another key: %d states, err %v; want none and ErrSealed", len(got), err)
	}

	// A sealed value moved to another call's key does not open there.
	if err := raw.Set(ctx, "edge-sbc:state:call-9", v, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	got, err = s2.Load(ctx)
	if !errors.Is(err, ErrSealed) || got["call-9"] != nil || len(got) != 3 {
		t.Fatalf("a value moved to call-9: %d states (call-9 %q), err %v", len(got), got["call-9"], err)
	}
	raw.Del(ctx, "edge-sbc:state:call-9")

	// Delete, twice (the second is nothing).
	for range 2 {
		if err := s1.Delete(ctx, "call-1"); err != nil {
			t.Fatal(err)
		}
	}
	delete(want, "call-1")
	got, err = s2.Load(ctx)
	if err != nil || !maps.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("after delete: %q, %v; want %q", got, err, want)
	}

	// The TTL is Redis's: an expired state is gone.
	if err := s1.Put(ctx, "short", []byte("x"), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got, _ := s2.Load(ctx); got["short"] != nil {
		t.Fatal("an expired state is loaded")
	}
	for _, bad := range []func() error{
		func() error { return s1.Put(ctx, "", []byte("x"), time.Minute) },
		func() error { return s1.Put(ctx, "x", []byte("x"), 0) },
		func() error { return s1.Put(ctx, "x", make([]byte, MaxStateSize+1), time.Minute) },
		func() error { return s1.Delete(ctx, "") },
	} {
		if bad() == nil {
			t.Error("a bad put or delete accepted")
		}
	}
}

// event is one Watch callback.
type event struct {
	id      string
	state   string
	deleted bool
}

// watch runs Watch on s until the test ends and returns its events.
func watch(t *testing.T, s *StateStore) (<-chan event, <-chan error) {
	t.Helper()
	ev := make(chan event, 100)
	ret := make(chan error, 1)
	finished := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(finished)
		ret <- s.Watch(ctx, func(id string, state []byte, deleted bool) {
			ev <- event{id, string(state), deleted}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	return ev, ret
}

func next(t *testing.T, ev <-chan event, what string) event {
	t.Helper()
	select {
	case e := <-ev:
		return e
	case <-time.After(5 * time.Second):
		t.Fatalf("no event: %s", what)
		return event{}
	}
}

func expect(t *testing.T, ev <-chan event, want event) {
	t.Helper()
	if got := next(t, ev, want.id); got != want {
		t.Fatalf("event %+v, want %+v", got, want)
	}
}

// TestStateWatch: a standby's Watch sees the other node's puts and
// deletes (not its own), starts with the states already there, and after
// a lost subscription catches up with what it missed.
func TestStateWatch(t *testing.T) {
	r := startRedis(t)
	n1, n2 := node(t, r, "n1", nil, nil), node(t, r, "n2", nil, nil)
	s1, s2 := n1.StateStore(), n2.StateStore()
	ctx := context.Background()
	if err := s1.Put(ctx, "before", []byte("b0"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s2.Put(ctx, "own", []byte("mine"), time.Minute); err != nil {
		t.Fatal(err)
	}
	ev, _ := watch(t, s2)
	expect(t, ev, event{"before", "b0", false}) // the initial read, not "own"

	if err := s1.Put(ctx, "a", []byte("answered"), time.Minute); err != nil {
		t.Fatal(err)
	}
	expect(t, ev, event{"a", "answered", false})
	if err := s2.Put(ctx, "own2", []byte("mine"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s1.Put(ctx, "a", []byte("reinvited"), time.Minute); err != nil {
		t.Fatal(err)
	}
	expect(t, ev, event{"a", "reinvited", false}) // own2 is not reported
	if err := s1.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	expect(t, ev, event{"a", "", true})

	// The subscription is cut; what happens meanwhile is caught up.
	raw := raw(t, r, "")
	if err := raw.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s1.Delete(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	if err := s1.Put(ctx, "during", []byte("d"), time.Minute); err != nil {
		t.Fatal(err)
	}
	got := map[string]event{}
	for len(got) < 2 {
		e := next(t, ev, "catching up after the subscription was cut")
		got[e.id] = e
	}
	if got["before"] != (event{"before", "", true}) || got["during"] != (event{"during", "d", false}) {
		t.Fatalf("after the cut: %+v", got)
	}
}

// TestWatchEndsAtClose: Close ends a running Watch and waits for it
// (here for a callback that takes its time).
func TestWatchEndsAtClose(t *testing.T) {
	r := startRedis(t)
	n1, n2 := node(t, r, "n1", nil, nil), node(t, r, "n2", nil, nil)
	in, release := make(chan struct{}), make(chan struct{})
	ret := make(chan error, 1)
	go func() {
		ret <- n2.StateStore().Watch(context.Background(), func(string, []byte, bool) {
			in <- struct{}{}
			<-release
		})
	}()
	if err := n1.StateStore().Put(context.Background(), "a", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch saw nothing")
	}
	closed := make(chan error, 1)
	go func() { closed <- n2.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a Watch callback runs")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case err := <-ret:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Watch returned %v, want ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Watch did not return")
	}
	if err := n2.StateStore().Watch(context.Background(), func(string, []byte, bool) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch after Close: %v", err)
	}
}

// TestPartitionedNodeYields: a node cut off from Redis keeps its writes and
// makes them when it is back, except for a call another node took over
// meanwhile: that node's state stays.
func TestPartitionedNodeYields(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	px := newProxy(t, r.Addr())
	n1 := node(t, r, "n1", nil, func(o *Options) { o.Redis.Addrs = []string{px.addr()} })
	n2 := node(t, r, "n2", nil, nil)
	s1, s2 := n1.StateStore(), n2.StateStore()
	ctx := context.Background()
	for _, id := range []string{"x", "y"} {
		if err := s1.Put(ctx, id, []byte(id+"1"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	px.setCut(true)
	for _, id := range []string{"x", "y"} {
		if err := s1.Put(ctx, id, []byte(id+"2"), time.Minute); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("put while cut off: %v", err)
		}
	}
	// n2 takes x over.
	if err := s2.Put(ctx, "x", []byte("x-by-n2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	px.setCut(false)
	eventually(t, 5*time.Second, "n1 up again", n1.Up)
	got, err := s2.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(got["x"]) != "x-by-n2" || string(got["y"]) != "y2" {
		t.Fatalf("after n1 is back: x=%q y=%q, want x-by-n2 (n2 took it over) and y2 (n1's write made late)", got["x"], got["y"])
	}
}
