package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/dnsresolve"
	"github.com/edge-sbc/edge-sbc/media"
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

// newLogger builds the process logger. The level is applied through
// zerolog's global level so that a reload can change it.
func newLogger(c *config.Config, w io.Writer) zerolog.Logger {
	var out io.Writer = w
	if c.Log.Format == "console" {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	setLogLevel(c)
	return zerolog.New(out).Level(zerolog.TraceLevel).With().Timestamp().Logger()
}

func setLogLevel(c *config.Config) {
	lvl, err := zerolog.ParseLevel(c.Log.Level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	zerolog.SetGlobalLevel(lvl)
}

func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, syscall.SIGINT, syscall.SIGTERM)
}

// notify tells systemd (Type=notify) about state changes; a no-op outside
// systemd.
func notify(log zerolog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Debug().Err(err).Str("state", state).Msg("sd_notify failed")
	}
}

// serve runs the SBC until a SIGTERM or SIGINT arrives on sigs, then
// drains and shuts down; a SIGHUP reloads. Signals that arrive while it
// starts wait in sigs and are handled once it has started.
func serve(sigs <-chan os.Signal, path, stateDir string, stderr io.Writer) error {
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
	logCertificate(log, store)
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

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := sip.NewMetrics(reg)

	mctx, stopMedia := context.WithCancel(context.Background())
	defer stopMedia()
	anchor, eng, err := newMediaAnchor(mctx, cfg, metrics, log)
	if err != nil {
		return err
	}
	defer func() { _ = eng.Close() }()
	registerStoreMetrics(reg, store, eng)

	var cdrs sip.CDRSink
	if cfg.CDR.File != "" {
		f, err := sip.OpenCDRFile(cfg.CDR.File, cfg.CDR.SyncInterval, log)
		if err != nil {
			// CDR trouble never stops calls: they stay in the log.
			log.Error().Err(err).Str("file", cfg.CDR.File).Msg("CDR file cannot be opened; CDRs stay in the log")
		} else {
			defer func() { _ = f.Close() }()
			cdrs = f
		}
	}

	cdrs = withMOSMetric(reg, cdrs) // edge_sbc_media_mos from each CDR (calls.go)
	b2b, err := sip.New(sip.Options{Config: cfg, Store: store, Resolver: res, Log: log, Media: anchor, Metrics: metrics, CDRs: cdrs})
	if err != nil {
		return err
	}
	lns, err := listenAll(cfg)
	if err != nil {
		return err
	}
	// The watchdog asks the listeners whether the SIP layer still accepts.
	watched := make([]*watchedListener, len(lns))
	for i, ln := range lns {
		watched[i] = watchListener(ln)
		lns[i] = watched[i]
	}
	// The B2BUA lives until Close, past the signal that starts the drain.
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	if err := b2b.Start(runCtx, lns); err != nil {
		for _, l := range lns {
			_ = l.Close()
		}
		_ = b2b.Close()
		return err
	}
	var httpSrv *http.Server
	if cfg.Metrics.Listen != "" {
		if httpSrv, err = serveMetrics(cfg.Metrics.Listen, cfg.Metrics.Pprof, reg, b2b, log); err != nil {
			_ = b2b.Close()
			return err
		}
	}
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		store.Watch(wctx, tlsconf.DefaultWatchInterval, func(err error) {
			if err != nil {
				log.Error().Err(err).Msg("certificate files changed but were refused; the running ones are kept")
				return
			}
			log.Info().Msg("certificate files changed: reloaded")
			logCertificate(log, store)
		})
	}()
	defer func() { stopWatch(); <-watchDone }()

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
	notify(log, daemon.SdNotifyReady)

	// systemd is pinged every WatchdogSec/2, and only while the SIP
	// listeners are served and the SIP and media layers are alive.
	var (
		wdog  <-chan time.Time
		every = time.Second
	)
	if iv, err := daemon.SdWatchdogEnabled(false); err == nil && iv > 0 {
		every = iv / 2
		t := time.NewTicker(every)
		defer t.Stop()
		wdog = t.C
	}
	wd := newWatchdog(log, liveness(
		probe{"sip listeners", listenersAlive(watched, every)},
		probe{"sip", aliveOf(b2b)},
		probe{"media relay", aliveOf(eng)},
	))
	doReload := func() {
		notify(log, daemon.SdNotifyReloading)
		reload(path, store, b2b, log)
		notify(log, daemon.SdNotifyReady)
	}

	stop := handleStartupSignals(sigs, doReload, log)
	for stop == nil {
		select {
		case s := <-sigs:
			if isStop(s) {
				stop = s
			} else {
				doReload()
			}
		case <-wdog:
			wd.ping()
		}
	}

	notify(log, daemon.SdNotifyStopping)
	drain := b2b.Conf().Shutdown.DrainTimeout
	log.Info().Str("signal", stop.String()).Int("calls", b2b.ActiveCalls()).Dur("drain_timeout", drain).
		Msg("shutting down: new calls get 503, calls in progress may finish (a second SIGTERM or SIGINT ends them now)")
	b2b.Drain()
	drainCalls(b2b, drain, sigs, wdog, wd.ping, log)
	_ = b2b.Close()
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = httpSrv.Shutdown(sctx)
		cancel()
	}
	log.Info().Msg("edge-sbc stopped")
	return nil
}

