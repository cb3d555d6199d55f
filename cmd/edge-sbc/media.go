package main

import (
	"fmt"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/media"
)

// mediaConfig maps the media: section of cfg to the relay's Config.
func mediaConfig(cfg *config.Config) (media.Config, error) {
	lo, hi, err := config.ParsePortRange(cfg.Media.PortRange)
	if err != nil {
		return media.Config{}, fmt.Errorf("media.port_range: %w", err)
	}
	bind, err := netip.ParseAddr(cfg.Media.Bind)
	if err != nil {
		return media.Config{}, fmt.Errorf("media.bind: %w", err)
	}
	learning, err := media.ParseLearningMode(cfg.Media.Learning)
	if err != nil {
		return media.Config{}, fmt.Errorf("media.learning: %w", err)
	}
	fastpath, err := media.ParseFastpathMode(cfg.Media.Fastpath)
	if err != nil {
		return media.Config{}, fmt.Errorf("media.fastpath: %w", err)
	}
	// config keeps an explicit 0 (off, best effort); media.Config's zero
	// values mean "default" and its negative ones "off".
	off := func(v int) int {
		if v == 0 {
			return -1
		}
		return v
	}
	timeout := cfg.Media.Timeout
	if timeout == 0 {
		timeout = -1
	}
	return media.Config{
		PortMin:   lo,
		PortMax:   hi,
		BindAddr:  bind,
		DSCPAudio: off(cfg.Media.DSCP.Audio),
		// Main and content video (a=content:slides) are video: AF41
		// (RFC 4594 multimedia conferencing).
		DSCPVideo: off(cfg.Media.DSCP.Video),
		// Application streams are BFCP: floor control is call control,
		// marked with the signalling code point (CS3), not with the
		// video's.
		DSCPApplication: off(cfg.Media.DSCP.Signalling),
		Timeout:         timeout,
		StrictSource:    cfg.Media.StrictSource,
		Learning:        learning,
		Fastpath:        fastpath,
		SocketCache:     off(cfg.Media.SocketCache), // config's 0 is off, media's is the default
	}, nil
}

// newMediaEngine builds the media relay engine; it opens nothing until
// Start (which start does, with Close on its stack of closers).
func newMediaEngine(cfg *config.Config, log zerolog.Logger) (*media.Engine, error) {
	mc, err := mediaConfig(cfg)
	if err != nil {
		return nil, err
	}
	mlog := log.With().Str("part", "media").Logger()
	eng, err := media.NewEngine(mc, mlog)
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	// Not fatal: keepalived may add the address to this node later; until
	// then calls get 503.
	if err := media.CheckBindAddress(mc.BindAddr); err != nil {
		mlog.Warn().Err(err).Str("media.bind", cfg.Media.Bind).Msg("media: relay ports cannot be allocated until the bind address is on this host")
	}
	if mc.Learning == media.LearningOff && !cfg.Media.StrictSource {
		mlog.Warn().Msg("media.learning: off lets anyone who guesses a relay port take over a stream")
	}
	return eng, nil
}

// registerFastpathMetrics exposes the kernel fast path: the streams it
// forwards now and the packets it forwarded (0 when it is not loaded).
func registerFastpathMetrics(reg prometheus.Registerer, eng *media.Engine) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_sbc_fastpath_streams",
			Help: "Media streams forwarded by the kernel fast path (eBPF) now."},
			func() float64 { return float64(eng.FastpathStreams()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_sbc_fastpath_packets_total",
			Help: "Media packets forwarded by the kernel fast path (eBPF) since start."},
			func() float64 { return float64(eng.FastpathPackets()) }),
	)
}
