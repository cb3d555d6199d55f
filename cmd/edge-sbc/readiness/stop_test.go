package readiness

import (
	"context"
	"errors"
	"testing"
	"time"
)

func runWithStop(t *testing.T, f *fixture, stop StopTimeoutFunc) []Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return Run(ctx, f.config(t, spec{}), Options{Timeout: testTimeout, StopTimeout: stop})
}

func fixedStop(d time.Duration, err error) StopTimeoutFunc {
	return func(context.Context) (time.Duration, string, error) { return d, "systemctl show edge-sbc.service", err }
}

// TestStopTimeoutCheck: a unit whose TimeoutStopSec (e.g. lowered by a
// drop-in) leaves no 10s after the 30s default drain warns; the shipped
// 90s, infinity, and no unit at all pass.
func TestStopTimeoutCheck(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name    string
		stop    StopTimeoutFunc
		verdict string
		want    []string
	}{
		{"drop-in lowered it", fixedStop(30*time.Second, nil), VerdictWarn, []string{"TimeoutStopSec=30s", "cut short by SIGKILL", "below 20s"}},
		{"exactly drain plus margin", fixedStop(40*time.Second, nil), VerdictWarn, []string{"TimeoutStopSec=40s"}},
		{"shipped unit", fixedStop(90*time.Second, nil), VerdictOK, []string{"fits TimeoutStopSec=1m30s"}},
		{"infinity", fixedStop(-1, nil), VerdictOK, []string{"infinity"}},
		{"no systemd", fixedStop(0, errors.New("systemctl: System has not been booted with systemd")), VerdictOK, []string{"shipped", "could not be read: systemctl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := runWithStop(t, f, tc.stop)
			expect(t, rs, "local.stop_timeout", LevelShould, tc.verdict, tc.want...)
			if Failed(rs) {
				t.Errorf("a should check failed the run:\n%s", dump(rs))
			}
		})
	}
}

func TestParseTimespan(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1min 30s", 90 * time.Second, true},
		{"90s", 90 * time.Second, true},
		{"2min 3s 500ms", 123500 * time.Millisecond, true},
		{"1h", time.Hour, true},
		{"infinity", -1, true},
		{"", 0, false},
		{"90", 0, false},
		{"5parsecs", 0, false},
	} {
		got, err := parseTimespan(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseTimespan(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