// handleStartupSignals handles the signals queued while the SBC started:
// any number of SIGHUPs make one reload (the file may have changed since
// it was read), and a SIGTERM or SIGINT is returned, to stop now.
func handleStartupSignals(sigs <-chan os.Signal, doReload func(), log zerolog.Logger) os.Signal {
	hups := 0
	for {
		select {
		case s := <-sigs:
			if isStop(s) {
				log.Info().Str("signal", s.String()).Msg("stop signal received during start-up")
				return s
			}
			hups++
		default:
			if hups > 0 {
				log.Info().Int("signals", hups).Msg("SIGHUP received during start-up: reloading now")
				doReload()
			}
			return nil
		}
	}
}

// reloadTarget is what a reload applies a configuration to (*sip.B2BUA).
type reloadTarget interface {
	Conf() *config.Config
	Reload(*config.Config) error
}

// reload re-reads the configuration file and the certificates, and reports
// whether it applied them. A file that fails validation, or that changes a
// setting the running process cannot apply (config.StartOnlyChanges), is
// refused whole: the running configuration is kept and each start-only key
// is named.
func reload(path string, store *tlsconf.Store, b2b reloadTarget, log zerolog.Logger) bool {
	if path == "" {
		if err := store.Reload(); err != nil {
			log.Error().Err(err).Msg("reload refused: certificates kept")
			return false
		}
		log.Info().Msg("reload: certificates re-read")
		return true
	}
	cfg, err := config.Load(path)
	if err != nil {
		log.Error().Err(err).Msg("reload refused: the running configuration is kept")
		return false
	}
	if keys := config.StartOnlyChanges(b2b.Conf(), cfg); len(keys) > 0 {
		log.Error().Strs("keys", keys).
			Msgf("reload refused: start-only keys changed: %s; restart needed (the running configuration is kept)", strings.Join(keys, ", "))
		return false
	}
	if err := store.Reload(); err != nil {
		log.Error().Err(err).Msg("reload refused: certificates kept, configuration kept")
		return false
	}
	if err := b2b.Reload(cfg); err != nil {
		log.Error().Err(err).Msg("reload refused: the running configuration is kept")
		return false
	}
	setLogLevel(cfg)
	logCertificate(log, store)
	log.Info().Int("trunks", len(cfg.Trunks)).Int("routes", len(cfg.Routes)).Str("log_level", cfg.Log.Level).
		Msg("reload: configuration and certificates applied")
	return true
}

func logCertificate(log zerolog.Logger, store *tlsconf.Store) {
	leaf := store.Leaf()
	if leaf == nil {
		return
	}
	left := time.Until(leaf.NotAfter)
	ev := log.Info()
	if left < 30*24*time.Hour {
		ev = log.Warn()
	}
	ev.Str("subject", leaf.Subject.CommonName).Strs("names", tlsconf.Identities(leaf)).
		Time("not_after", leaf.NotAfter).Int("days_left", int(left.Hours()/24)).Msg("certificate loaded")
}

func registerStoreMetrics(reg *prometheus.Registry, store *tlsconf.Store, eng *media.Engine) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_sbc_certificate_expiry_timestamp_seconds", Help: "NotAfter of our certificate (Unix time)."},
			func() float64 {
				if l := store.Leaf(); l != nil {
					return float64(l.NotAfter.Unix())
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_sbc_media_ports_in_use", Help: "Relay ports allocated."},
			func() float64 { return float64(eng.PortsInUse()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_sbc_media_ports_free", Help: "Relay ports free (not counting quarantine)."},
			func() float64 { return float64(eng.PortsFree()) }),
	)
}

// serveMetrics serves /metrics, /healthz and /readyz.
func serveMetrics(addr string, withPprof bool, reg *prometheus.Registry, b2b *sip.B2BUA, log zerolog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if b2b.Draining() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	registerCallsHandlers(mux, b2b.Calls) // GET /calls and the live call page at / (calls.go)
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("metrics server stopped")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("metrics on /metrics, /healthz, /readyz")
	return srv, nil
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
