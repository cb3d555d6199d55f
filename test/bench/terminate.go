package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// runTerminate builds and runs test/bench/srtpterm (section 4). When the
// media package has no SRTP terminate mode, or it does not build, the
// figures are reported as n/a.
func runTerminate(ctx context.Context, e *env, rep *report) error {
	na := func(why string) error {
		logf("  n/a: %s", why)
		rep.add(Result{Section: 4, Name: "SRTP terminate relay", NA: true, Note: "n/a (terminate mode not available): " + why})
		return nil
	}
	bin := filepath.Join(e.dir, "srtpterm")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./test/bench/srtpterm")
	cmd.Dir = e.root
	if out, err := cmd.CombinedOutput(); err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if strings.HasPrefix(first, "#") {
			first = strings.TrimSpace(strings.SplitN(string(out), "\n", 3)[1])
		}
		return na("test/bench/srtpterm does not build against ./media: " + first)
	}
	var ss []string
	for _, n := range e.o.streams {
		ss = append(ss, strconv.Itoa(n))
	}
	var stdout bytes.Buffer
	run := exec.CommandContext(ctx, bin, "-streams", strings.Join(ss, ","), "-dur", e.o.relayDur.String())
	run.Stdout = &stdout
	run.Stderr = logWriter{}
	if err := run.Run(); err != nil {
		return fmt.Errorf("srtpterm: %v", err)
	}
	var rs []Result
	if err := json.Unmarshal(stdout.Bytes(), &rs); err != nil {
		return fmt.Errorf("srtpterm output: %v: %q", err, stdout.String())
	}
	for _, r := range rs {
		rep.add(r)
	}
	return nil
}

// logWriter forwards a child's stderr to our log.
type logWriter struct{}

func (logWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		logf("%s", l)
	}
	return len(p), nil
}

func numCores() int { return runtime.NumCPU() }
