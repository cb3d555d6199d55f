package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/edge-sbc/edge-sbc/config"
	"github.com/edge-sbc/edge-sbc/dnsresolve"
	"github.com/edge-sbc/edge-sbc/tlsconf"
)

// Options are what the B2BUA is built from.
type Options struct {
	Config   *config.Config
	Store    *tlsconf.Store
	Resolver *dnsresolve.Resolver
	Log      zerolog.Logger
	// Router chooses routes; default NewRouter(Config).
	Router Router
	// Media anchors media; nil leaves SDP untouched (pass-through).
	Media MediaAnchor
	// Metrics receives counters; nil keeps them private.
	Metrics *Metrics
	// CDRs receives a record per ended call besides the log line; nil: log only.
	CDRs CDRSink
}

// B2BUA is the SIP back-to-back user agent. New does no I/O; Start serves
// the listeners handed in; Close ends everything and waits.
type B2BUA struct {
	policy   atomic.Pointer[policySnapshot] // replaced whole by Reload
	log      zerolog.Logger
	resolver *dnsresolve.Resolver
	health   *dnsresolve.Health
	media    MediaAnchor
	metrics  *Metrics
	cdrs     CDRSink
	minTLS   uint16
	sipPort  int

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	cli *sipgo.Client
	tp  *transport

	mu      sync.Mutex // guards dialogs, calls, draining
	dialogs map[string]*legRef
	calls   map[*call]struct{}
	// trunkCalls counts calls in progress per trunk, either leg (a call
	// between two legs of one trunk counts once).
	trunkCalls map[string]int
	draining   bool

	adm admitter

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	lns       []*listener
	closeOnce sync.Once
}

// legRef finds the leg of a call a request belongs to.
type legRef struct {
	c *call
	l *leg
}

// New builds the B2BUA; it opens nothing.
func New(o Options) (*B2BUA, error) {
	if o.Config == nil || o.Store == nil || o.Resolver == nil {
		return nil, errors.New("sip: Config, Store and Resolver are required")
	}
	minTLS, err := tlsconf.ParseMinVersion(o.Config.TLS.MinVersion)
	if err != nil {
		return nil, fmt.Errorf("sip: %w", err)
	}
	b := &B2BUA{
		log:        o.Log,
		resolver:   o.Resolver,
		health:     dnsresolve.NewHealth(o.Config.DNS.DownTime, time.Now),
		media:      o.Media,
		metrics:    o.Metrics,
		cdrs:       o.CDRs,
		minTLS:     minTLS,
		sipPort:    5061,
		dialogs:    map[string]*legRef{},
		calls:      map[*call]struct{}{},
		trunkCalls: map[string]int{},
	}
	router := o.Router
	if router == nil {
		router = NewRouter(o.Config)
	}
	b.policy.Store(&policySnapshot{cfg: o.Config, router: router, allow: allowSet(o.Config.SIP.HeaderAllowList)})
	if b.media == nil {
		b.media = passthrough{}
	}
	if b.metrics == nil {
		b.metrics = NewMetrics(nil)
	}
	b.metrics.gauges(b)
	if len(o.Config.Listen) > 0 {
		if _, p, err := net.SplitHostPort(o.Config.Listen[0].Addr); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n > 0 {
				b.sipPort = n
			}
		}
	}
	b.tp = &transport{
		log:       o.Log.With().Str("part", "tls").Logger(),
		store:     o.Store,
		minTLS:    minTLS,
		hsTimeout: o.Config.TLS.HandshakeTimeout,
		dscp:      o.Config.Media.DSCP.Signalling,
		keepalive: o.Config.SIP.KeepaliveInterval,
		identify:  b.identify,
		onEnd:     b.connectionEnded,
		metrics:   b.metrics,
		limits:    func() config.Limits { return b.conf().Limits },
		busy:      b.connectionBusy,
	}
	b.tp.init()

	slogger := slog.New(newSlogBridge(o.Log.With().Str("part", "sipgo").Logger()))
	sip.SetDefaultLogger(slogger)
	parser := sip.NewParser()
	parser.MaxMessageLength = o.Config.SIP.MaxMessageSize
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("edge-sbc"),
		sipgo.WithUserAgentParser(parser),
		sipgo.WithUserAgentHostname(o.Config.Node.FQDN),
		sipgo.WithUserAgenTLSConfig(tlsconf.NewClientConfig(o.Store, "", "", minTLS)),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(slogger),
			sip.WithTransactionLayerTerminateOnConnClose(),
			sip.WithTransactionLayerUnhandledResponseHandler(b.strayResponse),
		),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(slogger)),
	)
	if err != nil {
		return nil, fmt.Errorf("sip: user agent: %w", err)
	}
	b.ua = ua
	if b.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(slogger)); err != nil {
		return nil, fmt.Errorf("sip: server: %w", err)
	}
	if b.cli, err = sipgo.NewClient(ua, sipgo.WithClientLogger(slogger), sipgo.WithClientHostname(o.Config.Node.FQDN)); err != nil {
		return nil, fmt.Errorf("sip: client: %w", err)
	}
	b.registerHandlers()
	return b, nil
}

