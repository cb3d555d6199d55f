package readiness

import (
	"context"
	"time"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/dnsresolve"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// DefaultTimeout bounds each network step (a DNS query, a connect, a TLS
// handshake, an OPTIONS round trip) when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// defaultResolvConf is read for DNS servers when the configuration lists
// none, as dnsresolve does for `edge-sbc run`.
const defaultResolvConf = "/etc/resolv.conf"

// maxTargets caps the targets of one trunk that are connected to.
const maxTargets = 4

// Options tune a run.
type Options struct {
	// Timeout bounds every network step. Default DefaultTimeout.
	Timeout time.Duration
	// Now is the clock used for certificate validity. Default time.Now.
	Now func() time.Time
	// ResolvConf is the file read for DNS servers when the configuration
	// lists none. Default "/etc/resolv.conf".
	ResolvConf string
	// StopTimeout reads the installed unit's TimeoutStopSec. Default
	// SystemdStopTimeout (systemctl show).
	StopTimeout StopTimeoutFunc
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ResolvConf == "" {
		o.ResolvConf = defaultResolvConf
	}
	if o.StopTimeout == nil {
		o.StopTimeout = SystemdStopTimeout
	}
	return o
}

// env is what the checks of one run share. It is built once by Run and
// only read afterwards, except for the fields the earlier checks fill in
// for the later ones (noted on each field).
type env struct {
	cfg  *config.Config
	opts Options
	// store is nil when our certificate files do not load.
	store *tlsconf.Store
	// res is the resolver `edge-sbc run` builds: it resolves the trunks,
	// and its Client asks our own names. nil when no DNS server is known.
	res *dnsresolve.Resolver
	// sbcRunning is set by the listener check when a listener address is
	// held by a process presenting our own certificate.
	sbcRunning bool
}

// Run checks cfg against the Webex B2B requirements and returns one Result
// per check, in a fixed order: DNS, certificate, TLS floor, local sockets,
// trunks. It never returns an empty slice for a valid cfg and does not
// modify cfg. Every network step is bounded by opts.Timeout and by ctx.
func Run(ctx context.Context, cfg *config.Config, opts Options) []Result {
	e := &env{cfg: cfg, opts: opts.withDefaults()}
	var out []Result

	var servers Result
	e.res, servers = newResolver(cfg, e.opts.ResolvConf)
	out = append(out, servers)
	out = append(out, checkDNS(ctx, e)...)

	var r []Result
	e.store, r = loadStore(cfg)
	out = append(out, r...)
	out = append(out, checkCert(e)...)
	out = append(out, checkTLSFloor(cfg))
	out = append(out, checkKeyLog(cfg))

	out = append(out, checkLocal(ctx, e)...)
	out = append(out, checkStop(ctx, e))
	out = append(out, checkTrunks(ctx, e)...)
	out = append(out, checkHealth(ctx, e)...)
	return out
}
