package readiness

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edge-sbc/edge-sbc/config"
)

// metricsFixture is what a running SBC exports: trunk a with one target
// up and one down, trunk b monitored but not pinged yet.
const metricsFixture = `# HELP edge_sbc_trunk_target_up 1 while a monitored trunk target answers OPTIONS pings (trunks[].health).
# TYPE edge_sbc_trunk_target_up gauge
edge_sbc_trunk_target_up{target="127.0.0.1:5061",trunk="a"} 1
edge_sbc_trunk_target_up{target="127.0.0.2:5061",trunk="a"} 0
# HELP edge_sbc_trunk_target_ping_seconds Round-trip time of the last answered OPTIONS ping of a monitored trunk target.
# TYPE edge_sbc_trunk_target_ping_seconds gauge
edge_sbc_trunk_target_ping_seconds{target="127.0.0.1:5061",trunk="a"} 0.0042
edge_sbc_trunk_target_ping_seconds{target="127.0.0.2:5061",trunk="a"} 0.5
# HELP edge_sbc_trunk_ping_seconds Round-trip time of answered OPTIONS pings, by trunk.
# TYPE edge_sbc_trunk_ping_seconds histogram
edge_sbc_trunk_ping_seconds_bucket{trunk="a",le="+Inf"} 4
edge_sbc_trunk_ping_seconds_sum{trunk="a"} 0.02
edge_sbc_trunk_ping_seconds_count{trunk="a"} 4
`

func healthEnv(t *testing.T, listen string, trunks ...config.Trunk) *env {
	t.Helper()
	cfg := &config.Config{Trunks: trunks}
	cfg.Metrics.Listen = listen
	return &env{cfg: cfg, opts: Options{Timeout: testTimeout}.withDefaults()}
}

func monitoredTrunk(name string) config.Trunk {
	tr := config.Trunk{Name: name, URI: "sips:" + name + ".test"}
	tr.Health.Interval, tr.Health.DownAfter = time.Second, 3
	return tr
}

func TestCheckHealth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(metricsFixture))
	}))
	defer srv.Close()
	listen := strings.TrimPrefix(srv.URL, "http://")

	rs := checkHealth(context.Background(), healthEnv(t, listen, monitoredTrunk("a"), monitoredTrunk("b"), config.Trunk{Name: "c", URI: "sips:c.test"}))
	want := []struct{ id, verdict, evidence string }{
		{"trunk.health/a/127.0.0.1:5061", VerdictOK, "up: last answered ping took 4.2ms; trunk a: 4 answered ping(s), mean 5ms (pinged every 1s"},
		{"trunk.health/a/127.0.0.2:5061", VerdictWarn, "down: OPTIONS pings unanswered (down_after 3 in a row) or refused with 503; new calls skip it; last answered ping took 500ms"},
		{"trunk.health/b", VerdictWarn, "has no ping result for this trunk yet"},
	}
	if len(rs) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(rs), len(want), rs)
	}
	for i, w := range want {
		r := rs[i]
		if r.ID != w.id || r.Verdict != w.verdict || r.Level != LevelShould || !strings.Contains(r.Evidence, w.evidence) {
			t.Errorf("result %d: %+v\nwant %s %s containing %q", i, r, w.id, w.verdict, w.evidence)
		}
	}

	for _, tc := range []struct {
		name, listen string
		trunks       []config.Trunk
		verdict      string
		evidence     string
	}{
		{"monitoring off", listen, []config.Trunk{{Name: "c", URI: "sips:c.test"}}, VerdictOK, "monitoring is off"},
		{"no metrics listener", "", []config.Trunk{monitoredTrunk("a")}, VerdictWarn, "metrics.listen is not set"},
		{"not running", fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t)), []config.Trunk{monitoredTrunk("a")}, VerdictWarn, "edge-sbc is not running"},
	} {
		rs := checkHealth(context.Background(), healthEnv(t, tc.listen, tc.trunks...))
		if len(rs) != 1 || rs[0].ID != "trunk.health" || rs[0].Verdict != tc.verdict || !strings.Contains(rs[0].Evidence, tc.evidence) {
			t.Errorf("%s: %+v, want one trunk.health %s containing %q", tc.name, rs, tc.verdict, tc.evidence)
		}
	}
}

func TestMetricsAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:9100":     "127.0.0.1:9100",
		"[::]:9100":        "[::1]:9100",
		"192.0.2.1:9100":   "192.0.2.1:9100",
		"localhost:9100":   "localhost:9100",
		"127.0.0.1:9100":   "127.0.0.1:9100",
		"[2001:db8::]:910": "[2001:db8::]:910",
	} {
		if got, err := metricsAddr(in); err != nil || got != want {
			t.Errorf("metricsAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := metricsAddr("no-port"); err == nil {
		t.Error("metricsAddr without a port: no error")
	}
}
