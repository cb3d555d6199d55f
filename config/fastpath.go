package config

// The kernel fast path of the media relay (media.fastpath): start-only,
// like every media key.

// Values of media.fastpath.
const (
	FastpathAuto    = "auto"
	FastpathOff     = "off"
	DefaultFastpath = FastpathAuto
)

// applyFastpathDefaults fills media.fastpath when absent.
func (c *Config) applyFastpathDefaults() {
	if c.Media.Fastpath == "" {
		c.Media.Fastpath = DefaultFastpath
	}
}

// validateFastpath checks media.fastpath.
func (c *Config) validateFastpath() error {
	switch c.Media.Fastpath {
	case FastpathAuto, FastpathOff:
		return nil
	}
	return bad("media.fastpath", "%q: must be auto or off", c.Media.Fastpath)
}
