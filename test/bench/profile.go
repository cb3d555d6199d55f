package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// profileStep takes edge-sbc's CPU profile during the call-rate step at
// -profile-rate (the step's length less a second) and its allocation
// profile at the end, into -profile. The returned function waits for the
// CPU profile and takes the allocation profile; it does nothing when no
// profile is asked for this step.
func (e *env) profileStep(ctx context.Context, s *sut, rate int, dur time.Duration) func() {
	if e.o.profileDir == "" || s.metrics == 0 || rate != e.o.profileRate {
		return func() {}
	}
	if err := os.MkdirAll(e.o.profileDir, 0o755); err != nil {
		logf("    profile: %v", err)
		return func() {}
	}
	secs := max(1, int((dur - time.Second).Seconds()))
	done := make(chan struct{})
	cpu := filepath.Join(e.o.profileDir, fmt.Sprintf("edge-sbc-cpu-%d.pprof", rate))
	go func() {
		defer close(done)
		if err := fetchProfile(ctx, s.metrics, fmt.Sprintf("profile?seconds=%d", secs), cpu, time.Duration(secs+15)*time.Second); err != nil {
			logf("    profile: %v", err)
		}
	}()
	return func() {
		<-done
		allocs := filepath.Join(e.o.profileDir, fmt.Sprintf("edge-sbc-allocs-%d.pprof", rate))
		if err := fetchProfile(ctx, s.metrics, "allocs", allocs, 15*time.Second); err != nil {
			logf("    profile: %v", err)
			return
		}
		logf("    profiles of the %d cps step: %s, %s (go tool pprof -top %s %s)", rate, cpu, allocs, e.bin, cpu)
	}
}

func fetchProfile(ctx context.Context, port int, what, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/%s", port, what), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("pprof %s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s", what, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("pprof %s: %w", what, err)
	}
	return f.Close()
}
