package sip

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// Hooks are for tests (widening race windows); nil in production.
	Hooks *Hooks
	// Tracer receives every SIP message (HEP export); nil: none.
	Tracer Tracer
	// Admitter, when set, makes admission cluster-wide (admission.go):
	// *cluster.Admitter of the node's sip/cluster.Cluster. nil: the limits
	// hold for this node alone.
	Admitter SharedAdmitter
	// States, when set, keeps the state of answered calls for the other
	// nodes of a cluster (state.go): *cluster.StateStore. nil: none.
	States SharedStates
}

// Hooks let tests make races deterministic.
type Hooks struct {
	// Event is called by a call's owner before it handles each event, with
	// the call's correlation id and the event's name (for example
	// "response 200 INVITE", "cancel", "request a BYE"). It may block: the
	// call's later events wait behind it.
	Event func(call, event string)
	// TxTimeout replaces 64*T1 (32 s) as the client transactions' Timer
	// B/F, so that a test can see a transaction time out.
	TxTimeout time.Duration
}

// txTimeout is Timer B/F of the SBC's client transactions.
func (b *B2BUA) txTimeout() time.Duration {
	if b.hooks != nil && b.hooks.TxTimeout > 0 {
		return b.hooks.TxTimeout
	}
	return timerTx
}

// B2BUA is the SIP back-to-back user agent. New does no I/O; Start serves
// the listeners handed in; Close ends everything and waits.
//
// Lock rules (no lock is held across network I/O; never two at once
// except as listed): mu guards calls, dialogs and closed; the transaction
// layer, each connection, each call's queue and the planner have their own
// mutex, taken alone. A call's state has no lock: its event loop owns it
// (call.go).
type B2BUA struct {
	policy   atomic.Pointer[policySnapshot] // replaced whole by Reload
	log      zerolog.Logger
	resolver *dnsresolve.Resolver
	health   *dnsresolve.Health
	media    MediaAnchor
	metrics  *Metrics
	cdrs     CDRSink
	hooks    *Hooks
	tracer   Tracer
	traceOff map[string]bool // trunks with trace: false
	sipPort  int
	planner  *planner
	shared   SharedAdmitter // cluster-wide admission; nil: local only
	states   SharedStates   // replicated call state; nil: none
	mon      *monitor
	txl      *txLayer
	tp       *transport

	mu       sync.Mutex // guards calls, dialogs, traceIDs, closed, trusted
	calls    map[*call]struct{}
	dialogs  map[string]dialogRef
	traceIDs map[string]traceRef // SIP Call-ID -> correlation id and trunk (with a Tracer only)
	closed   bool
	trusted  map[netip.Addr]time.Time // resolved trunk targets: exempt from per-address caps

	ctx       context.Context
	cancel    context.CancelFunc
	serving   atomic.Int32 // accept loops running
	wg        sync.WaitGroup
	lns       []*listener
	closeOnce sync.Once
	idle      chan struct{} // signalled when the last call ends (Drain)
	work      *workers      // runs spawn's tasks; its goroutines count in wg
	gate      *setupGate    // new calls wait here while the SBC is behind (overload.go)
}

// dialogRef finds the call and leg a dialog belongs to.
type dialogRef struct {
	c    *call
	side Side
	xfer bool // the dialog of a transfer target not connected yet
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
	snap, err := newSnapshot(o.Config, o.Router)
	if err != nil {
		return nil, err
	}
	b := &B2BUA{
		log:      o.Log,
		resolver: o.Resolver,
		health:   dnsresolve.NewHealth(o.Config.DNS.DownTime, time.Now),
		media:    o.Media,
		metrics:  o.Metrics,
		cdrs:     o.CDRs,
		hooks:    o.Hooks,
		tracer:   o.Tracer,
		traceOff: map[string]bool{},
		traceIDs: map[string]traceRef{},
		sipPort:  5061,
		planner:  newPlanner(),
		shared:   o.Admitter,
		states:   o.States,
		txl:      newTxLayer(),
		calls:    map[*call]struct{}{},
		dialogs:  map[string]dialogRef{},
		trusted:  map[netip.Addr]time.Time{},
		idle:     make(chan struct{}, 1),
	}
	b.work = newWorkers(&b.wg)
	room, _ := b.media.(roomAnchor)
	b.gate = newSetupGate(room)
	b.policy.Store(snap)
	b.mon = &monitor{b: b, targets: map[string]*targetState{}}
	for _, t := range o.Config.Trunks {
		if t.Trace != nil && !*t.Trace {
			b.traceOff[t.Name] = true
		}
	}
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
		maxMsg:    o.Config.SIP.MaxMessageSize,
		metrics:   b.metrics,
		limits:    func() config.Limits { return b.conf().Limits },
		trusted:   b.isTrustedSource,
		isTrunk: func(leaf *x509.Certificate) bool {
			_, ok := tlsconf.MatchTrunk(leaf, b.conf().TrunkIdentities())
			return ok
		},
		handler: b.onMessage,
		onEnd:   b.connectionEnded,
		sent:    func(c *conn, m sip.Message, data []byte) { b.trace(c, false, m, data) },
	}
	b.tp.init()
	return b, nil
}

