package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Transform rewrites one field of a call leaving the SBC (like an
// Expressway transform): when Match (a Go regexp, RE2 syntax) matches the
// field, the field becomes Replace, where $1 or \1 is the first capture
// group. Fields: ruri (the Request-URI, e.g. sips:1234@corp.example.com),
// from, to, pai (the URI of P-Asserted-Identity). The URIs are matched
// without their parameters.
type Transform struct {
	// Field is ruri, from, to or pai. Required.
	Field string `yaml:"field"`
	// Match is the regular expression. Required.
	Match string `yaml:"match"`
	// Replace is the new value (a sips: URI for ruri, from, to, pai).
	// Required.
	Replace string `yaml:"replace"`
	// Last stops the list after this transform when it matched.
	// Default false.
	Last bool `yaml:"last"`
}

// HeaderOp adds, sets or removes a header on calls leaving the SBC. The
// headers the B2BUA builds (Via, From, To, Call-ID, CSeq, Contact, Route,
// Record-Route, Max-Forwards, Content-*, Allow, Supported, Require, RSeq,
// RAck) are refused.
type HeaderOp struct {
	// Op is add, set (replace every occurrence) or remove. Required.
	Op string `yaml:"op"`
	// Name is the header name. Required.
	Name string `yaml:"name"`
	// Value is the header value (add, set). Required for add and set.
	Value string `yaml:"value"`
}

// Health configures OPTIONS pings of a trunk's targets.
type Health struct {
	// Interval between pings of each target; 0 turns monitoring off.
	// Default 0 (off).
	Interval time.Duration `yaml:"interval"`
	// Timeout for one ping. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// DownAfter consecutive failed pings mark a target down. Default 3.
	DownAfter int `yaml:"down_after"`
	// UpAfter consecutive answered pings mark it up again. Default 2.
	UpAfter int `yaml:"up_after"`
	// ReadyRequiresTargets makes /readyz fail while this trunk has no
	// live target. Default false.
	ReadyRequiresTargets bool `yaml:"ready_requires_targets"`
}

// Defaults of the operator features.
const (
	DefaultHealthTimeout   = 5 * time.Second
	DefaultHealthDownAfter = 3
	DefaultHealthUpAfter   = 2
	DefaultRefer           = "local"
)

// coreHeaders are built by the B2BUA: no header operation may touch them.
var coreHeaders = map[string]bool{
	"via": true, "from": true, "to": true, "call-id": true, "cseq": true, "contact": true,
	"route": true, "record-route": true, "max-forwards": true, "content-length": true,
	"content-type": true, "content-encoding": true, "content-disposition": true, "allow": true,
	"supported": true, "require": true, "rseq": true, "rack": true, "session-expires": true,
	"min-se": true, "proxy-require": true, "unsupported": true,
}

func (c *Config) applyOperatorDefaults(set keySet) {
	for i := range c.Trunks {
		t := &c.Trunks[i]
		key := fmt.Sprintf("trunks[%d].health", i)
		if !set[key+".timeout"] {
			t.Health.Timeout = DefaultHealthTimeout
		}
		if !set[key+".down_after"] {
			t.Health.DownAfter = DefaultHealthDownAfter
		}
		if !set[key+".up_after"] {
			t.Health.UpAfter = DefaultHealthUpAfter
		}
		if t.Refer == "" {
			t.Refer = DefaultRefer
		}
	}
}

func (c *Config) validateOperator() error {
	for i, t := range c.Trunks {
		key := fmt.Sprintf("trunks[%d]", i)
		if err := validateTransforms(key+".transforms", t.Transforms); err != nil {
			return err
		}
		if err := validateHeaderOps(key+".headers", t.Headers); err != nil {
			return err
		}
		h := t.Health
		switch {
		case h.Interval < 0:
			return bad(key+".health.interval", "must be positive (0 turns monitoring off)")
		case h.Interval > 0 && t.URI == "":
			return bad(key+".health.interval", "trunk %q has no uri: there are no targets to ping", t.Name)
		case h.Interval > 0 && h.Interval < time.Second:
			return bad(key+".health.interval", "%s is below 1s", h.Interval)
		case h.Timeout <= 0:
			return bad(key+".health.timeout", "must be positive")
		case h.Interval > 0 && h.Timeout > h.Interval:
			return bad(key+".health.timeout", "%s is longer than the interval %s", h.Timeout, h.Interval)
		case h.DownAfter < 1:
			return bad(key+".health.down_after", "must be at least 1")
		case h.UpAfter < 1:
			return bad(key+".health.up_after", "must be at least 1")
		}
		switch t.Refer {
		case "local", "refuse":
		default:
			return bad(key+".refer", "%q: must be local or refuse", t.Refer)
		}
		if t.AcceptSIPScheme && t.Identity == "" {
			return bad(key+".accept_sip_scheme", "only a trunk identified by its certificate (identity) may send sip: URIs")
		}
	}
	for i, r := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		if err := validateTransforms(key+".transforms", r.Transforms); err != nil {
			return err
		}
		if err := validateHeaderOps(key+".headers", r.Headers); err != nil {
			return err
		}
	}
	return nil
}

func validateTransforms(key string, ts []Transform) error {
	for i, t := range ts {
		k := fmt.Sprintf("%s[%d]", key, i)
		switch t.Field {
		case "ruri", "from", "to", "pai":
		default:
			return bad(k+".field", "%q: must be ruri, from, to or pai", t.Field)
		}
		if t.Match == "" {
			return bad(k+".match", "required")
		}
		if _, err := regexp.Compile(t.Match); err != nil {
			return bad(k+".match", "%q is not a regular expression: %v", t.Match, err)
		}
		if t.Replace == "" {
			return bad(k+".replace", "required")
		}
		if !strings.HasPrefix(strings.ToLower(t.Replace), "sips:") && !strings.HasPrefix(t.Replace, "$") && !strings.HasPrefix(t.Replace, `\`) {
			return bad(k+".replace", "%q: the result must be a sips: URI", t.Replace)
		}
	}
	return nil
}

func validateHeaderOps(key string, ops []HeaderOp) error {
	for i, o := range ops {
		k := fmt.Sprintf("%s[%d]", key, i)
		switch o.Op {
		case "add", "set":
			if o.Value == "" {
				return bad(k+".value", "required for %s", o.Op)
			}
		case "remove":
		default:
			return bad(k+".op", "%q: must be add, set or remove", o.Op)
		}
		if o.Name == "" || strings.ContainsAny(o.Name, " :\t\r\n") {
			return bad(k+".name", "%q is not a header name", o.Name)
		}
		if coreHeaders[strings.ToLower(o.Name)] {
			return bad(k+".name", "%s is built by the B2BUA and cannot be changed", o.Name)
		}
		if strings.ContainsAny(o.Value, "\r\n") {
			return bad(k+".value", "a header value cannot contain a line break")
		}
	}
	return nil
}
