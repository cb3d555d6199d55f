package config

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// withSections appends YAML sections to the base config (which sets none
// of sip, media, limits, shutdown, dns, cdr).
func withSections(t *testing.T, sections string) string {
	return base(t) + sections
}

// TestExplicitZeroKept: where 0 has a meaning, an explicit 0 stays 0.
func TestExplicitZeroKept(t *testing.T) {
	cases := []struct {
		name, yaml string
		got        func(*Config) any
		want       any
	}{
		{"keepalive off", "sip: { keepalive_interval: 0s }\n", func(c *Config) any { return c.SIP.KeepaliveInterval }, time.Duration(0)},
		{"media timeout off", "media: { timeout: 0s }\n", func(c *Config) any { return c.Media.Timeout }, time.Duration(0)},
		{"dscp best effort", "media: { dscp: { audio: 0, video: 0, signalling: 0 } }\n",
			func(c *Config) any { return c.Media.DSCP }, DSCP{}},
		{"dscp audio only", "media: { dscp: { audio: 0 } }\n",
			func(c *Config) any { return c.Media.DSCP }, DSCP{Audio: 0, Video: DefaultDSCPVideo, Signalling: DefaultDSCPSignalling}},
		{"no connection cap", "limits: { max_connections_per_ip: 0 }\n", func(c *Config) any { return c.Limits.MaxConnectionsPerIP }, 0},
		{"no handshake rate cap", "limits: { handshakes_per_ip: 0 }\n", func(c *Config) any { return c.Limits.HandshakesPerIP }, 0.0},
		{"idle connections kept", "limits: { idle_timeout: 0s }\n", func(c *Config) any { return c.Limits.IdleTimeout }, time.Duration(0)},
		{"no drain", "shutdown: { drain_timeout: 0s }\n", func(c *Config) any { return c.Shutdown.DrainTimeout }, time.Duration(0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := withSections(t, tc.yaml)
			c, err := Parse([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.got(c); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("zero through an alias", func(t *testing.T) {
		src := withSections(t, "limits: { idle_timeout: &zero 0s }\nsip: { keepalive_interval: *zero }\n")
		c, err := Parse([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if c.SIP.KeepaliveInterval != 0 {
			t.Fatalf("keepalive_interval = %s, want 0", c.SIP.KeepaliveInterval)
		}
	})
}

// TestAbsentOrNullDefaulted: a key that is absent, null, or whose section
// is absent gets its default.
func TestAbsentOrNullDefaulted(t *testing.T) {
	for _, sections := range []string{
		"",
		"sip: {}\nmedia: { dscp: {} }\nlimits: {}\nshutdown: {}\n",
		"sip: { keepalive_interval: ~ }\nmedia: { timeout: null, dscp: { audio: ~ } }\nlimits: { idle_timeout: }\nshutdown: { drain_timeout: ~ }\n",
	} {
		c, err := Parse([]byte(withSections(t, sections)))
		if err != nil {
			t.Fatalf("%q: %v", sections, err)
		}
		for _, f := range []struct {
			key       string
			got, want any
		}{
			{"sip.keepalive_interval", c.SIP.KeepaliveInterval, DefaultKeepaliveInterval},
			{"media.timeout", c.Media.Timeout, DefaultMediaTimeout},
			{"media.dscp", c.Media.DSCP, DSCP{DefaultDSCPAudio, DefaultDSCPVideo, DefaultDSCPSignalling}},
			{"limits.max_connections_per_ip", c.Limits.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP},
			{"limits.handshakes_per_ip", c.Limits.HandshakesPerIP, float64(DefaultHandshakesPerIP)},
			{"limits.idle_timeout", c.Limits.IdleTimeout, DefaultIdleTimeout},
			{"shutdown.drain_timeout", c.Shutdown.DrainTimeout, DefaultDrainTimeout},
			{"dns.timeout", c.DNS.Timeout, DefaultDNSTimeout},
			{"tls.handshake_timeout", c.TLS.HandshakeTimeout, DefaultHandshakeTimeout},
			{"cdr.sync_interval", c.CDR.SyncInterval, DefaultCDRSyncInterval},
		} {
			if f.got != f.want {
				t.Errorf("%q: %s = %v, want the default %v", sections, f.key, f.got, f.want)
			}
		}
	}
}

// TestNonsensicalZeroRefused: where 0 means nothing, an explicit 0 is
// refused and the error names the key (it used to become the default).
func TestNonsensicalZeroRefused(t *testing.T) {
	for _, tc := range []struct{ yaml, key, reason string }{
		{"tls_handshake", "tls.handshake_timeout", "omit the key for the default 10s"},
		{"dns: { timeout: 0s }\n", "dns.timeout", "omit the key for the default 2s"},
		{"dns: { attempts: 0 }\n", "dns.attempts", "at least 1"},
		{"dns: { min_ttl: 0s }\n", "dns.min_ttl", "0 is not allowed"},
		{"dns: { max_ttl: 0s }\n", "dns.max_ttl", "0 is not allowed"},
		{"dns: { negative_ttl: 0s }\n", "dns.negative_ttl", "0 is not allowed"},
		{"dns: { down_time: 0s }\n", "dns.down_time", "0 is not allowed"},
		{"sip: { provisional_timeout: 0s }\n", "sip.provisional_timeout", "0 is not allowed"},
		{"sip: { answer_timeout: 0s }\n", "sip.answer_timeout", "0 is not allowed"},
		{"sip: { session_expires: 0s }\n", "sip.session_expires", "RFC 4028"},
		{"sip: { max_message_size: 0 }\n", "sip.max_message_size", "too small"},
		{"cdr: { sync_interval: 0s }\n", "cdr.sync_interval", "0 is not allowed"},
		{"sip: { keepalive_interval: -1s }\n", "sip.keepalive_interval", "or 0 for no keepalive"},
		{"media: { timeout: -1s }\n", "media.timeout", "or 0 for no dead-media timeout"},
		{"media: { dscp: { video: 64 } }\n", "media.dscp.video", "not a DSCP"},
		{"limits: { max_connections_per_ip: -1 }\n", "limits.max_connections_per_ip", "or 0 for no limit"},
		{"limits: { idle_timeout: -1s }\n", "limits.idle_timeout", "must be positive"},
		{"shutdown: { drain_timeout: -1s }\n", "shutdown.drain_timeout", "must be positive"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			src := withSections(t, tc.yaml)
			if tc.yaml == "tls_handshake" {
				src = strings.Replace(base(t), "ca.pem }", "ca.pem, handshake_timeout: 0s }", 1)
			}
			_, err := Parse([]byte(src))
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tc.key {
				t.Fatalf("error %v does not name %s", err, tc.key)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q: want ErrInvalid mentioning %q", err, tc.reason)
			}
		})
	}
}

// TestDrainWithinSystemdStopTimeout: a drain that systemd would cut short
// with SIGKILL (before the BYEs and final CDRs) is refused.
func TestDrainWithinSystemdStopTimeout(t *testing.T) {
	for _, tc := range []struct {
		drain string
		ok    bool
	}{
		{"0s", true}, {"30s", true}, {"79s", true}, {"80s", false}, {"90s", false}, {"5m", false},
	} {
		_, err := Parse([]byte(withSections(t, "shutdown: { drain_timeout: "+tc.drain+" }\n")))
		if tc.ok && err != nil {
			t.Errorf("drain %s refused: %v", tc.drain, err)
		}
		if !tc.ok {
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != "shutdown.drain_timeout" || !strings.Contains(err.Error(), "TimeoutStopSec") {
				t.Errorf("drain %s: error %v, want shutdown.drain_timeout refused naming TimeoutStopSec", tc.drain, err)
			}
		}
	}
}

// TestSystemdUnitStopTimeout keeps SystemdStopTimeout equal to the unit's
// TimeoutStopSec, which the drain validation relies on.
func TestSystemdUnitStopTimeout(t *testing.T) {
	f, err := os.Open("systemd/edge-sbc.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "TimeoutStopSec="); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		t.Fatalf("unit has %d TimeoutStopSec lines, want 1", len(found))
	}
	sec, err := strconv.Atoi(found[0])
	if err != nil {
		t.Fatalf("TimeoutStopSec=%s: write it in plain seconds", found[0])
	}
	if got := time.Duration(sec) * time.Second; got != SystemdStopTimeout {
		t.Fatalf("unit TimeoutStopSec=%s but config.SystemdStopTimeout = %s", got, SystemdStopTimeout)
	}
}

func TestSetKeys(t *testing.T) {
	ks, err := setKeys([]byte(`
listen:
  - &l { addr: "127.0.0.1:1", client_auth: optional }
  - { <<: *l, addr: "127.0.0.1:2" }
sip: { keepalive_interval: 0, answer_timeout: ~ }
media: { dscp: { audio: 0 } }
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"listen", "listen[0]", "listen[0].addr", "listen[1].addr", "listen[1].client_auth", "sip.keepalive_interval", "media.dscp.audio"} {
		if !ks[k] {
			t.Errorf("%s not seen as set (%v)", k, ks)
		}
	}
	for _, k := range []string{"sip.answer_timeout", "media.timeout", "media.dscp.video", "<<"} {
		if ks[k] {
			t.Errorf("%s seen as set", k)
		}
	}
}
