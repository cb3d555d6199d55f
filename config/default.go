package config

import (
	_ "embed"
	"fmt"
	"path/filepath"
	"strings"
)

//go:embed default.yaml
var defaultYAML string

// Names of the development certificates the embedded default uses.
const (
	DevSBCName     = "sbc.edge-sbc.test"
	DevOutsideName = "outside.edge-sbc.test"
	DevInsideName  = "inside.edge-sbc.test"
)

// DefaultYAML renders the embedded default configuration with its
// development certificates under pkiDir.
func DefaultYAML(pkiDir string) string {
	return strings.ReplaceAll(defaultYAML, "@PKI@", filepath.Clean(pkiDir))
}

// Default parses the embedded default configuration.
func Default(pkiDir string) (*Config, error) {
	c, err := Parse([]byte(DefaultYAML(pkiDir)))
	if err != nil {
		return nil, fmt.Errorf("embedded default config: %w", err)
	}
	return c, nil
}