func (b *B2BUA) snap() *policySnapshot { return b.policy.Load() }
func (b *B2BUA) conf() *config.Config  { return b.policy.Load().cfg }

// Conf returns the configuration in force (replaced whole by Reload).
func (b *B2BUA) Conf() *config.Config { return b.conf() }

// Reload replaces trunks, routes, header policy, limits and timers with
// those of cfg; calls in progress keep the snapshot they started with.
// Listeners and node.fqdn are fixed at start: a change there is reported
// as an error and nothing is applied.
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
	snap, err := newSnapshot(cfg, nil)
	if err != nil {
		return err
	}
	b.policy.Store(snap)
	return nil
}

// Start serves the listeners handed in by the caller, one per entry of
// config.listen in the same order. It returns once serving has begun.
func (b *B2BUA) Start(ctx context.Context, lns []net.Listener) error {
	if len(lns) != len(b.conf().Listen) {
		return fmt.Errorf("sip: %d listeners for %d configured", len(lns), len(b.conf().Listen))
	}
	b.ctx, b.cancel = context.WithCancel(ctx)
	var ls []*listener
	for i, ln := range lns {
		mode, err := tlsconf.ParseClientAuth(b.conf().Listen[i].ClientAuth)
		if err != nil {
			b.cancel()
			return fmt.Errorf("sip: listen[%d]: %w", i, err)
		}
		ls = append(ls, &listener{t: b.tp, ln: ln, mode: mode, unauthTrunk: b.conf().Listen[i].UnauthenticatedTrunk})
	}
	b.lns = ls
	for _, l := range ls {
		b.wg.Add(1)
		b.serving.Add(1)
		go func() {
			defer b.wg.Done()
			defer b.serving.Add(-1)
			l.serve(b.ctx)
		}()
	}
	b.wg.Add(3)
	go func() { defer b.wg.Done(); b.tp.keepaliveLoop(b.ctx) }()
	go func() { defer b.wg.Done(); b.housekeeping(b.ctx) }()
	go func() { defer b.wg.Done(); b.mon.run(b.ctx) }()
	return nil
}

// Alive reports whether the B2BUA works: started, not closed, and every
// accept loop running (the systemd watchdog is pinged only while it is).
func (b *B2BUA) Alive() error {
	switch {
	case b.ctx == nil:
		return errors.New("sip: not started")
	case b.ctx.Err() != nil:
		return errors.New("sip: closed")
	case int(b.serving.Load()) < len(b.lns):
		return fmt.Errorf("sip: %d of %d listeners stopped accepting", len(b.lns)-int(b.serving.Load()), len(b.lns))
	}
	return nil
}

// housekeeping sweeps expired transaction tombstones and trusted targets.
func (b *B2BUA) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			b.txl.sweep()
			b.mu.Lock()
			for a, exp := range b.trusted {
				if now.After(exp) {
					delete(b.trusted, a)
				}
			}
			for cid, r := range b.traceIDs {
				if !r.until.IsZero() && now.After(r.until) {
					delete(b.traceIDs, cid)
				}
			}
			b.mu.Unlock()
		}
	}
}

// lifetime is the B2BUA's context (Background before Start).
func (b *B2BUA) lifetime() context.Context {
	if b.ctx != nil {
		return b.ctx
	}
	return context.Background()
}

// spawn runs f on a goroutine owned by the B2BUA (an idle worker, or a
// new one: see workers); it refuses (false) once Close has begun waiting.
func (b *B2BUA) spawn(f func()) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	if b.work.handOff(f) {
		b.mu.Unlock()
		return true
	}
	b.wg.Add(1)
	b.mu.Unlock()
	go b.work.loop(f)
	return true
}

