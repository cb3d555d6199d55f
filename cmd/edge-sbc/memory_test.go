package main

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestReleaseWhenIdle: memory is released once after calls ended and the
// SBC stayed idle, never while calls run, and not again while idle.
func TestReleaseWhenIdle(t *testing.T) {
	var calls, released atomic.Int64
	calls.Store(3)
	stop := releaseWhenIdle(func() int { return int(calls.Load()) }, func() { released.Add(1) },
		5*time.Millisecond, 50*time.Millisecond, zerolog.Nop())
	defer stop()
	time.Sleep(150 * time.Millisecond)
	if n := released.Load(); n != 0 {
		t.Fatalf("released %d times while calls were in progress", n)
	}
	calls.Store(0)
	deadline := time.Now().Add(2 * time.Second)
	for released.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if released.Load() != 1 {
		t.Fatal("not released after the calls ended and the SBC stayed idle")
	}
	time.Sleep(200 * time.Millisecond)
	if n := released.Load(); n != 1 {
		t.Fatalf("released %d times while idle, want once", n)
	}
	calls.Store(1)
	time.Sleep(100 * time.Millisecond)
	calls.Store(0)
	deadline = time.Now().Add(2 * time.Second)
	for released.Load() == 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := released.Load(); n != 2 {
		t.Fatalf("released %d times after a second busy period, want 2", n)
	}
}
