package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// withKeylog sets tls.keylog_file in the base config.
func withKeylog(t *testing.T, path string) string {
	src := base(t)
	return strings.Replace(src, "tls: { cert:", "tls: { keylog_file: "+path+", cert:", 1)
}

func TestTraceDefaults(t *testing.T) {
	c, err := Parse([]byte(base(t)))
	if err != nil {
		t.Fatal(err)
	}
	want := HEP{Transport: DefaultHEPTransport, NodeID: DefaultHEPNodeID}
	if c.Trace.HEP != want {
		t.Fatalf("trace.hep = %+v, want %+v", c.Trace.HEP, want)
	}
	if c.TLS.KeylogFile != "" {
		t.Fatalf("tls.keylog_file = %q, want off", c.TLS.KeylogFile)
	}
}

func TestTraceKeys(t *testing.T) {
	c, err := Parse([]byte(withSections(t, `trace: { hep: { addr: "homer.example.com:9060", transport: tcp, node_id: 0, password: s3cret } }`+"\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := HEP{Addr: "homer.example.com:9060", Transport: "tcp", NodeID: 0, Password: "s3cret"}
	if c.Trace.HEP != want {
		t.Fatalf("trace.hep = %+v, want %+v (an explicit node_id 0 is kept)", c.Trace.HEP, want)
	}
	if s := fmt.Sprintf("%v %+v %s", c.Trace.HEP, c.Trace, c.Trace.HEP); strings.Contains(s, "s3cret") {
		t.Fatalf("the HEP password is printed: %s", s)
	}
	dir := t.TempDir()
	kl := filepath.Join(dir, "keys.log")
	c, err = Parse([]byte(withKeylog(t, kl)))
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.KeylogFile != kl {
		t.Fatalf("tls.keylog_file = %q", c.TLS.KeylogFile)
	}
}

func TestTraceRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, src, key string
	}{
		{"transport", withSections(t, "trace: { hep: { addr: \"127.0.0.1:9060\", transport: sctp } }\n"), "trace.hep.transport"},
		{"addr without port", withSections(t, "trace: { hep: { addr: \"127.0.0.1\" } }\n"), "trace.hep.addr"},
		{"addr port 0", withSections(t, "trace: { hep: { addr: \"127.0.0.1:0\" } }\n"), "trace.hep.addr"},
		{"addr without host", withSections(t, "trace: { hep: { addr: \":9060\" } }\n"), "trace.hep.addr"},
		{"node_id negative", withSections(t, "trace: { hep: { node_id: -1 } }\n"), "trace.hep.node_id"},
		{"node_id too big", withSections(t, "trace: { hep: { node_id: 4294967296 } }\n"), "trace.hep.node_id"},
		{"keylog in a missing directory", withKeylog(t, filepath.Join(dir, "nope", "keys.log")), "tls.keylog_file"},
		{"keylog is a directory", withKeylog(t, dir), "tls.keylog_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tc.key {
				t.Fatalf("err = %v, want a KeyError on %s", err, tc.key)
			}
		})
	}
}

func TestTraceStartOnly(t *testing.T) {
	src := base(t)
	old, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	next, err := Parse([]byte(src + `trace: { hep: { addr: "127.0.0.1:9060", password: x } }` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := StartOnlyChanges(old, next), []string{"trace.hep.addr", "trace.hep.password"}; !slices.Equal(got, want) {
		t.Fatalf("StartOnlyChanges = %v, want %v", got, want)
	}
}
