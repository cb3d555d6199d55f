// Package config is edge-sbc's YAML configuration: one Config tree whose
// fields name their defaults, strict decoding (unknown keys are errors),
// applyDefaults then Validate, and errors that name the offending key
// (*KeyError). example.yaml documents every key; default.yaml is the
// embedded loopback configuration `edge-sbc run` uses without --config.
package config
