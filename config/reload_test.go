package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The documented split (see reload.go). Keys of slices of structs are
// named with index 0; every leaf key of Config must be in one of the two.
var (
	wantStartOnly = []string{
		"node.fqdn",
		"listen[0].addr", "listen[0].client_auth", "listen[0].unauthenticated_trunk",
		"tls.cert", "tls.key", "tls.ca", "tls.min_version", "tls.handshake_timeout",
		"dns.servers", "dns.timeout", "dns.attempts", "dns.min_ttl", "dns.max_ttl", "dns.negative_ttl", "dns.down_time",
		"sip.keepalive_interval", "sip.max_message_size",
		"media.port_range", "media.bind", "media.timeout", "media.strict_source", "media.learning",
		"media.dscp.audio", "media.dscp.video", "media.dscp.signalling", "media.fastpath", "media.socket_cache",
		"log.format", "metrics.listen", "metrics.pprof", "cdr.file", "cdr.sync_interval",
		"tls.keylog_file", "trace.hep.addr", "trace.hep.transport", "trace.hep.node_id", "trace.hep.password",
		"cluster", // a pointer: its keys are checked by TestClusterStartOnly
	}
	wantLive = []string{
		"node.public_ipv4", "node.domains",
		"trunks[0].*", "routes[0].*",
		"sip.provisional_timeout", "sip.answer_timeout", "sip.session_expires", "sip.header_allow_list", "sip.body_allow_list",
		"limits.*",
		"log.level", "shutdown.drain_timeout", "shutdown.handoff",
	}
)

func isLive(key string) bool {
	for _, k := range wantLive {
		if p, ok := strings.CutSuffix(k, "*"); ok && strings.HasPrefix(key, p) || k == key {
			return true
		}
	}
	return false
}

// leaves returns the yaml key paths of every leaf field under v (a struct),
// with the reflect path to reach it; slices of structs get index 0.
func leaves(v reflect.Value, prefix string, fn func(key string, f reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.Struct:
			leaves(f, key, fn)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			if f.Len() == 0 {
				panic("test config has no " + key)
			}
			leaves(f.Index(0), key+"[0]", fn)
		default:
			fn(key, f)
		}
	}
}

// mutate changes f to a different value of its type.
func mutate(f reflect.Value) {
	switch f.Kind() {
	case reflect.String:
		f.SetString(f.String() + "x")
	case reflect.Bool:
		f.SetBool(!f.Bool())
	case reflect.Int, reflect.Int64:
		if f.Type() == reflect.TypeFor[time.Duration]() {
			f.SetInt(f.Int() + int64(time.Second))
		} else {
			f.SetInt(f.Int() + 1)
		}
	case reflect.Float64:
		f.SetFloat(f.Float() + 1)
	case reflect.Slice:
		f.Set(reflect.Append(f, reflect.ValueOf("x")))
	case reflect.Pointer:
		if f.IsNil() {
			f.Set(reflect.New(f.Type().Elem()))
		} else {
			mutate(f.Elem())
		}
	default:
		panic("cannot mutate " + f.Type().String())
	}
}

// TestStartOnlyChangesEveryKey changes each leaf key of Config alone and
// checks that StartOnlyChanges reports exactly that key when it is
// start-only and nothing when it is live.
func TestStartOnlyChangesEveryKey(t *testing.T) {
	src := []byte(base(t))
	parse := func() *Config {
		c, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := parse()
	if got := StartOnlyChanges(old, parse()); got != nil {
		t.Fatalf("same config: %v", got)
	}
	seen := 0
	leaves(reflect.ValueOf(parse()).Elem(), "", func(key string, _ reflect.Value) {
		seen++
		startOnly := slices.Contains(wantStartOnly, key)
		if startOnly == isLive(key) {
			t.Errorf("%s is classified neither live nor start-only (or both): add it to reload.go's doc, StartOnlyChanges and this test", key)
			return
		}
		next := parse()
		leaves(reflect.ValueOf(next).Elem(), "", func(k string, f reflect.Value) {
			if k == key {
				mutate(f)
			}
		})
		got := StartOnlyChanges(old, next)
		switch {
		case startOnly && !slices.Equal(got, []string{key}):
			t.Errorf("%s changed: StartOnlyChanges = %v, want [%s]", key, got, key)
		case !startOnly && got != nil:
			t.Errorf("live key %s changed: StartOnlyChanges = %v, want none", key, got)
		}
	})
	if seen < len(wantStartOnly)+10 {
		t.Fatalf("walked only %d keys", seen)
	}
}

// TestStartOnlyChangesTable: changes as written in a file.
func TestStartOnlyChangesTable(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"media.bind", "routes:", "media: { bind: 127.0.0.2 }\nroutes:", []string{"media.bind"}},
		{"several", "routes:", "media: { port_range: \"40000-40099\", timeout: 0s, dscp: { audio: 0 } }\nsip: { keepalive_interval: 15s }\ncdr: { file: /tmp/x.jsonl }\nroutes:",
			[]string{"sip.keepalive_interval", "media.port_range", "media.timeout", "media.dscp.audio", "cdr.file"}},
		{"listener added", "  - { addr: \"127.0.0.1:5062\", client_auth: required }", "  - { addr: \"127.0.0.1:5062\", client_auth: required }\n  - { addr: \"127.0.0.1:5063\" }", []string{"listen"}},
		{"listener moved", "127.0.0.1:5062", "127.0.0.1:5064", []string{"listen[1].addr"}},
		{"fqdn", "fqdn: sbc.example.com", "fqdn: sbc2.example.com", []string{"node.fqdn"}},
		{"a default made explicit is no change", "routes:", "media: { bind: 0.0.0.0, timeout: 60s }\nsip: { keepalive_interval: 30s }\nroutes:", nil},
		{"live keys", "  - { from: public, to: pbx }",
			"  - { from: public, to: pbx, ruri_user_prefix: \"9\" }\nlimits: { max_calls: 10, cps: 5 }\nlog: { level: debug }\nsip: { answer_timeout: 60s }\nshutdown: { drain_timeout: 10s }", nil},
		{"live: public address", "public_ipv4: 203.0.113.10", "public_ipv4: 203.0.113.11", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := base(t)
			old, err := Parse([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(src, tc.from) {
				t.Fatalf("test bug: %q not in base", tc.from)
			}
			next, err := Parse([]byte(strings.Replace(src, tc.from, tc.to, 1)))
			if err != nil {
				t.Fatal(err)
			}
			if got := StartOnlyChanges(old, next); !slices.Equal(got, tc.want) {
				t.Fatalf("StartOnlyChanges = %v, want %v", got, tc.want)
			}
		})
	}
}
