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
	"regexp"
	"runtime/debug"
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
	"github.com/edge-sbc/edge-sbc/sip/cluster"
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
//
// The life of the process is build (read everything, open nothing), start
// (open and start every part, each pushed on a stack of closers, so that a
// start that fails half way closes what it opened), run (until a stop
// signal), drain (no new calls; wait for the calls in progress) and close
// (the stack, newest first).
func serve(sigs <-chan os.Signal, path, stateDir string, stderr io.Writer) error {
	s, err := build(path, stateDir, stderr)
	if err != nil {
		return err
	}
	if err := s.start(); err != nil {
		return err
	}
	stop := s.run(sigs)
	if !s.handoff(stop) { // shutdown.handoff (cluster.go)
		s.drain(stop, sigs)
	}
	s.close()
	return nil
}

// sbc is one edge-sbc process: what build reads and start opens.
type sbc struct {
	path    string // the configuration file; "" for the embedded default
	pki     string // the embedded default's development PKI, else ""
	cfg     *config.Config
	log     zerolog.Logger
	store   *tlsconf.Store
	res     *dnsresolve.Resolver
	reg     *prometheus.Registry
	metrics *sip.Metrics
	eng     *media.Engine
	cl      *cluster.Cluster // nil without a cluster section

	// Set by start.
	tr      *tracing
	b2b     *sip.B2BUA
	watched []*watchedListener
	wdog    <-chan time.Time // the systemd watchdog tick; nil without one
	wd      *watchdog
	addrUp  <-chan struct{} // the service address appeared (watchAddress); nil without a cluster or with a wildcard media.bind
	closers closers
}

