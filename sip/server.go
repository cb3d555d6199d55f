package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
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
}

// B2BUA is the SIP back-to-back user agent. New does no I/O; Start serves
// the listeners handed in; Close ends everything and waits.
type B2BUA struct {
	cfg      *config.Config
	log      zerolog.Logger
	router   Router
	resolver *dnsresolve.Resolver
	health   *dnsresolve.Health
	media    MediaAnchor
	allow    map[string]bool
	minTLS   uint16
	sipPort  int

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	cli *sipgo.Client
	tp  *transport

	mu       sync.Mutex // guards dialogs, calls, draining
	dialogs  map[string]*legRef
	calls    map[*call]struct{}
	draining bool

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
		cfg:      o.Config,
		log:      o.Log,
		router:   o.Router,
		resolver: o.Resolver,
		health:   dnsresolve.NewHealth(o.Config.DNS.DownTime, time.Now),
		media:    o.Media,
		allow:    allowSet(o.Config.SIP.HeaderAllowList),
		minTLS:   minTLS,
		sipPort:  5061,
		dialogs:  map[string]*legRef{},
		calls:    map[*call]struct{}{},
	}
	if b.router == nil {
		b.router = NewRouter(o.Config)
	}
	if b.media == nil {
		b.media = passthrough{}
	}
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
	}
	b.tp.init()

	slogger := slog.New(newSlogBridge(o.Log.With().Str("part", "sipgo").Logger()))
	sip.SetDefaultLogger(slogger)
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("edge-sbc"),
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

// registerHandlers is the one place where SIP methods meet their handlers.
func (b *B2BUA) registerHandlers() {
	b.srv.OnInvite(b.onInvite)
	b.srv.OnAck(b.onAck)
	b.srv.OnBye(b.onInDialog)
	b.srv.OnCancel(b.onCancel)
	b.srv.OnOptions(b.onOptions)
	b.srv.OnUpdate(b.onInDialog)
	b.srv.OnInfo(b.onInDialog)
	b.srv.OnPrack(b.onInDialog)
	b.srv.OnNotify(b.onInDialog)
	b.srv.OnNoRoute(b.onNotAllowed)
}

// Start serves the listeners handed in by the caller, one per entry of
// config.listen in the same order. It returns once serving has begun.
func (b *B2BUA) Start(ctx context.Context, lns []net.Listener) error {
	if len(lns) != len(b.cfg.Listen) {
		return fmt.Errorf("sip: %d listeners for %d configured", len(lns), len(b.cfg.Listen))
	}
	b.ctx, b.cancel = context.WithCancel(ctx)
	for i, ln := range lns {
		mode, err := tlsconf.ParseClientAuth(b.cfg.Listen[i].ClientAuth)
		if err != nil {
			return fmt.Errorf("sip: listen[%d]: %w", i, err)
		}
		l := &listener{t: b.tp, ln: ln, mode: mode, unauthTrunk: b.cfg.Listen[i].UnauthenticatedTrunk, hand: newHandoff(ln.Addr())}
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
			for _, t := range b.cfg.Trunks {
				if t.Identity != "" && t.Identity == id {
					return t.Name
				}
			}
		}
		return ""
	}
	return unauthTrunk
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
