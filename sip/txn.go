package sip

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// This file is the SBC's transaction layer (RFC 3261 §17) for its only
// transport, TLS: a reliable transport, so requests and responses are
// never retransmitted by the layer itself (Timers A, E, G are not used;
// D, I, J, K are zero) and what remains is matching and the timeouts.
//
//   - A server transaction exists for every request handed to a call; it
//     matches retransmissions (answered with the last response), CANCEL
//     (to the INVITE it cancels) and the ACK of a non-2xx final response.
//     It ends with its final response, except an INVITE answered non-2xx,
//     which waits for its ACK (Timer H), and an INVITE answered 2xx, kept
//     as a small tombstone for Timer L (RFC 6026) so a CANCEL crossing the
//     2xx gets 200 without effect and a retransmitted INVITE is absorbed.
//   - A client transaction exists for every request the SBC sends; it
//     matches responses by the top Via branch and the CSeq method, sends
//     the ACK of a non-2xx final response to an INVITE, and reports Timer
//     B/F (32 s) to its owner. A 2xx ends an INVITE client transaction:
//     further 2xx (forks, retransmissions) are matched to the dialog by the
//     B2BUA (server.go strayResponse).
//
// Transactions hold no goroutine. Their owner (a call) receives responses
// and timeouts as events, in order.

// timerTx is 64*T1: Timers B, F, H and L.
const timerTx = 32 * time.Second

// txLayer holds the open transactions.
type txLayer struct {
	mu     sync.Mutex // guards server, client, tomb
	server map[string]*serverTx
	client map[string]*clientTx
	tomb   *tombs // INVITE server transactions answered 2xx (Timer L)
}

func newTxLayer() *txLayer {
	return &txLayer{server: map[string]*serverTx{}, client: map[string]*clientTx{}, tomb: newTombs()}
}

// serverTx is one request the SBC must answer.
type serverTx struct {
	key  string
	req  *sip.Request
	conn *conn
	call *call // owner; nil before the call exists

	mu     sync.Mutex // guards last, final, timerH
	last   *sip.Response
	final  bool
	timerH *time.Timer
}

// txOwner receives a client transaction's responses and failures as
// events (a call, or the trunk monitor).
type txOwner interface {
	post(event)
}

// clientTx is one request the SBC sent.
type clientTx struct {
	key   string
	req   *sip.Request
	conn  *conn
	owner txOwner // nil: nobody waits for the response
	ref   any     // what the owner sent it for (*attempt, *relay, ...)

	mu    sync.Mutex // guards timer
	timer *time.Timer
}

func serverKey(req *sip.Request) string {
	m := req.Method
	if m == sip.ACK {
		m = sip.INVITE
	}
	return serverKeyFor(req, m)
}

func serverKeyFor(req *sip.Request, m sip.RequestMethod) string {
	sentBy := ""
	if v := req.Via(); v != nil {
		sentBy = v.SentBy()
	}
	br := branchOf(req)
	if !strings.HasPrefix(br, sip.RFC3261BranchMagicCookie) {
		// An RFC 2543 peer (no or an old-style branch): match by the
		// dialog and sequence identifiers instead (RFC 3261 §17.2.3).
		seq := uint32(0)
		if cs := req.CSeq(); cs != nil {
			seq = cs.SeqNo
		}
		br = "2543|" + callIDOf(req) + "|" + fromTag(req) + "|" + strconv.FormatUint(uint64(seq), 10) + "|" + br
	}
	return br + "|" + strings.ToLower(sentBy) + "|" + string(m)
}

func clientKey(branch string, m sip.RequestMethod) string { return branch + "|" + string(m) }

// lookupServer finds the server transaction of req (a retransmission, an
// ACK for a non-2xx, or with method INVITE, the INVITE a CANCEL cancels).
func (l *txLayer) lookupServer(key string) (*serverTx, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tx, ok := l.server[key]
	return tx, ok
}

