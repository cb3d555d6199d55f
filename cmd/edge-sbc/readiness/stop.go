package readiness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/edge-sbc/edge-sbc/config"
)

var checkStopTimeout = check{
	id:          "local.stop_timeout",
	requirement: "calls still up at shutdown are ended with BYE and get their CDR before systemd kills edge-sbc: shutdown.drain_timeout plus 10s below the unit's TimeoutStopSec",
	level:       LevelShould,
}

// errNoUnit: systemd has no edge-sbc.service loaded here.
var errNoUnit = errors.New("edge-sbc.service is not installed")

// StopTimeoutFunc returns TimeoutStopSec of the installed edge-sbc unit (a
// negative duration for "infinity") and where it was read, or an error
// when it cannot be known.
type StopTimeoutFunc func(ctx context.Context) (time.Duration, string, error)

// SystemdStopTimeout asks systemctl for the installed unit's stop timeout
// (drop-ins included).
func SystemdStopTimeout(ctx context.Context) (time.Duration, string, error) {
	const src = "systemctl show edge-sbc.service"
	out, err := exec.CommandContext(ctx, "systemctl", "show", "edge-sbc.service", "--property=LoadState,TimeoutStopUSec").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(bytes.TrimSpace(ee.Stderr)) > 0 {
			return 0, src, fmt.Errorf("systemctl: %s", firstLine(string(ee.Stderr)))
		}
		return 0, src, fmt.Errorf("systemctl: %w", err)
	}
	var loaded, value string
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "LoadState":
			loaded = v
		case "TimeoutStopUSec":
			value = v
		}
	}
	if loaded != "loaded" {
		return 0, src, errNoUnit
	}
	d, err := parseTimespan(value)
	if err != nil {
		return 0, src, err
	}
	return d, src, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// parseTimespan parses systemd's time span output ("1min 30s", "90s",
// "500ms", "infinity"; units us, ms, s, min, h, d, w); infinity is
// returned as -1.
func parseTimespan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "infinity" {
		return -1, nil
	}
	units := []struct {
		name string
		d    time.Duration
	}{
		{"min", time.Minute}, {"ms", time.Millisecond}, {"us", time.Microsecond},
		{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}, {"h", time.Hour}, {"s", time.Second},
	}
	var total time.Duration
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return 0, fmt.Errorf("time span %q: empty", s)
	}
	for _, f := range fields {
		i := strings.IndexFunc(f, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if i <= 0 {
			return 0, fmt.Errorf("time span %q: %q has no number and unit", s, f)
		}
		n, err := strconv.ParseFloat(f[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("time span %q: %w", s, err)
		}
		unit := time.Duration(0)
		for _, u := range units {
			if f[i:] == u.name {
				unit = u.d
				break
			}
		}
		if unit == 0 {
			return 0, fmt.Errorf("time span %q: unknown unit %q", s, f[i:])
		}
		total += time.Duration(n * float64(unit))
	}
	return total, nil
}

// checkStop compares the drain with the stop timeout of the installed unit,
// or, when there is none here, with the shipped unit's (which validation
// already enforces).
func checkStop(ctx context.Context, e *env) Result {
	c := checkStopTimeout
	drain := e.cfg.Shutdown.DrainTimeout
	sctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()
	stop, src, err := e.opts.StopTimeout(sctx)
	if err != nil {
		return c.ok("shutdown.drain_timeout %s + %s for BYEs and CDRs is below TimeoutStopSec=%s of the shipped config/systemd/edge-sbc.service (the installed unit could not be read: %v)",
			drain, config.StopMargin, config.SystemdStopTimeout, err)
	}
	if stop < 0 {
		return c.ok("TimeoutStopSec=infinity (%s): systemd never kills edge-sbc during the drain of %s", src, drain)
	}
	if drain+config.StopMargin >= stop {
		return c.miss("the installed unit has TimeoutStopSec=%s (%s): a drain of %s plus %s for BYEs and final CDRs is cut short by SIGKILL; set shutdown.drain_timeout below %s or raise TimeoutStopSec",
			stop, src, drain, config.StopMargin, max(stop-config.StopMargin, 0))
	}
	return c.ok("shutdown.drain_timeout %s + %s for BYEs and CDRs fits TimeoutStopSec=%s (%s)", drain, config.StopMargin, stop, src)
}