// build reads the configuration and the certificates and builds the parts
// that open nothing yet: resolver, metrics registry, media engine, cluster.
func build(path, stateDir string, stderr io.Writer) (*sbc, error) {
	s := &sbc{path: path}
	var err error
	if path != "" {
		if s.cfg, err = config.Load(path); err != nil {
			return nil, err
		}
	} else if s.cfg, s.pki, err = embeddedDefault(stateDir); err != nil {
		return nil, err
	}
	s.log = newLogger(s.cfg, stderr)
	if s.store, err = tlsconf.LoadStore(s.cfg.TLS.Cert, s.cfg.TLS.Key, s.cfg.TLS.CA); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	logCertificate(s.log, s.store)
	s.res, err = dnsresolve.New(dnsresolve.FromConfig(s.cfg.DNS), dnsresolve.WithLogger(s.log.With().Str("part", "dns").Logger()))
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(collectors.NewGoCollector(
		// The CPU the garbage collector takes next to the total: the
		// share an operator (and make bench) compares under load; and
		// the scheduler's processors (procsGovernor).
		collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^(/cpu/classes/(gc/total|total):cpu-seconds|/sched/gomaxprocs:threads)$`)}),
	), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = sip.NewMetrics(s.reg)
	if s.eng, err = newMediaEngine(s.cfg, s.log); err != nil {
		return nil, err
	}
	registerStoreMetrics(s.reg, s.store, s.eng)
	if s.cl, err = openCluster(s.cfg, s.reg, s.log); err != nil {
		return nil, err
	}
	return s, nil
}

// start opens and starts every part, in order: media relay, CDR file,
// cluster, metrics server, SIP listeners, B2BUA, certificate watch,
// watchdog tick.
// Each is pushed on s.closers once open; when a step fails, what the
// earlier steps opened is closed (newest first) before start returns.
func (s *sbc) start() (err error) {
	defer func() {
		if err != nil {
			s.closers.close(s.log)
		}
	}()
	mctx, stopMedia := context.WithCancel(context.Background())
	s.closers.push("media relay", func() error { stopMedia(); return s.eng.Close() })
	if err := s.eng.Start(mctx); err != nil {
		return fmt.Errorf("media: %w", err)
	}

	s.tr = startTracing(s.cfg, s.reg, s.store, s.log) // trace.go: HEP export, TLS key log
	s.closers.push("tracing", func() error { s.tr.Close(); return nil })

	var cdrs sip.CDRSink
	if s.cfg.CDR.File != "" {
		f, err := sip.OpenCDRFile(s.cfg.CDR.File, s.cfg.CDR.SyncInterval, s.log)
		if err != nil {
			// CDR trouble never stops calls: they stay in the log.
			s.log.Error().Err(err).Str("file", s.cfg.CDR.File).Msg("CDR file cannot be opened; CDRs stay in the log")
		} else {
			s.closers.push("CDR file", f.Close)
			cdrs = f
		}
	}

	cdrs = withMOSMetric(s.reg, cdrs) // edge_sbc_media_mos from each CDR (calls.go)

	// The cluster closes after the B2BUA, whose Close releases the calls'
	// slots and deletes their states through it.
	var admitter sip.SharedAdmitter
	var states sip.SharedStates
	if s.cl != nil {
		s.closers.push("cluster", s.cl.Close)
		if err := startCluster(s.cl, s.log); err != nil {
			return err
		}
		admitter, states = s.cl.Admitter(), s.cl.StateStore()
	}
	// New opens nothing: its Close is pushed once it has something to
	// close, before Start.
	s.b2b, err = sip.New(sip.Options{Config: s.cfg, Store: s.store, Resolver: s.res, Log: s.log,
		Media: sip.NewMediaAnchor(s.eng, s.metrics), Metrics: s.metrics, CDRs: cdrs, Tracer: s.tr.Tracer(),
		Admitter: admitter, States: states})
	if err != nil {
		return err
	}
	if s.cfg.Metrics.Listen != "" {
		stopMetrics, err := serveMetrics(s.cfg.Metrics.Listen, s.cfg.Metrics.Pprof, s.reg, s.b2b, s.log)
		if err != nil {
			return err
		}
		s.closers.push("metrics server", stopMetrics)
	}

	// The watchdog asks the listeners whether the SIP layer still accepts.
	lns := make([]net.Listener, 0, len(s.cfg.Listen))
	for i, l := range s.cfg.Listen {
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil {
			return fmt.Errorf("listen[%d] %s: %w", i, l.Addr, err)
		}
		w := watchListener(ln)
		s.closers.push("listener "+l.Addr, w.Close)
		s.watched = append(s.watched, w)
		lns = append(lns, w)
	}
	// The B2BUA lives until close, past the signal that starts the drain.
	s.closers.push("sip", s.b2b.Close)
	if err := s.b2b.Start(context.Background(), lns); err != nil {
		return err
	}

	wctx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		s.store.Watch(wctx, tlsconf.DefaultWatchInterval, func(err error) {
			if err != nil {
				s.log.Error().Err(err).Msg("certificate files changed but were refused; the running ones are kept")
				return
			}
			s.log.Info().Msg("certificate files changed: reloaded")
			logCertificate(s.log, s.store)
		})
	}()
	s.closers.push("certificate watch", func() error { stopWatch(); <-watchDone; return nil })

	// systemd is pinged every WatchdogSec/2, and only while the SIP
	// listeners are served and the SIP and media layers are alive.
	every := time.Second
	if iv, err := daemon.SdWatchdogEnabled(false); err == nil && iv > 0 {
		every = iv / 2
		t := time.NewTicker(every)
		s.closers.push("watchdog tick", func() error { t.Stop(); return nil })
		s.wdog = t.C
	}
	// After the B2BUA: its setup gate sizes its limit by the full
	// processor count.
	stopProcs := governProcs(os.Getenv("GOMAXPROCS"), s.log)
	s.closers.push("processor governor", func() error { stopProcs(); return nil })
	stopRelease := releaseWhenIdle(s.b2b.ActiveCalls, debug.FreeOSMemory, idleReleaseTick, idleRelease, s.log)
	s.closers.push("idle memory release", func() error { stopRelease(); return nil })
	// A cluster node takes over when the service address reaches it
	// (as on SIGUSR1): the watch starts after the B2BUA, whose calls it
	// may add to.
	if bind := s.eng.Config().BindAddr; s.cl != nil && !bind.IsUnspecified() {
		var stopWatch func()
		s.addrUp, stopWatch = watchAddress(bind, addressPoll, hasAddress, s.log)
		s.closers.push("address watch", func() error { stopWatch(); return nil })
	}
	s.wd = newWatchdog(s.log, liveness(
		probe{"sip listeners", listenersAlive(s.watched, every)},
		probe{"sip", aliveOf(s.b2b)},
		probe{"media relay", aliveOf(s.eng)},
	))
	return nil
}

// run tells systemd the SBC is ready and serves until a stop signal, which
// it returns. SIGHUPs reload; those queued during start-up make one reload.
func (s *sbc) run(sigs <-chan os.Signal) os.Signal {
	for _, l := range s.cfg.Listen {
		s.log.Info().Str("addr", l.Addr).Str("client_auth", l.ClientAuth).Msg("listening (SIP over TLS)")
	}
	if s.pki != "" {
		s.log.Info().Str("pki", s.pki).Str("config", filepath.Join(filepath.Dir(s.pki), "default-config.yaml")).
			Msg("embedded default: development CA and certificates are here")
		s.log.Info().Msgf("test call: answer TLS on 127.0.0.1:5081 with %s/%s.pem, then call sips:alice@%s from a TLS client on 127.0.0.1:5062 with %s/%s.pem (CA %s/ca.pem)",
			s.pki, config.DevInsideName, config.DevSBCName, s.pki, config.DevOutsideName, s.pki)
	}
	s.log.Info().Str("version", version).Str("fqdn", s.cfg.Node.FQDN).Msg("edge-sbc ready")
	notify(s.log, daemon.SdNotifyReady)

	stop := handleStartupSignals(sigs, s.reload, func() { s.takeover("SIGUSR1") }, s.log)
	for stop == nil {
		select {
		case sig := <-sigs:
			switch {
			case isStop(sig):
				stop = sig
			case isTakeover(sig):
				s.takeover("SIGUSR1")
			default:
				s.reload()
			}
		case <-s.addrUp:
			s.log.Info().Stringer("media.bind", s.eng.Config().BindAddr).Msg("cluster: the service address appeared on an interface: taking over")
			s.takeover("address")
		case <-s.wdog:
			s.wd.ping()
		}
	}
	return stop
}

func (s *sbc) reload() {
	notify(s.log, daemon.SdNotifyReloading)
	reload(s.path, s.store, s.b2b, s.log)
	notify(s.log, daemon.SdNotifyReady)
}

// drain refuses new calls and waits for those in progress, up to
// shutdown.drain_timeout or a second stop signal.
func (s *sbc) drain(stop os.Signal, sigs <-chan os.Signal) {
	notify(s.log, daemon.SdNotifyStopping)
	d := s.b2b.Conf().Shutdown.DrainTimeout
	s.log.Info().Str("signal", stop.String()).Int("calls", s.b2b.ActiveCalls()).Dur("drain_timeout", d).
		Msg("shutting down: new calls get 503, calls in progress may finish (a second SIGTERM or SIGINT ends them now)")
	s.b2b.Drain()
	drainCalls(s.b2b, d, sigs, s.wdog, s.wd.ping, s.log)
}

// close closes what start opened, newest first: the B2BUA ends the calls
// left (BYE, CDR) before the CDR file and the media relay close.
func (s *sbc) close() {
	s.closers.close(s.log)
	s.log.Info().Msg("edge-sbc stopped")
}

// handleStartupSignals handles the signals queued while the SBC started:
// any number of SIGHUPs make one reload (the file may have changed since
// it was read), any number of SIGUSR1s one takeover (after the reload),
// and a SIGTERM or SIGINT is returned, to stop now.
func handleStartupSignals(sigs <-chan os.Signal, doReload, doTakeover func(), log zerolog.Logger) os.Signal {
	hups, usr1 := 0, 0
	for {
		select {
		case s := <-sigs:
			switch {
			case isStop(s):
				log.Info().Str("signal", s.String()).Msg("stop signal received during start-up")
				return s
			case isTakeover(s):
				usr1++
			default:
				hups++
			}
		default:
			if hups > 0 {
				log.Info().Int("signals", hups).Msg("SIGHUP received during start-up: reloading now")
				doReload()
			}
			if usr1 > 0 {
				log.Info().Msg("SIGUSR1 received during start-up: taking over now")
				doTakeover()
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
	registerFastpathMetrics(reg, eng)
}

// serveMetrics serves /metrics, /healthz and /readyz until the returned
// stop is called; stop shuts the server down and waits for its goroutine.
func serveMetrics(addr string, withPprof bool, reg *prometheus.Registry, b2b *sip.B2BUA, log zerolog.Logger) (stop func() error, err error) {
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
		if err := b2b.Ready(); err != nil { // trunks[].health.ready_requires_targets
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
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
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("metrics server stopped")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("metrics on /metrics, /healthz, /readyz")
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		<-done
		if err != nil {
			return fmt.Errorf("metrics server: %w", err)
		}
		return nil
	}, nil
}
