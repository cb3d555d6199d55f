package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// runConcurrent holds N long calls (each with SDP, so the SBC anchors
// media) and reads the SBC's /metrics before and at every N.
func runConcurrent(ctx context.Context, e *env, rep *report) error {
	b, err := e.newCallBed("20000-59999", "uac_basic_mux.xml", "uas_basic_mux.xml")
	if err != nil {
		return err
	}
	if r, err := e.step(ctx, b, b.viaSBC, "t1", 10, time.Second, 100*time.Millisecond, true); err != nil || !r.sustained {
		return fmt.Errorf("warm-up call failed: %v %s", err, r.why)
	}
	time.Sleep(time.Second)
	base, err := scrape(b.metrics)
	if err != nil {
		return err
	}
	steps := slices.Clone(e.o.calls)
	slices.Sort(steps)
	nmax := steps[len(steps)-1]
	rate := e.o.holdRate
	setup := time.Duration(nmax/rate+1) * time.Second
	burstDur := 5 * time.Second
	if e.o.quick {
		burstDur = 2 * time.Second
	}
	pause := max(e.o.holdPause, setup+burstDur+15*time.Second)
	logf("  holding up to %d calls: %d calls/s, each %v long", nmax, rate, pause)
	long := &sippRun{scenario: scenario(e, b.uacScen), remote: fmt.Sprintf("%s:%d", loopback, b.viaSBC), transport: "t1",
		rate: rate, calls: nmax, pause: pause, limit: nmax + 100, timeout: setup + pause + 60*time.Second}
	done := make(chan uacResult, 1)
	go func() {
		r, _, err := e.runUAC(ctx, long, "sipp-uac")
		if err != nil {
			r.why = err.Error()
		}
		done <- r
	}()
	snaps := map[int]map[string]float64{}
	deadline := time.Now().Add(setup + 30*time.Second)
	next := 0
	for next < len(steps) && time.Now().Before(deadline) && ctx.Err() == nil {
		m, err := scrape(b.metrics)
		if err == nil && m["edge_sbc_calls_active"] >= float64(steps[next]) {
			time.Sleep(500 * time.Millisecond) // let the last answers settle
			if m2, err := scrape(b.metrics); err == nil {
				m = m2
			}
			snaps[steps[next]] = m
			logf("    %5.0f calls active: RSS %.1f MiB, %.0f goroutines, %.0f media ports", m["edge_sbc_calls_active"],
				m["process_resident_memory_bytes"]/(1<<20), m["go_goroutines"], m["edge_sbc_media_ports_in_use"])
			next++
			continue
		}
		select {
		case r := <-done:
			done <- r
			deadline = time.Now() // the UAC ended early
		case <-time.After(200 * time.Millisecond):
		}
	}
	// A short burst of short calls while the held calls are up.
	var burst uacResult
	if len(snaps) == len(steps) {
		burstRate := 2 * rate
		logf("  burst of short calls at %d calls/s while %d calls are held", burstRate, nmax)
		burst, err = e.step(ctx, b, b.viaSBC, "t1", burstRate, burstDur, 100*time.Millisecond, true)
		if err != nil {
			return err
		}
	}
	logf("  waiting for the held calls to end (%v after set-up)", pause)
	lr := <-done
	time.Sleep(2 * time.Second)
	after, _ := scrape(b.metrics)

	rss0, g0 := base["process_resident_memory_bytes"], base["go_goroutines"]
	for _, n := range steps {
		m, ok := snaps[n]
		if !ok {
			rep.add(Result{Section: 2, Name: fmt.Sprintf("RSS per call at %d calls", n), NA: true, Note: "not reached: " + lr.why})
			continue
		}
		active := m["edge_sbc_calls_active"]
		rep.add(Result{Section: 2, Name: fmt.Sprintf("RSS per call at %d calls", n), Value: (m["process_resident_memory_bytes"] - rss0) / active / 1024, Unit: "KiB/call",
			Note: fmt.Sprintf("%.0f calls active at the scrape; RSS %.1f -> %.1f MiB; heap in use %.1f MiB; %.0f media ports in use (%.1f per call)",
				active, rss0/(1<<20), m["process_resident_memory_bytes"]/(1<<20), m["go_memstats_heap_inuse_bytes"]/(1<<20),
				m["edge_sbc_media_ports_in_use"], m["edge_sbc_media_ports_in_use"]/active)})
		rep.add(Result{Section: 2, Name: fmt.Sprintf("goroutines per call at %d calls", n), Value: (m["go_goroutines"] - g0) / active, Unit: "/call",
			Note: fmt.Sprintf("%.0f -> %.0f goroutines; stacks %.1f MiB", g0, m["go_goroutines"], m["go_memstats_stack_inuse_bytes"]/(1<<20))})
	}
	if burst.calls > 0 {
		v := float64(burst.succ) / max(burst.elapsed.Seconds()-0.1, 0.001)
		rep.add(Result{Section: 2, Name: fmt.Sprintf("setup rate of a burst with %d calls held", nmax), Value: v, Unit: "calls/s",
			Note: fmt.Sprintf("offered %d calls/s for %.0fs: %d/%d successful, %d failed%s", burst.rate, burstDur.Seconds(), burst.succ, burst.calls, burst.fail, ifs(burst.sustained, "", "; "+burst.why))})
	}
	heldOK := lr.fail == 0 && lr.succ == nmax
	rep.add(Result{Section: 2, Name: "held calls completed", Value: float64(lr.succ), Unit: "calls",
		Note: fmt.Sprintf("of %d, %d failed (each held %v)%s", nmax, lr.fail, pause, ifs(heldOK, "", "; "+lr.why))})
	if after != nil {
		rep.note("after the held calls ended: %.0f calls active, %.0f media ports in use, %.0f goroutines (%.0f before), RSS %.1f MiB, heap in use %.1f MiB",
			after["edge_sbc_calls_active"], after["edge_sbc_media_ports_in_use"], after["go_goroutines"], g0, after["process_resident_memory_bytes"]/(1<<20), after["go_memstats_heap_inuse_bytes"]/(1<<20))
	}
	rep.note("section 2 uses test/sipp/uac_basic_mux.xml/uas_basic_mux.xml: one audio stream with a=rtcp-mux, so the SBC opens 2 sockets per call (one per leg); without rtcp-mux it needs 4, and 6000 calls then exceed a 20,000 descriptor limit")
	return nil
}
