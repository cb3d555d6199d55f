package config

import (
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// Watching calls: the keys that let an operator see inside the encrypted
// signalling (trace.hep: every SIP message to a HEP collector such as
// Homer; tls.keylog_file: the TLS secrets for Wireshark). Both are
// start-only.

// Trace configures where the SBC's SIP messages are copied to.
type Trace struct {
	// HEP sends every SIP message (received and sent, decrypted, both legs
	// of each call with one correlation id) to a HEP v3 collector.
	HEP HEP `yaml:"hep"`
}

// HEP is a HEP v3 (Homer) collector.
type HEP struct {
	// Addr is the collector's host:port. Default: empty (off).
	Addr string `yaml:"addr"`
	// Transport is udp or tcp. Default "udp".
	Transport string `yaml:"transport"`
	// NodeID is the capture agent id put in every packet, 0-4294967295.
	// Default 1; an explicit 0 is kept.
	NodeID int `yaml:"node_id"`
	// Password is the collector's auth key, sent in every packet when set.
	// Default: empty (none). Never logged.
	Password string `yaml:"password"`
}

// Defaults of the trace keys.
const (
	DefaultHEPTransport = "udp"
	DefaultHEPNodeID    = 1
)

// applyTraceDefaults fills the trace keys that are absent.
func (c *Config) applyTraceDefaults(set keySet) {
	if c.Trace.HEP.Transport == "" {
		c.Trace.HEP.Transport = DefaultHEPTransport
	}
	if !set["trace.hep.node_id"] {
		c.Trace.HEP.NodeID = DefaultHEPNodeID
	}
}

// validateTrace checks trace.hep and tls.keylog_file.
func (c *Config) validateTrace() error {
	h := c.Trace.HEP
	switch h.Transport {
	case "udp", "tcp":
	default:
		return bad("trace.hep.transport", "%q: must be udp or tcp", h.Transport)
	}
	if h.NodeID < 0 || h.NodeID > math.MaxUint32 {
		return bad("trace.hep.node_id", "%d: must be between 0 and 4294967295", h.NodeID)
	}
	if h.Addr != "" {
		host, port, err := net.SplitHostPort(h.Addr)
		if err != nil {
			return bad("trace.hep.addr", "%q is not host:port: %v", h.Addr, err)
		}
		if host == "" {
			return bad("trace.hep.addr", "%q: no host", h.Addr)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return bad("trace.hep.addr", "%q: bad port", h.Addr)
		}
	}
	if len(h.Password) > 1024 {
		return bad("trace.hep.password", "longer than 1024 bytes")
	}
	if f := c.TLS.KeylogFile; f != "" {
		if fi, err := os.Stat(f); err == nil && fi.IsDir() {
			return bad("tls.keylog_file", "%s is a directory", f)
		}
		if fi, err := os.Stat(filepath.Dir(f)); err != nil || !fi.IsDir() {
			return bad("tls.keylog_file", "%s: directory %s does not exist", f, filepath.Dir(f))
		}
	}
	return nil
}

// traceStartOnlyChanges names the trace keys that differ: all are
// start-only (the exporter and the key log are opened at start).
func traceStartOnlyChanges(old, next *Config) []string {
	var out []string
	for _, d := range []struct {
		key  string
		a, b any
	}{
		{"tls.keylog_file", old.TLS.KeylogFile, next.TLS.KeylogFile},
		{"trace.hep.addr", old.Trace.HEP.Addr, next.Trace.HEP.Addr},
		{"trace.hep.transport", old.Trace.HEP.Transport, next.Trace.HEP.Transport},
		{"trace.hep.node_id", old.Trace.HEP.NodeID, next.Trace.HEP.NodeID},
		{"trace.hep.password", old.Trace.HEP.Password, next.Trace.HEP.Password},
	} {
		if d.a != d.b {
			out = append(out, d.key)
		}
	}
	return out
}

// String keeps the password out of anything that prints a HEP value.
func (h HEP) String() string {
	pw := ""
	if h.Password != "" {
		pw = " password=(set)"
	}
	return fmt.Sprintf("hep{addr=%s transport=%s node_id=%d%s}", h.Addr, h.Transport, h.NodeID, pw)
}