// policySnapshot is the reloadable part of the configuration. Calls take
// the snapshot current when they need it; a reload never changes a
// snapshot in place.
type policySnapshot struct {
	cfg    *config.Config
	router Router
	allow  map[string]bool
}

func (b *B2BUA) snap() *policySnapshot { return b.policy.Load() }
func (b *B2BUA) conf() *config.Config  { return b.policy.Load().cfg }

// Conf returns the configuration in force (replaced whole by Reload).
func (b *B2BUA) Conf() *config.Config { return b.conf() }

// Reload replaces trunks, routes, header policy and timers with those of
// cfg; calls in progress keep going. Listeners, node.fqdn and the media
// range are fixed at start: a change there is reported as an error and
// nothing is applied.
func (b *B2BUA) Reload(cfg *config.Config) error {
	old := b.conf()
	if cfg.Node.FQDN != old.Node.FQDN {
		return fmt.Errorf("sip: reload: node.fqdn changed (%s -> %s): restart needed", old.Node.FQDN, cfg.Node.FQDN)
	}
	if len(cfg.Listen) != len(old.Listen) {
		return fmt.Errorf("sip: reload: listeners changed: restart needed")
	}
	for i := range cfg.Listen {
		if cfg.Listen[i] != old.Listen[i] {
			return fmt.Errorf("sip: reload: listen[%d] changed: restart needed", i)
		}
	}
	b.policy.Store(&policySnapshot{cfg: cfg, router: NewRouter(cfg), allow: allowSet(cfg.SIP.HeaderAllowList)})
	return nil
}

// registerHandlers is the one place where SIP methods meet their handlers.
func (b *B2BUA) registerHandlers() {
	b.srv.OnInvite(b.counted(b.onInvite))
	b.srv.OnAck(b.counted(b.onAck))
	b.srv.OnBye(b.counted(b.onInDialog))
	b.srv.OnCancel(b.counted(b.onCancel))
	b.srv.OnOptions(b.counted(b.onOptions))
	b.srv.OnUpdate(b.counted(b.onInDialog))
	b.srv.OnInfo(b.counted(b.onInDialog))
	b.srv.OnPrack(b.counted(b.onInDialog))
	b.srv.OnNotify(b.counted(b.onInDialog))
	b.srv.OnNoRoute(b.counted(b.onNotAllowed))
}

// counted wraps a handler so every request is counted by method and a
// panic never takes the process down.
func (b *B2BUA) counted(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		// sipgo runs handlers in bare goroutines: a panic here would end
		// the process, so it is logged and answered 500 instead.
		defer func() {
			if r := recover(); r != nil {
				b.log.Error().Interface("panic", r).Str("method", string(req.Method)).Str("remote", req.Source()).Msg("handler panic recovered")
				if !req.IsAck() {
					_ = b.respond(tx, sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Server Internal Error", nil))
				}
			}
		}()
		b.metrics.Requests.WithLabelValues(metricMethod(req.Method)).Inc()
		h(req, tx)
	}
}

// metricMethod keeps label values bounded: unknown methods are "other".
func metricMethod(m sip.RequestMethod) string {
	switch m {
	case sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.OPTIONS, sip.UPDATE, sip.INFO, sip.PRACK,
		sip.NOTIFY, sip.REGISTER, sip.MESSAGE, sip.SUBSCRIBE, sip.PUBLISH, sip.REFER:
		return string(m)
	}
	return "other"
}

// respond sends a response on tx and counts it.
func (b *B2BUA) respond(tx sip.ServerTransaction, res *sip.Response) error {
	method := ""
	if cs := res.CSeq(); cs != nil {
		method = metricMethod(cs.MethodName)
	}
	b.metrics.Responses.WithLabelValues(method, codeLabel(res.StatusCode)).Inc()
	return tx.Respond(res)
}