// Drain stops taking new calls: INVITEs get 503 with Retry-After.
func (b *B2BUA) Drain() { b.planner.setDraining(true) }

// Draining reports whether new calls are refused.
func (b *B2BUA) Draining() bool { return b.planner.isDraining() }

// WaitIdle returns when no call is left, or when ctx ends (its error).
func (b *B2BUA) WaitIdle(ctx context.Context) error {
	for {
		if b.ActiveCalls() == 0 {
			return nil
		}
		select {
		case <-b.idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
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

// Transactions reports the open server and client transactions.
func (b *B2BUA) Transactions() (server, client int) { return b.txl.counts() }

// HangupAll ends every call (BYE on both legs, CANCEL before answer) and
// waits up to 5 s for them to be released.
func (b *B2BUA) HangupAll(reason string) {
	b.mu.Lock()
	cs := make([]*call, 0, len(b.calls))
	for c := range b.calls {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	for _, c := range cs {
		c.post(event{kind: evHangup, reason: reason})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.WaitIdle(ctx)
}

// Close ends all calls, closes listeners and connections, and waits for the
// B2BUA's goroutines. It is idempotent and safe after a failed Start.
func (b *B2BUA) Close() error {
	b.closeOnce.Do(func() {
		b.Drain()
		b.HangupAll("shutdown")
		for _, l := range b.lns {
			_ = l.ln.Close()
		}
		if b.cancel != nil {
			b.cancel()
		}
		b.tp.closeAll()
		b.tp.wg.Wait()
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.work.stop) // idle workers exit; busy ones after their task
		b.wg.Wait()
	})
	return nil
}

// register and unregister keep the dialog table: (Call-ID, our tag) to
// the call and leg.
func (b *B2BUA) register(c *call, callID, tag string, side Side) {
	k := dialogKey(callID, tag)
	b.mu.Lock()
	b.dialogs[k] = dialogRef{c: c, side: side}
	if b.tracer != nil {
		trunk := c.plan.from.name
		if side == SideB {
			trunk = c.plan.to.name
		}
		b.traceIDs[callID] = traceRef{call: c.id, trunk: trunk}
	}
	b.mu.Unlock()
	c.dialogKeys = append(c.dialogKeys, k)
}

// registerXfer registers a transfer target's dialog for its
// retransmitted 2xx until the transfer completes.
func (b *B2BUA) registerXfer(c *call, callID, tag string) {
	k := dialogKey(callID, tag)
	b.mu.Lock()
	b.dialogs[k] = dialogRef{c: c, xfer: true}
	b.mu.Unlock()
	c.dialogKeys = append(c.dialogKeys, k)
}

func (b *B2BUA) unregister(callID, tag string) {
	b.mu.Lock()
	delete(b.dialogs, dialogKey(callID, tag))
	b.mu.Unlock()
}

// forget removes a released call and its dialogs.
func (b *B2BUA) forget(c *call) {
	b.mu.Lock()
	for _, k := range c.dialogKeys {
		if r, ok := b.dialogs[k]; ok && r.c == c {
			delete(b.dialogs, k)
		}
		if b.tracer != nil {
			cid, _, _ := strings.Cut(k, "|")
			if r, ok := b.traceIDs[cid]; ok {
				r.until = time.Now().Add(timerTx)
				b.traceIDs[cid] = r
			}
		}
	}
	delete(b.calls, c)
	empty := len(b.calls) == 0
	b.mu.Unlock()
	c.dialogKeys = nil
	if empty {
		select {
		case b.idle <- struct{}{}:
		default:
		}
	}
}

func dialogKey(callID, localTag string) string { return callID + "|" + localTag }

func (b *B2BUA) findDialog(callID, localTag string) (dialogRef, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.dialogs[dialogKey(callID, localTag)]
	return r, ok
}

// trustTarget records a resolved trunk target: connections from it skip
// the per-address caps for a while.
func (b *B2BUA) trustTarget(a netip.Addr) {
	b.mu.Lock()
	if len(b.trusted) < 10000 {
		b.trusted[a.Unmap()] = time.Now().Add(time.Hour)
	}
	b.mu.Unlock()
}

// isTrustedSource reports whether an address is exempt from the
// per-address caps: limits.trusted_sources or a resolved trunk target
// (including trunks whose URI is an IP literal).
func (b *B2BUA) isTrustedSource(a netip.Addr) bool {
	s := b.snap()
	for _, p := range s.trustedIP {
		if p.Contains(a) {
			return true
		}
	}
	for _, t := range s.trunks {
		if t.hasURI {
			if ip, err := netip.ParseAddr(t.uri.Host); err == nil && ip.Unmap() == a {
				return true
			}
		}
	}
	b.mu.Lock()
	_, ok := b.trusted[a]
	b.mu.Unlock()
	return ok
}

// onMessage is where every SIP message enters, in the order its
// connection delivered it (transport.go). It never panics on network
// input.
func (b *B2BUA) onMessage(cn *conn, m sip.Message) {
	defer func() {
		if r := recover(); r != nil {
			b.log.Error().Interface("panic", r).Str("remote", cn.remote).Msg("message handler panic recovered")
		}
	}()
	if b.tracer != nil {
		at := time.Now()
		defer b.traceAt(at, cn, true, m, nil)
	}
	switch m := m.(type) {
	case *sip.Response:
		if b.clientResponse(cn, m) {
			return
		}
		b.strayResponse(cn, m)
	case *sip.Request:
		b.metrics.Requests.WithLabelValues(metricMethod(m.Method)).Inc()
		b.onRequest(cn, m)
	}
}

// onRequest matches a request to its transaction, its dialog or a
// handler for requests outside a dialog.
func (b *B2BUA) onRequest(cn *conn, req *sip.Request) {
	if r := checkRequest(req); r != nil {
		b.rejectInline(cn, req, *r)
		return
	}
	if req.Method == sip.CANCEL {
		b.onCancel(cn, req)
		return
	}
	key := serverKey(req)
	if tx, ok := b.txl.lookupServer(key); ok {
		if req.IsAck() {
			if tx.isFinal() {
				b.ackedNonSuccess(tx)
			}
			return
		}
		b.retransmitted(tx, req, cn)
		return
	}
	if req.IsInvite() && b.txl.tombstoned(key) {
		return // a retransmitted INVITE already answered 2xx
	}
	if tag := toTag(req); tag != "" {
		b.inDialog(cn, req, tag)
		return
	}
	h, ok := b.handler(req.Method)
	if !ok {
		b.rejectInline(cn, req, refuseNotAllowed)
		return
	}
	h(cn, req)
}

// handler is the one place where methods meet their handlers outside a
// dialog; inside a dialog every method goes to its call (indialog.go).
func (b *B2BUA) handler(m sip.RequestMethod) (func(*conn, *sip.Request), bool) {
	switch m {
	case sip.INVITE:
		return b.onInvite, true
	case sip.OPTIONS:
		return b.onOptions, true
	case sip.ACK:
		return func(*conn, *sip.Request) {}, true // a stray ACK
	case sip.BYE, sip.UPDATE, sip.INFO, sip.PRACK, sip.NOTIFY:
		return func(cn *conn, req *sip.Request) { b.rejectInline(cn, req, refuseNoDialog) }, true
	}
	return nil, false
}

// inDialog hands a request with a To tag to its call.
func (b *B2BUA) inDialog(cn *conn, req *sip.Request, tag string) {
	ref, ok := b.findDialog(callIDOf(req), tag)
	if !ok || ref.xfer {
		if !req.IsAck() {
			b.rejectInline(cn, req, refuseNoDialog)
		}
		return
	}
	switch req.Method {
	case sip.ACK:
		ref.c.post(event{kind: evAck, req: req, conn: cn, side: ref.side})
		return
	case sip.BYE, sip.INVITE, sip.UPDATE, sip.INFO, sip.PRACK, sip.NOTIFY, sip.OPTIONS, sip.REFER:
	default:
		b.rejectInline(cn, req, refuseNotAllowed)
		return
	}
	tx := &serverTx{key: serverKey(req), req: req, conn: cn, call: ref.c}
	if !b.txl.addServer(tx) {
		return
	}
	cn.beginRequest(true, !cn.verified)
	ref.c.post(event{kind: evRequest, req: req, stx: tx, conn: cn, side: ref.side, tagA: tag})
}

// onCancel answers a CANCEL (RFC 3261 §9.2): 200 at once when it matches
// an INVITE the SBC has not answered finally, and the call then ends the
// INVITE with 487; 200 without effect when that INVITE was answered 2xx;
// 481 otherwise.
func (b *B2BUA) onCancel(cn *conn, req *sip.Request) {
	key := serverKeyFor(req, sip.INVITE)
	tx, ok := b.txl.lookupServer(key)
	switch {
	case ok && tx.call != nil && samePeer(tx.conn, cn):
		b.count200(cn, req)
		if !tx.isFinal() {
			tx.call.post(event{kind: evCancel, conn: cn})
		}
	case b.txl.tombstoned(key):
		b.count200(cn, req)
	default:
		b.rejectInline(cn, req, refuseNoDialog)
	}
}

func (b *B2BUA) count200(cn *conn, req *sip.Request) {
	res := newResponse(req, sip.StatusOK, "")
	b.count(res)
	_ = cn.send(res)
}

// samePeer reports whether two connections are the same peer (a CANCEL
// must come from the one that sent the INVITE).
func samePeer(a, b *conn) bool {
	if a == b {
		return true
	}
	return a.verified && b.verified && a.remoteIP == b.remoteIP && len(a.identities) > 0 &&
		strings.Join(a.identities, ",") == strings.Join(b.identities, ",")
}

// onOptions answers an out-of-dialog OPTIONS locally: it is a keepalive
// ping, never a call and never relayed.
func (b *B2BUA) onOptions(cn *conn, req *sip.Request) {
	res := newResponse(req, sip.StatusOK, newTag())
	res.AppendHeader(sip.NewHeader("Allow", methodsAllowed))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp, multipart/mixed"))
	res.AppendHeader(sip.NewHeader("Supported", optionTags))
	res.AppendHeader(b.contact())
	b.count(res)
	if err := cn.send(res); err != nil {
		b.log.Debug().Err(err).Msg("OPTIONS response failed")
	}
}

// strayResponse handles responses no transaction matches: a 2xx to an
// INVITE goes to the dialog's call (a fork or a retransmission) or, with
// the call gone, gets ACK and BYE; a non-2xx final to one of our INVITEs
// gets its ACK; the rest is dropped.
func (b *B2BUA) strayResponse(cn *conn, res *sip.Response) {
	if !isInviteResponse(res) || res.StatusCode < 200 || !strings.HasPrefix(branchOf(res), branchPrefix) {
		b.log.Debug().Str("response", res.StartLine()).Str("remote", cn.remote).Msg("stray response dropped")
		return
	}
	if res.StatusCode >= 300 {
		_ = b.sendAck(cn, ackFromResponse(res))
		return
	}
	if ref, ok := b.findDialog(callIDOf(res), fromTag(res)); ok {
		ref.c.post(event{kind: evStray2xx, res: res, conn: cn, xfer: ref.xfer})
		return
	}
	b.ackAndBye(cn, res)
}

// ackFromResponse builds the ACK of a non-2xx final response whose
// transaction is gone (the Request-URI of the INVITE is not known: the
// To URI stands in; the callee matches the ACK by its branch).
func ackFromResponse(res *sip.Response) *sip.Request {
	ack := sip.NewRequest(sip.ACK, res.To().Address)
	if v := res.Via(); v != nil {
		ack.AppendHeader(v.Clone())
	}
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	ack.AppendHeader(sip.HeaderClone(res.From()))
	ack.AppendHeader(sip.HeaderClone(res.To()))
	ack.AppendHeader(sip.HeaderClone(res.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: res.CSeq().SeqNo, MethodName: sip.ACK})
	ack.SetBody(nil)
	return ack
}

// connectionEnded ends the calls that depended on a connection that died
// and fails the transactions that ran over it.
func (b *B2BUA) connectionEnded(cn *conn) {
	for _, tx := range b.txl.onConn(cn) {
		if _, ok := b.txl.takeClient(tx.key); ok {
			tx.stopTimer()
			if tx.owner != nil {
				tx.owner.post(event{kind: evTxError, ctx: tx})
			}
		}
	}
	for _, c := range cn.takeCalls() {
		c.post(event{kind: evConnLost, conn: cn})
	}
}

// count counts a response the SBC sends.
func (b *B2BUA) count(res *sip.Response) {
	method := ""
	if cs := res.CSeq(); cs != nil {
		method = metricMethod(cs.MethodName)
	}
	b.metrics.Responses.WithLabelValues(method, codeLabel(res.StatusCode)).Inc()
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
