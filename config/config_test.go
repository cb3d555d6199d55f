package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// files makes the three TLS files validation looks for.
func files(t *testing.T) (cert, key, ca string) {
	t.Helper()
	d := t.TempDir()
	for _, n := range []string{"c.pem", "k.pem", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(d, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(d, "c.pem"), filepath.Join(d, "k.pem"), filepath.Join(d, "ca.pem")
}

func base(t *testing.T) string {
	c, k, ca := files(t)
	return `
node: { fqdn: sbc.example.com, public_ipv4: 203.0.113.10 }
tls: { cert: ` + c + `, key: ` + k + `, ca: ` + ca + ` }
listen:
  - { addr: "127.0.0.1:5061", client_auth: optional, unauthenticated_trunk: public }
  - { addr: "127.0.0.1:5062", client_auth: required }
trunks:
  - { name: webex, uri: "sips:example.webex.com", identity: callservice.ciscospark.com,
      transforms: [{ field: ruri, match: "^(.*)$", replace: "$1" }], headers: [{ op: remove, name: X-Internal }] }
  - { name: pbx, uri: "sips:10.0.0.5:5061" }
  - { name: public }
routes:
  - { from: webex, to: pbx, transforms: [{ field: to, match: "^(.*)$", replace: "$1" }], headers: [{ op: add, name: X-Via-SBC, value: "1" }] }
  - { from: pbx, to: webex }
  - { from: public, to: pbx }
`
}

func TestDefaultsApplied(t *testing.T) {
	c, err := Parse([]byte(base(t)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Media.PortRange != "36000-59999" || c.Media.DSCP.Audio != 46 || c.Media.DSCP.Video != 34 || c.Media.DSCP.Signalling != 24 ||
		c.Media.Learning != "heuristic" {
		t.Errorf("media defaults: %+v", c.Media)
	}
	if c.TLS.MinVersion != "1.2" || c.Listen[0].ClientAuth != "optional" || c.SIP.ProvisionalTimeout != 2*time.Second {
		t.Errorf("defaults: %+v %+v", c.TLS, c.SIP)
	}
	if got := c.Trunk("pbx").Identity; got != "10.0.0.5" {
		t.Errorf("identity default = %q, want the uri host", got)
	}
	if len(c.Node.Domains) != 1 || c.Node.Domains[0] != "sbc.example.com" {
		t.Errorf("domains default = %v", c.Node.Domains)
	}
}

func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name, from, to, key, reason string
	}{
		{"unknown key", "node: {", "node: { colour: blue, ", "", "field colour not found"},
		{"no fqdn", "fqdn: sbc.example.com", "fqdn: \"\"", "node.fqdn", "required"},
		{"bad public ip", "203.0.113.10", "2001:db8::1", "node.public_ipv4", "not an IPv4"},
		{"sip uri", "sips:example.webex.com", "sip:example.webex.com", "trunks[0].uri", "only sips:"},
		{"udp transport", "sips:10.0.0.5:5061", "sips:10.0.0.5:5061;transport=udp", "trunks[1].uri", "not TLS"},
		{"bad client auth", "client_auth: required", "client_auth: maybe", "listen[1].client_auth", "none, optional or required"},
		{"bad listen addr", "127.0.0.1:5062", "localhost:5062", "listen[1].addr", "must be an IP"},
		{"route to unknown trunk", "{ from: pbx, to: webex }", "{ from: pbx, to: nowhere }", "routes[1].to", "no trunk named"},
		{"route loop", "{ from: pbx, to: webex }", "{ from: pbx, to: pbx }", "routes[1]", "loop"},
		{"duplicate trunk", "name: public", "name: pbx", "trunks[2].name", "used twice"},
		{"old TLS", "ca.pem }", "ca.pem, min_version: \"1.0\" }", "tls.min_version", "older TLS is refused"},
		{"port range", "routes:", "media: { port_range: \"5000-100\" }\nroutes:", "media.port_range", "min < max"},
		{"dscp", "routes:", "media: { dscp: { audio: 99 } }\nroutes:", "media.dscp.audio", "not a DSCP"},
		{"session expires", "routes:", "sip: { session_expires: 30s }\nroutes:", "sip.session_expires", "RFC 4028"},
		{"unauth to foreign domain", "{ from: public, to: pbx }", "{ from: public, to: pbx, ruri_domain: other.org }", "routes[2].ruri_domain", "own domains"},
		{"unauth on required listener", "client_auth: required }", "client_auth: required, unauthenticated_trunk: public }", "listen[1].unauthenticated_trunk", "no unauthenticated peers"},
		{"log level", "routes:", "log: { level: loud }\nroutes:", "log.level", "must be"},
		{"media address needed", "public_ipv4: 203.0.113.10", "public_ipv4: \"\"", "trunks[0].media_address", "required when media.bind"},
		{"learning", "routes:", "media: { learning: latch }\nroutes:", "media.learning", "heuristic, strict or off"},
		{"learning off and strict", "routes:", "media: { learning: off, strict_source: true }\nroutes:", "media.learning", "contradicts media.strict_source"},
		{"dns server", "routes:", "dns: { servers: [\"8.8.8.8\"] }\nroutes:", "dns.servers[0]", "not ip:port"},
		{"bad transform regexp", `match: "^(.*)$", replace: "$1" }], headers: [{ op: remove`, `match: "^(.*$", replace: "$1" }], headers: [{ op: remove`, "trunks[0].transforms[0].match", "not a regular expression"},
		{"transform field", `transforms: [{ field: to,`, `transforms: [{ field: via,`, "routes[0].transforms[0].field", "ruri, from, to or pai"},
		{"core header op", `{ op: add, name: X-Via-SBC, value: "1" }`, `{ op: add, name: Via, value: "1" }`, "routes[0].headers[0].name", "built by the B2BUA"},
		{"header op", `{ op: remove, name: X-Internal }`, `{ op: drop, name: X-Internal }`, "trunks[0].headers[0].op", "add, set or remove"},
		{"refer", `{ name: pbx, uri: "sips:10.0.0.5:5061" }`, `{ name: pbx, uri: "sips:10.0.0.5:5061", refer: maybe }`, "trunks[1].refer", "local or refuse"},
		{"health timeout", `{ name: pbx, uri: "sips:10.0.0.5:5061" }`, `{ name: pbx, uri: "sips:10.0.0.5:5061", health: { interval: 2s, timeout: 5s } }`, "trunks[1].health.timeout", "longer than the interval"},
		{"health without uri", `{ name: public }`, `{ name: public, health: { interval: 10s } }`, "trunks[2].health.interval", "no uri"},
		{"sip scheme needs identity", `{ name: public }`, `{ name: public, accept_sip_scheme: true }`, "trunks[2].accept_sip_scheme", "identified by its certificate"},
		{"redirect", `{ name: public }`, `{ name: public, redirect: maybe }`, "trunks[2].redirect", "follow, relay or refuse"},
		{"trusted source", "routes:", "limits: { trusted_sources: [\"10.0.0.0/33\"] }\nroutes:", "limits.trusted_sources[0]", "not a CIDR"},
		{"body allow list", "routes:", "sip: { body_allow_list: [\"multipart/mixed\"] }\nroutes:", "sip.body_allow_list[0]", "nested multipart"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := base(t)
			if !strings.Contains(src, tc.from) {
				t.Fatalf("test bug: %q not in base", tc.from)
			}
			src = strings.Replace(src, tc.from, tc.to, 1)
			_, err := Parse([]byte(src))
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.key != "" {
				var ke *KeyError
				if !errors.As(err, &ke) || ke.Key != tc.key {
					t.Fatalf("error %q does not name key %q", err, tc.key)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("not ErrInvalid: %v", err)
				}
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q lacks %q", err, tc.reason)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	src := strings.Replace(base(t), "c.pem", "nope.pem", 1)
	_, err := Parse([]byte(src))
	if err == nil || !strings.Contains(err.Error(), "tls.cert") {
		t.Fatalf("err = %v", err)
	}
}

func TestEmptyAndSyntax(t *testing.T) {
	if _, err := Parse(nil); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
	if _, err := Parse([]byte("node: [")); !errors.Is(err, ErrSyntax) {
		t.Errorf("syntax: %v", err)
	}
}

// The documented example must load once its files exist.
func TestExampleLoads(t *testing.T) {
	b, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, k, ca := files(t)
	src := strings.NewReplacer("/etc/edge-sbc/sbc.pem", c, "/etc/edge-sbc/sbc.key", k, "/etc/edge-sbc/peers-ca.pem", ca).Replace(string(b))
	cfg, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("example.yaml: %v", err)
	}
	if cfg.Trunk("webex").Identity != "callservice.ciscospark.com" {
		t.Errorf("webex identity = %q", cfg.Trunk("webex").Identity)
	}
}

func TestEmbeddedDefaultParses(t *testing.T) {
	d := t.TempDir()
	for _, n := range []string{DevSBCName + ".pem", DevSBCName + ".key", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(d, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Default(d)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen[0].Addr != "127.0.0.1:5061" || c.Listen[1].ClientAuth != "required" {
		t.Errorf("listeners: %+v", c.Listen)
	}
}
