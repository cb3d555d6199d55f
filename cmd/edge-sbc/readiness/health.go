package readiness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edge-sbc/edge-sbc/config"
)

// The live health of the trunk targets is known only to the running
// service (its OPTIONS monitor, trunks[].health), and check is another
// process: it reads the service's metrics listener, the series the monitor
// exports.
const (
	metricTargetUp   = "edge_sbc_trunk_target_up"           // {trunk,target} 1 up, 0 down
	metricTargetPing = "edge_sbc_trunk_target_ping_seconds" // {trunk,target} last answered ping
	metricTrunkPing  = "edge_sbc_trunk_ping_seconds"        // {trunk} histogram of answered pings
	// maxMetricsBody bounds the /metrics response read.
	maxMetricsBody = 16 << 20
)

var checkTrunkHealth = check{
	id:          "trunk.health",
	requirement: "the running edge-sbc's OPTIONS health pings (trunks[].health) find the trunk's targets up",
	level:       LevelShould,
}

// checkHealth reports, for each trunk with health.interval set, each
// target as the running service's monitor sees it (up or down, the round
// trip of its last answered ping), read from GET /metrics on
// metrics.listen. It says so when monitoring is off, when there is no
// metrics listener, and when the service does not answer there.
func checkHealth(ctx context.Context, e *env) []Result {
	var monitored []config.Trunk
	for _, t := range e.cfg.Trunks {
		if t.URI != "" && t.Health.Interval > 0 {
			monitored = append(monitored, t)
		}
	}
	if len(monitored) == 0 {
		return []Result{checkTrunkHealth.ok("monitoring is off: no trunk sets health.interval (the trunk.options checks are this run's own pings)")}
	}
	names := make([]string, len(monitored))
	for i, t := range monitored {
		names[i] = t.Name
	}
	if e.cfg.Metrics.Listen == "" {
		return []Result{checkTrunkHealth.warn("trunks %s are monitored, but metrics.listen is not set: the running service's view of their targets cannot be read",
			strings.Join(names, ", "))}
	}
	addr, err := metricsAddr(e.cfg.Metrics.Listen)
	if err != nil {
		return []Result{checkTrunkHealth.warn("%v", err)}
	}
	fams, err := scrapeMetrics(ctx, addr, e.opts.Timeout)
	if err != nil {
		running := ""
		if e.sbcRunning {
			running = " (yet a listener shows edge-sbc running: is metrics.listen as it started with?)"
		}
		return []Result{checkTrunkHealth.warn("edge-sbc is not running, so there is no live health of trunks %s: %v%s",
			strings.Join(names, ", "), err, running)}
	}
	var out []Result
	for _, t := range monitored {
		out = append(out, trunkHealth(t, fams, addr)...)
	}
	return out
}

// trunkHealth is one Result per target of trunk t in the scraped families.
func trunkHealth(t config.Trunk, fams map[string]*dto.MetricFamily, addr string) []Result {
	up := gaugesOf(fams[metricTargetUp], t.Name)
	if len(up) == 0 {
		return []Result{checkTrunkHealth.on(t.Name).warn(
			"the running service at %s has no ping result for this trunk yet (just started, or running another configuration)", addr)}
	}
	ping := gaugesOf(fams[metricTargetPing], t.Name)
	mean := ""
	if n, sum := trunkPings(fams[metricTrunkPing], t.Name); n > 0 {
		mean = fmt.Sprintf("; trunk %s: %d answered ping(s), mean %s", t.Name, n, seconds(sum/float64(n)))
	}
	targets := make([]string, 0, len(up))
	live := 0
	for target, v := range up {
		targets = append(targets, target)
		if v == 1 {
			live++
		}
	}
	sort.Strings(targets)
	var out []Result
	for _, target := range targets {
		c := checkTrunkHealth.on(t.Name, target)
		last := "no ping answered yet"
		if rtt, ok := ping[target]; ok {
			last = "last answered ping took " + seconds(rtt)
		}
		if up[target] == 1 {
			out = append(out, c.ok("up: %s%s (pinged every %s; from http://%s/metrics)", last, mean, t.Health.Interval, addr))
			continue
		}
		skipped := "new calls skip it"
		if live == 0 {
			skipped = "every target of the trunk is down: its calls get 503"
		}
		out = append(out, c.miss("down: OPTIONS pings unanswered (down_after %d in a row) or refused with 503; %s; %s (from http://%s/metrics)",
			t.Health.DownAfter, skipped, last, addr))
	}
	return out
}

// gaugesOf returns the gauge values of family f for trunk, by target.
func gaugesOf(f *dto.MetricFamily, trunk string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		if label(m, "trunk") == trunk {
			out[label(m, "target")] = m.GetGauge().GetValue()
		}
	}
	return out
}

// trunkPings returns the sample count and sum of trunk's ping histogram.
func trunkPings(f *dto.MetricFamily, trunk string) (uint64, float64) {
	for _, m := range f.GetMetric() {
		if label(m, "trunk") == trunk {
			return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
		}
	}
	return 0, 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func seconds(v float64) string {
	return time.Duration(v * float64(time.Second)).Round(time.Microsecond).String()
}

// metricsAddr is host:port to reach metrics.listen (an unspecified
// address is reached on loopback).
func metricsAddr(listen string) (string, error) {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		if _, _, err2 := net.SplitHostPort(listen); err2 != nil {
			return "", fmt.Errorf("metrics.listen %q: %w", listen, err)
		}
		return listen, nil
	}
	if ap.Addr().IsUnspecified() {
		lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if ap.Addr().Is6() {
			lo = netip.IPv6Loopback()
		}
		ap = netip.AddrPortFrom(lo, ap.Port())
	}
	return ap.String(), nil
}

// scrapeMetrics GETs http://addr/metrics (text exposition) and parses it.
func scrapeMetrics(ctx context.Context, addr string, timeout time.Duration) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + addr + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	c := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer c.CloseIdleConnections()
	res, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err) // err names the URL
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(res.Body, maxMetricsBody))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return fams, nil
}
