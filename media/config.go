package media

import (
	"fmt"
	"net/netip"
	"time"
)

// Config configures an Engine. The zero value of every field selects the
// default named in its comment; defaults are applied by withDefaults only.
type Config struct {
	// PortMin is the lowest relay port (rounded up to even). Default 36000.
	PortMin int
	// PortMax is the highest relay port. Default 59999.
	PortMax int
	// BindAddr is the local address every relay socket binds to.
	// Default 0.0.0.0 (all IPv4 interfaces); "::" binds dual-stack
	// sockets (IPv6 and IPv4 peers), any other IPv6 address IPv6 sockets.
	// An address the host does not have fails allocations with
	// ErrAddressNotLocal (see CheckBindAddress).
	BindAddr netip.Addr
	// DSCPAudio is the DSCP of audio streams. Default 46 (EF); a negative
	// value sends best effort (0).
	DSCPAudio int
	// DSCPVideo is the DSCP of video streams, main video and content
	// video (a=content:slides) alike: both are video (RFC 4594
	// multimedia conferencing). Default 34 (AF41); a negative value sends
	// best effort.
	DSCPVideo int
	// DSCPApplication is the DSCP of application streams, such as BFCP
	// (RFC 8855), and of any other media type that is not audio or video.
	// BFCP is floor control, i.e. call control, so it is marked like the
	// SIP signalling, not like the video whose floor it controls. Default
	// 24 (CS3, RFC 4594 signaling); a negative value sends best effort.
	DSCPApplication int
	// Timeout is the dead-media timeout: when no packet was received from
	// either side on any answered, non-held RTP stream for this long, the
	// session's OnTimeout is called once (non-RTP streams such as BFCP do
	// not count). Default 60s; a negative value disables the timeout.
	Timeout time.Duration
	// Quarantine is how long released ports stay out of the pool before
	// they can be allocated again (late packets of the old call must not
	// reach a new call). Default 2s. A negative value disables quarantine.
	Quarantine time.Duration
	// StrictSource, when true, accepts only packets whose source equals the
	// address:port signalled in SDP and disables latching, whatever
	// Learning says. Default false (Learning decides).
	StrictSource bool
	// Learning selects how the relay learns where each side sends from
	// (see doc.go, Endpoint learning). Default LearningHeuristic.
	Learning LearningMode
	// LearnWindow is how long after an SDP of either side (offer, answer,
	// re-offer) the relay learns each side's source from its first
	// packets before locking it (LearningHeuristic). Default 3s.
	LearnWindow time.Duration
	// RebindSilence is how long the learned source must have been silent
	// before another source can take the stream over as a NAT rebind
	// (LearningHeuristic). Default 2s.
	RebindSilence time.Duration
	// Fastpath moves latched pass-through streams into the kernel (see
	// doc.go, Kernel fast path) when FastpathAuto and the kernel and the
	// process's privileges allow it. The zero value is FastpathOff
	// (edge-sbc's configuration defaults to auto).
	Fastpath FastpathMode
	// SocketCache is how many relay sockets may stay open after their
	// stream, through the quarantine, for later streams (see portPool).
	// Kept sockets and those in use together leave an eighth of the file
	// descriptor limit (at least 512) to the rest of the process, and kept
	// ones are closed first when descriptors run out. 0 means the default,
	// DefaultSocketCache; a negative value disables it.
	SocketCache int
}

// Defaults of Config, applied by withDefaults.
const (
	DefaultPortMin         = 36000
	DefaultPortMax         = 59999
	DefaultDSCPAudio       = 46 // EF
	DefaultDSCPVideo       = 34 // AF41
	DefaultDSCPApplication = 24 // CS3
	DefaultTimeout         = 60 * time.Second
	DefaultQuarantine      = 2 * time.Second
	DefaultSocketCache     = 16384
)

// withDefaults returns c with defaults applied, or an error if the result is
// invalid.
func (c Config) withDefaults() (Config, error) {
	if c.PortMin == 0 {
		c.PortMin = DefaultPortMin
	}
	if c.PortMax == 0 {
		c.PortMax = DefaultPortMax
	}
	if !c.BindAddr.IsValid() {
		c.BindAddr = netip.IPv4Unspecified()
	}
	c.BindAddr = c.BindAddr.Unmap()
	if c.DSCPAudio == 0 {
		c.DSCPAudio = DefaultDSCPAudio
	}
	if c.DSCPVideo == 0 {
		c.DSCPVideo = DefaultDSCPVideo
	}
	if c.DSCPApplication == 0 {
		c.DSCPApplication = DefaultDSCPApplication
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Timeout < 0 {
		c.Timeout = 0 // no dead-media timeout
	}
	c.DSCPAudio, c.DSCPVideo, c.DSCPApplication = max(c.DSCPAudio, 0), max(c.DSCPVideo, 0), max(c.DSCPApplication, 0)
	if c.Quarantine == 0 {
		c.Quarantine = DefaultQuarantine
	}
	if c.Quarantine < 0 {
		c.Quarantine = 0
	}
	switch {
	case c.SocketCache == 0:
		c.SocketCache = DefaultSocketCache
	case c.SocketCache < 0:
		c.SocketCache = 0
	}
	if c.LearnWindow == 0 {
		c.LearnWindow = DefaultLearnWindow
	}
	if c.RebindSilence == 0 {
		c.RebindSilence = DefaultRebindSilence
	}
	if c.PortMin%2 != 0 {
		c.PortMin++
	}
	if c.PortMin < 1024 || c.PortMax > 65535 || c.PortMax < c.PortMin+1 {
		return c, fmt.Errorf("media: invalid port range %d-%d", c.PortMin, c.PortMax)
	}
	for _, d := range []int{c.DSCPAudio, c.DSCPVideo, c.DSCPApplication} {
		if d < 0 || d > 63 {
			return c, fmt.Errorf("media: invalid DSCP %d", d)
		}
	}
	if c.Timeout < 0 {
		return c, fmt.Errorf("media: invalid timeout %v", c.Timeout)
	}
	if c.Learning > LearningOff {
		return c, fmt.Errorf("%w: %v", ErrBadLearningMode, c.Learning)
	}
	if c.Fastpath > FastpathAuto {
		return c, fmt.Errorf("%w: %v", ErrBadFastpathMode, c.Fastpath)
	}
	if c.LearnWindow < 0 || c.RebindSilence < 0 {
		return c, fmt.Errorf("media: invalid learning window %v or rebind silence %v", c.LearnWindow, c.RebindSilence)
	}
	return c, nil
}