// tombstoned reports whether key is an INVITE already answered 2xx.
func (l *txLayer) tombstoned(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tomb.has(key)
}

// addServer registers a new server transaction; it returns false when one
// exists for the key (a retransmission racing the first copy).
func (l *txLayer) addServer(tx *serverTx) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.server[tx.key]; ok {
		return false
	}
	l.server[tx.key] = tx
	return true
}

func (l *txLayer) dropServer(tx *serverTx) {
	l.mu.Lock()
	if cur, ok := l.server[tx.key]; ok && cur == tx {
		delete(l.server, tx.key)
	}
	l.mu.Unlock()
}

func (l *txLayer) addClient(tx *clientTx) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.client[tx.key]; ok {
		return false
	}
	l.client[tx.key] = tx
	return true
}

// takeClient removes and returns the client transaction of key.
func (l *txLayer) takeClient(key string) (*clientTx, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tx, ok := l.client[key]
	if ok {
		delete(l.client, key)
	}
	return tx, ok
}

func (l *txLayer) getClient(key string) (*clientTx, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tx, ok := l.client[key]
	return tx, ok
}

// dropClient removes tx and stops its timer (the owner gave up on it).
func (l *txLayer) dropClient(tx *clientTx) {
	l.mu.Lock()
	if cur, ok := l.client[tx.key]; ok && cur == tx {
		delete(l.client, tx.key)
	}
	l.mu.Unlock()
	tx.stopTimer()
}

// onConn returns the client transactions that run over c.
func (l *txLayer) onConn(c *conn) []*clientTx {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*clientTx
	for _, tx := range l.client {
		if tx.conn == c {
			out = append(out, tx)
		}
	}
	return out
}

// sweep forgets the tombstones older than Timer L; the B2BUA calls it
// every second.
func (l *txLayer) sweep() {
	l.mu.Lock()
	l.tomb.tick()
	l.mu.Unlock()
}

// counts returns the open server and client transactions.
func (l *txLayer) counts() (server, client int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.server), len(l.client)
}

func (tx *clientTx) stopTimer() {
	tx.mu.Lock()
	if tx.timer != nil {
		tx.timer.Stop()
		tx.timer = nil
	}
	tx.mu.Unlock()
}

// respond sends res on tx and advances the transaction: a final response
// ends it (an INVITE answered non-2xx waits for its ACK). A second final
// response is never sent.
func (b *B2BUA) respond(tx *serverTx, res *sip.Response) {
	tx.mu.Lock()
	if tx.final {
		tx.mu.Unlock()
		return
	}
	tx.last = res
	final := res.StatusCode >= 200
	tx.final = final
	invite := tx.req.IsInvite()
	if final && invite && res.StatusCode >= 300 {
		tx.timerH = time.AfterFunc(timerTx, func() { b.txl.dropServer(tx) })
	}
	tx.mu.Unlock()
	if final {
		tx.conn.endRequest()
		switch {
		case !invite:
			b.txl.dropServer(tx)
		case res.StatusCode < 300:
			b.txl.mu.Lock()
			if cur, ok := b.txl.server[tx.key]; ok && cur == tx {
				delete(b.txl.server, tx.key)
			}
			b.txl.tomb.add(tx.key)
			b.txl.mu.Unlock()
		}
	}
	b.count(res)
	if err := tx.conn.send(res); err != nil {
		b.log.Debug().Err(err).Str("remote", tx.conn.remote).Int("code", res.StatusCode).Msg("response not sent")
	}
}

// retransmitted answers a retransmitted request with the last response.
func (b *B2BUA) retransmitted(tx *serverTx, req *sip.Request, c *conn) {
	tx.mu.Lock()
	last := tx.last
	tx.mu.Unlock()
	if last != nil && !req.IsAck() {
		_ = c.send(last)
	}
}

