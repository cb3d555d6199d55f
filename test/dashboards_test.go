package test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edge-sbc/edge-sbc/test/harness"
)

var (
	dashboardFile = filepath.Join("config", "grafana", "edge-sbc.json")
	rulesFile     = filepath.Join("config", "prometheus", "edge-sbc-rules.yml")
	rulesTestFile = filepath.Join("config", "prometheus", "edge-sbc-rules.test.yml")
	// A metric name in PromQL: the SBC's own and the Go/process collectors'.
	metricRef = regexp.MustCompile(`\b(?:edge_sbc|go|process)_[a-zA-Z0-9_]+\b`)
	// Series Prometheus makes itself when it scrapes (not exported by us).
	scrapeSeries = regexp.MustCompile(`\bup\{`)
)

// dashboardExprs returns every PromQL expression of the Grafana dashboard
// (targets of panels and of panels in rows) and the texts of its panels.
func dashboardExprs(t *testing.T) (exprs, texts []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []panel
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: no title, uid or panels", dashboardFile)
	}
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d used twice", dashboardFile, p.ID)
			}
			ids[p.ID] = true
			if p.Type != "row" && p.Type != "text" && len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("%s: panel %q has an empty query", dashboardFile, p.Title)
				}
				exprs = append(exprs, tg.Expr)
			}
			texts = append(texts, p.Title+" "+p.Description+" "+p.Options.Content)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return exprs, texts
}

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Targets     []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Options struct {
		Content string `json:"content"`
	} `json:"options"`
	Panels []panel `json:"panels"`
}

// ruleExprs parses the rules file and checks its structure: groups with a
// name, alerts with an expression, a duration, a severity and a summary.
func ruleExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), rulesFile))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var exprs []string
	alerts := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("%s: a group without name or rules", rulesFile)
		}
		for _, r := range g.Rules {
			if (r.Alert == "") == (r.Record == "") || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: rule %q%q: needs alert or record, and expr", rulesFile, r.Alert, r.Record)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: %s: for %q: %v", rulesFile, r.Alert, r.For, err)
				}
			}
			if r.Alert != "" {
				if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
					t.Errorf("%s: %s: severity %q", rulesFile, r.Alert, s)
				}
				if r.Annotations["summary"] == "" {
					t.Errorf("%s: %s: no summary", rulesFile, r.Alert)
				}
				alerts[r.Alert] = true
			}
			exprs = append(exprs, r.Expr)
		}
	}
	for _, a := range []string{"EdgeSBCDown", "EdgeSBCDraining", "EdgeSBCCertificateExpiresSoon", "EdgeSBCCallFailureRatioHigh", "EdgeSBCMediaJitterDegraded", "EdgeSBCMediaLossDegraded"} {
		if !alerts[a] {
			t.Errorf("%s: no alert %s", rulesFile, a)
		}
	}
	return exprs
}

// TestDashboardAndRulesParse checks both files on their own: structure,
// the panels the issue asks for, no panel on metrics the SBC does not
// export yet, and, with promtool (Debian's prometheus package), the rules
// file, its unit tests, and every dashboard query as PromQL.
func TestDashboardAndRulesParse(t *testing.T) {
	exprs, texts := dashboardExprs(t)
	all := strings.Join(exprs, "\n")
	for _, m := range []string{
		"edge_sbc_calls_active", "edge_sbc_calls_total", "edge_sbc_call_setup_seconds_bucket", "edge_sbc_sip_responses_total",
		`edge_sbc_tls_handshakes_total{instance=~"$instance",result="refused"}`, "edge_sbc_relay_packets_total", "edge_sbc_relay_drops_total",
		"edge_sbc_media_jitter_ms_bucket", "edge_sbc_media_loss_percent_bucket", "edge_sbc_certificate_expiry_timestamp_seconds",
	} {
		if !strings.Contains(all, m) {
			t.Errorf("%s: no panel queries %s", dashboardFile, m)
		}
	}
	for _, future := range []string{"edge_sbc_trunk_target_up", "edge_sbc_media_mos"} {
		if strings.Contains(all, future) {
			t.Errorf("%s: a panel queries %s, which the SBC does not export yet", dashboardFile, future)
		}
		if !strings.Contains(strings.Join(texts, "\n"), "requires `"+future+"`") {
			t.Errorf("%s: no note that %s is required for its panel", dashboardFile, future)
		}
	}
	rules := ruleExprs(t)

	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (apt-get install -y prometheus, as make test-deps does): YAML structure checked only")
	}
	root := harness.RepoRoot()
	promtool := func(args ...string) {
		t.Helper()
		cmd := exec.Command("promtool", args...)
		cmd.Dir = filepath.Join(root, "config", "prometheus")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	promtool("check", "rules", filepath.Base(rulesFile))
	promtool("test", "rules", filepath.Base(rulesTestFile))
	// Each dashboard query as a recording rule: promtool parses it.
	var rec strings.Builder
	rec.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	grafanaVars := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*")
	for i, e := range exprs {
		q, _ := json.Marshal(grafanaVars.Replace(e))
		fmt.Fprintf(&rec, "      - record: dashboard:query%d\n        expr: %s\n", i, q)
	}
	tmp := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(tmp, []byte(rec.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	promtool("check", "rules", tmp)
	t.Logf("%d dashboard queries and %d rules parsed by promtool", len(exprs), len(rules))
}

// exportedNames scrapes /metrics and returns every sample name (histograms
// as name_bucket, name_sum, name_count, as they are queried).
func exportedNames(t *testing.T, port int) map[string]bool {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		names[name] = true
	}
	return names
}

// TestDashboardMetricsExported starts the real binary with metrics on,
// places a call with media through the relay, and checks that every
// metric the dashboard and the alert rules name is one the SBC exports.
func TestDashboardMetricsExported(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	exprs, _ := dashboardExprs(t)
	exprs = append(exprs, ruleExprs(t)...)
	// One stream: the caller-facing RTP port is the range's first.
	b := newTraceBed(t, traceOpts{media: "47100-47103", uas: []string{"-rtp_echo"}})
	b.callWhile(t, 2*time.Second, func() { sendRTP(t, 47100, 30) })
	time.Sleep(300 * time.Millisecond)
	names := exportedNames(t, b.metrics)
	refs := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricRef.FindAllString(e, -1) {
			refs[m] = true
		}
		if scrapeSeries.MatchString(e) && !strings.Contains(e, `up{job="edge-sbc"}`) {
			t.Errorf("%q: Prometheus's up series must select job=\"edge-sbc\" (the rules assume that job name)", e)
		}
	}
	var missing []string
	for m := range refs {
		if !names[m] {
			missing = append(missing, m)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		var have []string
		for n := range names {
			if strings.HasPrefix(n, "edge_sbc_") {
				have = append(have, n)
			}
		}
		slices.Sort(have)
		t.Fatalf("named in %s or %s but not exported: %v\nexported: %v", dashboardFile, rulesFile, missing, have)
	}
	t.Logf("%d metrics referenced, all exported", len(refs))
}

// sendRTP sends n PCMU packets to the SBC's relay port on 127.0.0.1.
func sendRTP(t *testing.T, port, n int) {
	t.Helper()
	conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range n {
		pkt := make([]byte, 172)
		pkt[0], pkt[1] = 0x80, 0
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], uint32(i*160))
		binary.BigEndian.PutUint32(pkt[8:], 0x5eed0001)
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