// Start serves the listeners handed in by the caller, one per entry of
// config.listen in the same order. It returns once serving has begun.
func (b *B2BUA) Start(ctx context.Context, lns []net.Listener) error {
	if len(lns) != len(b.conf().Listen) {
		return fmt.Errorf("sip: %d listeners for %d configured", len(lns), len(b.conf().Listen))
	}
	b.ctx, b.cancel = context.WithCancel(ctx)
	for i, ln := range lns {
		mode, err := tlsconf.ParseClientAuth(b.conf().Listen[i].ClientAuth)
		if err != nil {
			return fmt.Errorf("sip: listen[%d]: %w", i, err)
		}
		l := &listener{t: b.tp, ln: ln, mode: mode, unauthTrunk: b.conf().Listen[i].UnauthenticatedTrunk, hand: newHandoff(ln.Addr())}
		b.lns = append(b.lns, l)
		b.wg.Add(2)
		go func() { defer b.wg.Done(); _ = b.srv.ServeTLS(l.hand) }()
		go func() { defer b.wg.Done(); l.serve(b.ctx) }()
	}
	b.wg.Add(2)
	go func() { defer b.wg.Done(); _ = b.srv.ServeTLS(b.tp.out) }()
	go func() { defer b.wg.Done(); b.tp.keepaliveLoop(b.ctx) }()
	return nil
}

// Drain stops taking new calls: INVITEs get 503 with Retry-After.
func (b *B2BUA) Drain() {
	b.mu.Lock()
	b.draining = true
	b.mu.Unlock()
}

// Draining reports whether new calls are refused.
func (b *B2BUA) Draining() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.draining
}

// ActiveCalls returns the number of calls in progress.
func (b *B2BUA) ActiveCalls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.calls)
}

// Counts reports calls, dialog entries and TLS connections (for tests and
// metrics).
func (b *B2BUA) Counts() (calls, dialogs, conns int) {
	b.mu.Lock()
	calls, dialogs = len(b.calls), len(b.dialogs)
	b.mu.Unlock()
	return calls, dialogs, b.tp.count()
}

// HangupAll ends every call with BYE on both legs (end of a drain).
func (b *B2BUA) HangupAll(reason string) {
	b.mu.Lock()
	cs := make([]*call, 0, len(b.calls))
	for c := range b.calls {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); c.hangup(reason, "sbc") }()
	}
	wg.Wait()
}

// Close ends all calls, closes listeners and connections, and waits for the
// B2BUA's goroutines. It is idempotent and safe after a failed Start.
func (b *B2BUA) Close() error {
	b.closeOnce.Do(func() {
		b.HangupAll("shutdown")
		if b.cancel != nil {
			b.cancel()
		}
		for _, l := range b.lns {
			_ = l.ln.Close()
			_ = l.hand.Close()
		}
		_ = b.tp.out.Close()
		b.tp.closeAll()
		_ = b.ua.Close()
		b.wg.Wait()
		b.tp.wg.Wait()
	})
	return nil
}

// identify maps a connection's verified certificate names to a trunk.
func (b *B2BUA) identify(ids []string, unauthTrunk string, verified bool) string {
	if verified {
		for _, id := range ids {
			for _, t := range b.conf().Trunks {
				if t.Identity != "" && t.Identity == id {
					return t.Name
				}
			}
		}
	}
	// No certificate, one we cannot verify, or a verified one that is no
	// trunk: on a listener with an unauthenticated trunk the peer is that
	// trunk (our own domains only); elsewhere it is nobody (403).
	return unauthTrunk
}

// connectionBusy reports whether a call uses the connection to remote.
func (b *B2BUA) connectionBusy(remote string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.calls {
		if c.uses(remote) {
			return true
		}
	}
	return false
}

// go runs f as a goroutine owned by the B2BUA.
func (b *B2BUA) goOwned(f func()) {
	b.wg.Add(1)
	go func() { defer b.wg.Done(); f() }()
}

func (b *B2BUA) findDialog(req *sip.Request) (*legRef, bool) {
	to := req.To()
	cid := req.CallID()
	if to == nil || cid == nil {
		return nil, false
	}
	tag, _ := to.Params.Get("tag")
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.dialogs[dialogKey(cid.Value(), tag)]
	return r, ok
}

func dialogKey(callID, localTag string) string { return callID + "|" + localTag }

// strayResponse handles responses no transaction matches: a retransmitted
// 2xx to an INVITE is ACKed again (RFC 3261 §13.2.2.4); others are dropped.
func (b *B2BUA) strayResponse(res *sip.Response) {
	cseq := res.CSeq()
	if cseq == nil || cseq.MethodName != sip.INVITE || !res.IsSuccess() {
		b.log.Debug().Str("response", res.StartLine()).Msg("stray response dropped")
		return
	}
	cid := res.CallID()
	from := res.From()
	if cid == nil || from == nil {
		return
	}
	tag, _ := from.Params.Get("tag")
	b.mu.Lock()
	r, ok := b.dialogs[dialogKey(cid.Value(), tag)]
	b.mu.Unlock()
	if !ok {
		return
	}
	r.c.reAck(r.l, res)
}