// ackedNonSuccess handles the ACK of a non-2xx final response: the INVITE
// server transaction ends (Timer I is zero on TLS).
func (b *B2BUA) ackedNonSuccess(tx *serverTx) {
	tx.mu.Lock()
	if tx.timerH != nil {
		tx.timerH.Stop()
	}
	tx.mu.Unlock()
	b.txl.dropServer(tx)
}

// send starts a client transaction for req on c, owned by owner; ref is
// handed back with every response. The request is written before send
// returns.
func (b *B2BUA) send(c *conn, req *sip.Request, owner txOwner, ref any) (*clientTx, error) {
	tx := &clientTx{key: clientKey(branchOf(req), req.Method), req: req, conn: c, owner: owner, ref: ref}
	if !b.txl.addClient(tx) {
		return nil, errDuplicateBranch
	}
	tx.mu.Lock()
	tx.timer = time.AfterFunc(b.txTimeout(), func() {
		if _, ok := b.txl.takeClient(tx.key); ok && tx.owner != nil {
			tx.owner.post(event{kind: evTxTimeout, ctx: tx})
		}
	})
	tx.mu.Unlock()
	b.metrics.RequestsSent.WithLabelValues(metricMethod(req.Method)).Inc()
	if err := c.send(req); err != nil {
		b.txl.dropClient(tx)
		return nil, err
	}
	return tx, nil
}

// sendAck writes an ACK (no transaction of its own).
func (b *B2BUA) sendAck(c *conn, ack *sip.Request) error {
	b.metrics.RequestsSent.WithLabelValues("ACK").Inc()
	return c.send(ack)
}

// clientResponse matches a response to its client transaction and hands
// it to the owner. It reports false when none matches.
func (b *B2BUA) clientResponse(c *conn, res *sip.Response) bool {
	cs := res.CSeq()
	if cs == nil {
		return false
	}
	key := clientKey(branchOf(res), cs.MethodName)
	tx, ok := b.txl.getClient(key)
	if !ok || tx.conn != c {
		return false
	}
	if res.StatusCode < 200 {
		if tx.req.IsInvite() {
			tx.stopTimer() // Timer B only runs until the first provisional
		}
	} else {
		if _, ok := b.txl.takeClient(key); !ok {
			return true // the timer won
		}
		tx.stopTimer()
		if tx.req.IsInvite() && res.StatusCode >= 300 {
			// RFC 3261 §17.1.1.3: the transaction ACKs a non-2xx itself.
			_ = b.sendAck(c, ackNonSuccess(tx.req, res))
		}
	}
	if tx.owner != nil {
		tx.owner.post(event{kind: evResponse, ctx: tx, res: res, conn: c})
	}
	return true
}

// ackNonSuccess builds the ACK of a non-2xx final response to inv
// (RFC 3261 §17.1.1.3): same branch, Request-URI, Call-ID, From and Route;
// the To of the response; CSeq number of the INVITE.
func ackNonSuccess(inv *sip.Request, res *sip.Response) *sip.Request {
	ack := sip.NewRequest(sip.ACK, inv.Recipient)
	if v := inv.Via(); v != nil {
		ack.AppendHeader(v.Clone())
	}
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	for h := range headersNamed(inv, "Route") {
		ack.AppendHeader(sip.HeaderClone(h))
	}
	if f := inv.From(); f != nil {
		ack.AppendHeader(sip.HeaderClone(f))
	}
	if to := res.To(); to != nil {
		ack.AppendHeader(sip.HeaderClone(to))
	}
	if cid := inv.CallID(); cid != nil {
		ack.AppendHeader(sip.HeaderClone(cid))
	}
	if cs := inv.CSeq(); cs != nil {
		ack.AppendHeader(&sip.CSeqHeader{SeqNo: cs.SeqNo, MethodName: sip.ACK})
	}
	ack.SetBody(nil)
	return ack
}

// isFinal reports whether a final response was sent.
func (tx *serverTx) isFinal() bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.final
}
