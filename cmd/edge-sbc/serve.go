package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/dnsresolve"
	"github.com/edge-sbc/edge-sbc/sip"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

func loadConfig(path string) (*config.Config, error) {
	c, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if _, err := tlsconf.LoadStore(c.TLS.Cert, c.TLS.Key, c.TLS.CA); err != nil {
		return nil, fmt.Errorf("config %s: tls: %w", path, err)
	}
	return c, nil
}

func writeDevPKI(dir string, names []string, ips []netip.Addr) (tlsconf.DevFiles, error) {
	files, err := tlsconf.WriteDevPKI(dir, names, ips)
	if err != nil {
		return files, fmt.Errorf("devcert: %w", err)
	}
	return files, nil
}

// defaultStateDir follows systemd's StateDirectory, then XDG.
func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "edge-sbc")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "edge-sbc")
	}
	return "/var/lib/edge-sbc"
}

// embeddedDefault prepares the development PKI (first start only) and
// returns the embedded default configuration.
func embeddedDefault(stateDir string) (*config.Config, string, error) {
	if stateDir == "" {
		stateDir = defaultStateDir()
	}
	pki := filepath.Join(stateDir, "pki")
	names := []string{config.DevSBCName, config.DevOutsideName, config.DevInsideName}
	have := true
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(pki, n+".pem")); err != nil {
			have = false
		}
	}
	if !have {
		if _, err := writeDevPKI(pki, names, []netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
			return nil, "", err
		}
	}
	c, err := config.Default(pki)
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(stateDir, "default-config.yaml"), []byte(config.DefaultYAML(pki)), 0o600); err != nil {
		return nil, "", fmt.Errorf("state dir: %w", err)
	}
	return c, pki, nil
}

func newLogger(c *config.Config, w io.Writer) zerolog.Logger {
	var out io.Writer = w
	if c.Log.Format == "console" {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	lvl, err := zerolog.ParseLevel(c.Log.Level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger()
}

func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
}

// serve runs the SBC until ctx ends, then drains and shuts down.
func serve(ctx context.Context, path, stateDir string, stderr io.Writer) error {
	var (
		cfg *config.Config
		pki string
		err error
	)
	if path != "" {
		if cfg, err = config.Load(path); err != nil {
			return err
		}
	} else {
		if cfg, pki, err = embeddedDefault(stateDir); err != nil {
			return err
		}
	}
	log := newLogger(cfg, stderr)

	store, err := tlsconf.LoadStore(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if leaf := store.Leaf(); leaf != nil {
		left := time.Until(leaf.NotAfter)
		ev := log.Info()
		if left < 30*24*time.Hour {
			ev = log.Warn()
		}
		ev.Str("subject", leaf.Subject.CommonName).Strs("names", tlsconf.Identities(leaf)).
			Time("not_after", leaf.NotAfter).Msg("certificate loaded")
	}
	res, err := dnsresolve.New(dnsresolve.Config{
		Servers:     cfg.DNS.Servers,
		Timeout:     cfg.DNS.Timeout,
		Attempts:    cfg.DNS.Attempts,
		MinTTL:      cfg.DNS.MinTTL,
		MaxTTL:      cfg.DNS.MaxTTL,
		NegativeTTL: cfg.DNS.NegativeTTL,
	}, dnsresolve.WithLogger(log.With().Str("part", "dns").Logger()))
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	mctx, stopMedia := context.WithCancel(context.Background())
	defer stopMedia()
	anchor, eng, err := newMediaAnchor(mctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() { _ = eng.Close() }()

	b2b, err := sip.New(sip.Options{Config: cfg, Store: store, Resolver: res, Log: log, Media: anchor})
	if err != nil {
		return err
	}
	lns, err := listenAll(cfg)
	if err != nil {
		return err
	}
	if err := b2b.Start(ctx, lns); err != nil {
		for _, l := range lns {
			_ = l.Close()
		}
		_ = b2b.Close()
		return err
	}
	for _, l := range cfg.Listen {
		log.Info().Str("addr", l.Addr).Str("client_auth", l.ClientAuth).Msg("listening (SIP over TLS)")
	}
	if pki != "" {
		log.Info().Str("pki", pki).Str("config", filepath.Join(filepath.Dir(pki), "default-config.yaml")).
			Msg("embedded default: development CA and certificates are here")
		log.Info().Msgf("test call: answer TLS on 127.0.0.1:5081 with %s/%s.pem, then call sips:alice@%s from a TLS client on 127.0.0.1:5062 with %s/%s.pem (CA %s/ca.pem)",
			pki, config.DevInsideName, config.DevSBCName, pki, config.DevOutsideName, pki)
	}
	log.Info().Str("version", version).Str("fqdn", cfg.Node.FQDN).Msg("edge-sbc ready")

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := store.Reload(); err != nil {
				log.Error().Err(err).Msg("reload: certificates refused, the running ones are kept")
			} else {
				log.Info().Msg("reload: certificates re-read")
			}
			continue
		case <-ctx.Done():
		}
		break
	}

	log.Info().Int("calls", b2b.ActiveCalls()).Dur("drain_timeout", cfg.Shutdown.DrainTimeout).Msg("shutting down: draining calls")
	b2b.Drain()
	deadline := time.Now().Add(cfg.Shutdown.DrainTimeout)
	for b2b.ActiveCalls() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	_ = b2b.Close()
	log.Info().Msg("edge-sbc stopped")
	return nil
}

// listenAll opens every configured listener; if one fails, the ones already
// open are closed.
func listenAll(cfg *config.Config) ([]net.Listener, error) {
	var lns []net.Listener
	for i, l := range cfg.Listen {
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil {
			for _, o := range lns {
				_ = o.Close()
			}
			return nil, fmt.Errorf("listen[%d] %s: %w", i, l.Addr, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

var _ = errors.New
